package layercache

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"berth/internal/image/unpack"
	"berth/internal/testutil"

	digest "github.com/opencontainers/go-digest"
)

type tent struct {
	name, body, link string
	typ              byte
}

func layer(t *testing.T, ents ...tent) unpack.Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o755, Size: int64(len(e.body)), Linkname: e.link, ModTime: time.Unix(1e9, 0)}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	tw.Close()
	b := buf.Bytes()
	s := sha256.Sum256(b)
	d := digest.NewDigestFromBytes(digest.SHA256, s[:])
	return unpack.Layer{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, Digest: d, DiffID: d}
}

func TestKey(t *testing.T) {
	d := digest.Digest("sha256:" + string(bytes.Repeat([]byte("a"), 64)))
	plain := Key(d, unpack.Options{})
	mapped := Key(d, unpack.Options{UIDMaps: []unpack.IDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}})
	if plain != d.Encoded() || mapped == plain || !validKey(mapped) || !validKey(plain) {
		t.Errorf("keys: %q %q", plain, mapped)
	}
	for _, bad := range []string{"", "../x", plain + "-zz", plain[:10]} {
		if validKey(bad) {
			t.Errorf("validKey(%q) = true", bad)
		}
	}
}

// TestOverlayBundle: layers are extracted once, the bundle rootfs is an
// overlay showing the merged tree (whiteouts and opaque dirs applied by the
// kernel), writes go to the private upper dir, in-use layers survive rm and
// GC, and removing the bundle unmounts it and frees the layers.
func TestOverlayBundle(t *testing.T) {
	testutil.RequireRoot(t)
	c, err := Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	layers := []unpack.Layer{
		layer(t, tent{name: "d/", typ: tar.TypeDir}, tent{name: "d/old", body: "1", typ: tar.TypeReg}, tent{name: "gone", body: "x", typ: tar.TypeReg}, tent{name: "f", body: "lower", typ: tar.TypeReg}),
		layer(t, tent{name: "d/", typ: tar.TypeDir}, tent{name: "d/.wh..wh..opq", typ: tar.TypeReg}, tent{name: "d/new", body: "2", typ: tar.TypeReg},
			tent{name: ".wh.gone", typ: tar.TypeReg}, tent{name: "g", link: "f", typ: tar.TypeLink}),
	}
	keys, n, err := c.Ensure(context.Background(), layers, unpack.Options{})
	if err != nil || n != 2 || len(keys) != 2 {
		t.Fatalf("ensure: %v %d %v", keys, n, err)
	}
	if _, n, err = c.Ensure(context.Background(), layers, unpack.Options{}); err != nil || n != 0 {
		t.Fatalf("second ensure extracted %d layers (%v)", n, err)
	}
	bundle := filepath.Join(t.TempDir(), "b")
	os.Mkdir(bundle, 0o700)
	if err := c.MountBundle(bundle, keys); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveBundle(bundle) })
	rootfs := filepath.Join(bundle, "rootfs")
	if !mounted(rootfs) {
		t.Fatal("rootfs not mounted")
	}
	for p, want := range map[string]string{"d/new": "2", "g": "lower", "f": "lower"} {
		if b, err := os.ReadFile(filepath.Join(rootfs, p)); err != nil || string(b) != want {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	for _, p := range []string{"d/old", "gone"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); !os.IsNotExist(err) {
			t.Errorf("%s visible through the overlay: %v", p, err)
		}
	}
	os.WriteFile(filepath.Join(rootfs, "written"), []byte("w"), 0o644)
	if _, err := os.Stat(filepath.Join(bundle, OverlayDir, "upper", "written")); err != nil {
		t.Errorf("write did not go to the upper dir: %v", err)
	}
	if err := c.Remove(keys[0], false); err == nil {
		t.Error("removed a layer in use")
	}
	if removed, err := c.GC(nil); err != nil || len(removed) != 0 {
		t.Errorf("gc removed in-use layers: %v %v", removed, err)
	}
	es, err := c.List()
	if err != nil || len(es) != 2 || len(es[0].Users) != 1 {
		t.Errorf("list: %+v %v", es, err)
	}
	if err := RemoveBundle(bundle); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(bundle); !os.IsNotExist(err) {
		t.Errorf("bundle left: %v", err)
	}
	if removed, err := c.GC(map[string]bool{keys[1]: true}); err != nil || len(removed) != 1 || removed[0] != keys[0] {
		t.Errorf("gc: %v %v", removed, err)
	}
	if err := c.Remove(keys[1], false); err != nil {
		t.Errorf("remove: %v", err)
	}
}
