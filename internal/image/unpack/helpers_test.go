package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// ent is one tar entry of a test layer.
type ent struct {
	name, link string
	typ        byte
	mode       int64
	body       string
	uid, gid   int
	xattrs     map[string]string
	major      int64
	minor      int64
	mtime      time.Time
}

func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, mode: 0o644, body: body} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, to string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: to, mode: 0o777}
}
func hardlink(name, to string) ent {
	return ent{name: name, typ: tar.TypeLink, link: to, mode: 0o644}
}

var testTime = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func tarOf(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode,
			Uid: e.uid, Gid: e.gid, Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		h.ModTime = e.mtime
		if h.ModTime.IsZero() {
			h.ModTime = testTime
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) digest.Digest {
	s := sha256.Sum256(b)
	return digest.NewDigestFromBytes(digest.SHA256, s[:])
}

// layerOf wraps a blob as a verified Layer.
func layerOf(blob, tarBytes []byte) Layer {
	return Layer{
		Open:   func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil },
		Digest: sha(blob), DiffID: sha(tarBytes),
	}
}

// snapshot records every path under dir with its mode, size and content, so
// a test can assert that nothing outside the rootfs changed.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		v := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			v += ":" + string(b)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			v += "->" + l
		}
		m[p] = v
		return nil
	})
	return m
}

func diffSnap(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if b[k] != v {
			out = append(out, k+": "+v+" => "+b[k])
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k+": new "+v)
		}
	}
	sort.Strings(out)
	return out
}

func unpackTars(t testing.TB, root string, opts Options, layers ...[]byte) error {
	t.Helper()
	var ls []Layer
	for _, l := range layers {
		ls = append(ls, layerOf(l, l))
	}
	_, err := Unpack(context.Background(), root, ls, opts)
	return err
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
