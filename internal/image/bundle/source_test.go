package bundle

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"berth/internal/image/unpack"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testLayout writes OCI layouts by hand, so tests control every byte.
type testLayout struct {
	t   *testing.T
	dir string
}

func newTestLayout(t *testing.T) *testLayout {
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "blobs", "sha256"), 0o755)
	os.WriteFile(filepath.Join(d, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return &testLayout{t: t, dir: d}
}

func (l *testLayout) blob(b []byte, mt string) imgspec.Descriptor {
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(l.dir, "blobs", "sha256", d.Encoded()), b, 0o644); err != nil {
		l.t.Fatal(err)
	}
	return imgspec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}
}

func (l *testLayout) json(v any, mt string) imgspec.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		l.t.Fatal(err)
	}
	return l.blob(b, mt)
}

// image writes a one-layer image (an empty tar) whose config has cmd.
func (l *testLayout) image(cmd string, layerDigest digest.Digest) imgspec.Descriptor {
	tarBytes := make([]byte, 1024) // an empty tar: two zero blocks
	layer := l.blob(tarBytes, imgspec.MediaTypeImageLayer)
	if layerDigest != "" {
		layer.Digest = layerDigest
	}
	cfg := imgspec.Image{Platform: imgspec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config: imgspec.ImageConfig{Cmd: []string{cmd}}, RootFS: imgspec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(tarBytes)}}}
	c := l.json(cfg, imgspec.MediaTypeImageConfig)
	return l.json(imgspec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspec.MediaTypeImageManifest, Config: c, Layers: []imgspec.Descriptor{layer}}, imgspec.MediaTypeImageManifest)
}

func (l *testLayout) index(tags map[string]imgspec.Descriptor, extra ...imgspec.Descriptor) {
	idx := imgspec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspec.MediaTypeImageIndex}
	for tag, d := range tags {
		d.Annotations = map[string]string{imgspec.AnnotationRefName: tag}
		idx.Manifests = append(idx.Manifests, d)
	}
	idx.Manifests = append(idx.Manifests, extra...)
	b, _ := json.Marshal(idx)
	os.WriteFile(filepath.Join(l.dir, "index.json"), b, 0o644)
}

func TestOpenImage(t *testing.T) {
	l := newTestLayout(t)
	plain := l.image("plain", "")
	other := imgspec.Platform{OS: "linux", Architecture: "s390x"}
	if runtime.GOARCH == "s390x" {
		other.Architecture = "arm64"
	}
	host := l.image("host-arch", "")
	host.Platform = &imgspec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	foreign := l.image("foreign", "")
	foreign.Platform = &other
	att := l.image("attestation", "")
	att.Platform = &imgspec.Platform{OS: "unknown", Architecture: "unknown"}
	multi := l.json(imgspec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspec.MediaTypeImageIndex,
		Manifests: []imgspec.Descriptor{att, foreign, host}}, imgspec.MediaTypeImageIndex)
	onlyForeign := l.json(imgspec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspec.MediaTypeImageIndex,
		Manifests: []imgspec.Descriptor{foreign}}, imgspec.MediaTypeImageIndex)
	evil := l.image("evil", "sha256:../../../../etc/pwn")
	l.index(map[string]imgspec.Descriptor{"latest": plain, "multi": multi, "foreign": onlyForeign, "evil": evil,
		"docker.io/library/app:1": plain})

	cases := []struct {
		arg, cmd, err string
	}{
		{l.dir, "plain", ""},
		{l.dir + ":latest", "plain", ""},
		{l.dir + ":multi", "host-arch", ""},
		{l.dir + ":docker.io/library/app:1", "plain", ""},
		{l.dir + ":nope", "", `"nope" not found`},
		{l.dir + ":foreign", "", "has no image for linux/" + runtime.GOARCH},
		{l.dir + ":evil", "", "invalid"},
	}
	for _, c := range cases {
		img, err := OpenImage(c.arg, "/nonexistent")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: want error %q, got %v", c.arg, c.err, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.arg, err)
			continue
		}
		if img.Config.Config.Cmd[0] != c.cmd {
			t.Errorf("%s: got image %v, want %s", c.arg, img.Config.Config.Cmd, c.cmd)
		}
		if _, err := unpack.Unpack(context.Background(), filepath.Join(t.TempDir(), "r"), img.Layers, unpack.Options{Rootless: true}); err != nil {
			t.Errorf("%s: unpack: %v", c.arg, err)
		}
	}
	// A reference into the store.
	img, err := OpenImage("app:1", l.dir)
	if err != nil || img.Config.Config.Cmd[0] != "plain" {
		t.Errorf("store ref: %v %v", img, err)
	}
	// An ambiguous tag (two manifests, one name) is refused, like umoci.
	l.index(nil, withRef(plain, "dup"), withRef(host, "dup"))
	if _, err := OpenImage(l.dir+":dup", ""); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("ambiguous tag: %v", err)
	}
	// A config blob that does not match its digest is refused.
	l.index(map[string]imgspec.Descriptor{"latest": plain})
	var man imgspec.Manifest
	raw, _ := os.ReadFile(filepath.Join(l.dir, "blobs/sha256", plain.Digest.Encoded()))
	json.Unmarshal(raw, &man)
	os.WriteFile(filepath.Join(l.dir, "blobs/sha256", man.Config.Digest.Encoded()), []byte(`{"config":{"Cmd":["tampered"]}}`), 0o644)
	if _, err := OpenImage(l.dir, ""); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("tampered config: %v", err)
	}
	// GC's view of the store skips the tampered config instead of failing.
	if ids, err := LayoutDiffIDs(l.dir); err != nil || len(ids) != 0 {
		t.Errorf("diff ids of a tampered store: %v %v", ids, err)
	}
	if _, err := OpenImage("/definitely/not/a/layout", "/nonexistent"); err == nil {
		t.Error("missing layout accepted")
	}
}

func withRef(d imgspec.Descriptor, ref string) imgspec.Descriptor {
	d.Annotations = map[string]string{imgspec.AnnotationRefName: ref}
	return d
}

func TestLayoutDiffIDs(t *testing.T) {
	l := newTestLayout(t)
	d := l.image("x", "")
	l.index(map[string]imgspec.Descriptor{"latest": d})
	ids, err := LayoutDiffIDs(l.dir)
	if err != nil || len(ids) != 1 || !ids[digest.FromBytes(make([]byte, 1024)).Encoded()] {
		t.Errorf("diff ids: %v %v", ids, err)
	}
	if ids, err := LayoutDiffIDs(filepath.Join(l.dir, "missing")); err != nil || len(ids) != 0 {
		t.Errorf("missing layout: %v %v", ids, err)
	}
}
