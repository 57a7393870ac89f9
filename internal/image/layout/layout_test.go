package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func desc(mt string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// writeImage commits a one-layer image tagged tag and returns its manifest
// descriptor.
func writeImage(t *testing.T, dir, tag, content string) ocispec.Descriptor {
	t.Helper()
	tx, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	layer := []byte("layer " + content)
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: desc(ocispec.MediaTypeImageConfig, cfg), Layers: []ocispec.Descriptor{desc(ocispec.MediaTypeImageLayer, layer)}}
	m.SchemaVersion = 2
	mb, _ := json.Marshal(m)
	md := desc(ocispec.MediaTypeImageManifest, mb)
	for _, b := range []struct {
		d ocispec.Descriptor
		b []byte
	}{{m.Layers[0], layer}, {m.Config, cfg}, {md, mb}} {
		if err := tx.WriteBytes(b.d, b.b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(Entry{Tag: tag, Desc: md}); err != nil {
		t.Fatal(err)
	}
	return md
}

// snapshot records every file's path and content under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			out[rel] = string(b)
		} else {
			out[rel] = fi.Mode().String()
		}
		return nil
	})
	return out
}

func TestCommitAndRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	md := writeImage(t, dir, "v1", "one")
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Resolve("v1")
	if err != nil || got.Digest != md.Digest {
		t.Fatalf("Resolve(v1) = %v, %v; want %s", got.Digest, err, md.Digest)
	}
	if got, err := l.Resolve(""); err != nil || got.Digest != md.Digest {
		t.Fatalf("Resolve(\"\") on a one-image layout = %v, %v", got.Digest, err)
	}
	b, err := l.ReadBlob(md, 1<<20)
	if err != nil || digest.FromBytes(b) != md.Digest {
		t.Fatalf("ReadBlob: %v", err)
	}
	var lay ocispec.ImageLayout
	raw, _ := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if json.Unmarshal(raw, &lay) != nil || lay.Version != "1.0.0" {
		t.Fatalf("oci-layout = %s", raw)
	}
	for p := range snapshot(t, dir) {
		if strings.HasPrefix(p, stagePrefix) {
			t.Errorf("staging directory %s left after commit", p)
		}
	}
	// Everything is world-readable, as skopeo writes it.
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().Perm()&0o444 != 0o444 {
			t.Errorf("%s has mode %v", p, fi.Mode().Perm())
		}
		return nil
	})
}

func TestTagsReplaceAndKeep(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, dir, "a", "1")
	writeImage(t, dir, "b", "2")
	md := writeImage(t, dir, "a", "3")
	ix, err := (&Layout{dir: dir}).Index()
	if err != nil {
		t.Fatal(err)
	}
	if tags := Tags(ix); fmt.Sprint(tags) != "[a b]" {
		t.Fatalf("tags = %v, want [a b] (a replaced in place, b kept)", tags)
	}
	if ix.Manifests[0].Digest != md.Digest {
		t.Fatalf("tag a points at %s, want the newer %s", ix.Manifests[0].Digest, md.Digest)
	}
}

func TestFailedCopyLeavesLayoutUnchanged(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, dir, "a", "1")
	before := snapshot(t, dir)

	tx, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	good := []byte("good blob")
	if err := tx.WriteBytes(desc("x", good), good); err != nil {
		t.Fatal(err)
	}
	bad := desc("x", []byte("expected"))
	err = tx.WriteBlob(bad, strings.NewReader("tampered"))
	if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "digest is") {
		t.Fatalf("wrong content: err = %v", err)
	}
	err = tx.WriteBlob(bad, strings.NewReader("expect"))
	if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("short content: err = %v", err)
	}
	err = tx.WriteBlob(bad, strings.NewReader("expected and more"))
	if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("long content: err = %v", err)
	}
	tx.Abort()
	after := snapshot(t, dir)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("aborted copy changed the layout:\nbefore %v\nafter  %v", keys(before), keys(after))
	}
}

func TestCommitRejectsDockerAndMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	tx, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	mb := []byte(`{"schemaVersion":2}`)
	d := desc("application/vnd.docker.distribution.manifest.v2+json", mb)
	tx.WriteBytes(d, mb)
	if err := tx.Commit(Entry{Tag: "x", Desc: d}); err == nil || !strings.Contains(err.Error(), "only OCI") {
		t.Fatalf("docker manifest committed: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed first copy left the new layout directory behind: %v", err)
	}
	tx, _ = Begin(dir)
	d.MediaType = ocispec.MediaTypeImageManifest
	if err := tx.Commit(Entry{Tag: "x", Desc: d}); err == nil || !strings.Contains(err.Error(), "never written") {
		t.Fatalf("missing manifest committed: %v", err)
	}
}

func TestConcurrentCommitsKeepAllTags(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	const n = 8
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writeImage(t, dir, fmt.Sprintf("t%d", i), fmt.Sprint(i%3))
		}()
	}
	wg.Wait()
	ix, err := (&Layout{dir: dir}).Index()
	if err != nil {
		t.Fatal(err)
	}
	tags := Tags(ix)
	sort.Strings(tags)
	if len(tags) != n {
		t.Fatalf("tags after %d concurrent copies: %v", n, tags)
	}
}

func TestVerifiedRead(t *testing.T) {
	dir := t.TempDir()
	md := writeImage(t, dir, "a", "1")
	p := filepath.Join(dir, "blobs", "sha256", md.Digest.Encoded())
	os.WriteFile(p, []byte(strings.Repeat("x", int(md.Size))), 0o644)
	l, _ := Open(dir)
	if _, err := l.ReadBlob(md, 1<<20); !errors.Is(err, ErrVerify) {
		t.Fatalf("corrupted blob read without error: %v", err)
	}
	rc, _ := l.OpenBlob(md)
	_, err := io.Copy(io.Discard, rc)
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("OpenBlob stream: %v", err)
	}
}

func TestBeginRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644)
	if _, err := Begin(dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Begin on a non-layout directory: %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not an OCI layout") {
		t.Fatalf("Open on a non-layout directory: %v", err)
	}
}

func TestResolveErrors(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, dir, "a", "1")
	writeImage(t, dir, "b", "2")
	l, _ := Open(dir)
	if _, err := l.Resolve("c"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "[a b]") {
		t.Fatalf("Resolve(c) = %v", err)
	}
	if _, err := l.Resolve(""); err == nil || !strings.Contains(err.Error(), "2 images") {
		t.Fatalf("Resolve(\"\") on two images = %v", err)
	}
}

func keys(m map[string]string) []string {
	var k []string
	for p := range m {
		k = append(k, p)
	}
	sort.Strings(k)
	return k
}

// TestStaleStagingRemoved: a copy killed mid-way leaves its staging
// directory; the next transaction removes it, but never a live one.
func TestStaleStagingRemoved(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, dir, "a", "1")
	stale := filepath.Join(dir, stagePrefix+"dead")
	os.Mkdir(stale, 0o700)
	os.WriteFile(filepath.Join(stale, ".tmp-1"), []byte("partial"), 0o600)
	live, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale staging directory kept: %v", err)
	}
	other, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Abort()
	if _, err := os.Stat(live.stage); err != nil {
		t.Fatalf("a live transaction's staging directory was removed: %v", err)
	}
}
