package unpack

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzApplyNoEscape builds layers from fuzz input out of hostile building
// blocks (.., absolute host paths, symlinks to them, hardlinks, whiteouts,
// opaque markers) and checks the one property that must always hold: after
// any layer, applied or refused, nothing outside the rootfs has changed.
// `go test` runs the seeds; `go test -fuzz FuzzApplyNoEscape` explores.
func FuzzApplyNoEscape(f *testing.F) {
	f.Add([]byte{2, 3, 8, 0, 1, 3, 0})
	f.Add([]byte{2, 0, 9, 0, 3, 2, 0, 1, 1, 1})
	f.Add([]byte{1, 5, 0, 2, 5, 8, 3, 6, 8, 0, 4, 6})
	f.Add([]byte{2, 7, 9, 1, 7, 0, 4, 10, 0, 4, 11, 0})
	f.Add([]byte{0, 0, 0, 2, 0, 8, 1, 0, 0, 0, 0, 0})
	base := f.TempDir()
	outside := filepath.Join(base, "outside")
	os.Mkdir(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "passwd"), []byte("host"), 0o400)
	before := snapshot(f, outside)
	names := []string{"a", "a/b", "..", "../outside", outside, outside + "/passwd", "/", "l", "l/x", ".wh.a", "a/.wh..wh..opq", ".wh..", "a/../../outside/x"}
	targets := []string{"a", "/", "..", "../../outside", outside, outside + "/passwd", "l", "a/b"}
	f.Fuzz(func(t *testing.T, data []byte) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for i := 0; i+2 < len(data) && i < 60; i += 3 {
			h := &tar.Header{Name: names[int(data[i+1])%len(names)], Linkname: targets[int(data[i+2])%len(targets)], Mode: 0o755}
			switch data[i] % 5 {
			case 0:
				h.Typeflag = tar.TypeDir
			case 1:
				h.Typeflag, h.Size = tar.TypeReg, 3
			case 2:
				h.Typeflag = tar.TypeSymlink
			case 3:
				h.Typeflag = tar.TypeLink
			case 4:
				h.Typeflag, h.Mode = tar.TypeReg, 0o4777
			}
			if tw.WriteHeader(h) != nil {
				return
			}
			if h.Size > 0 {
				tw.Write([]byte("pwn"))
			}
		}
		tw.Close()
		root := filepath.Join(t.TempDir(), "rootfs")
		layer := buf.Bytes()
		// Two layers: the second sees whatever links the first planted.
		unpackTars(t, root, Options{Rootless: true, KeepDirlinks: len(data)%2 == 1}, layer, layer)
		if d := diffSnap(before, snapshot(t, outside)); len(d) > 0 {
			t.Fatalf("escaped the rootfs:\n%s", strings.Join(d, "\n"))
		}
		if fi, err := os.Stat(filepath.Join(outside, "passwd")); err != nil || fi.Mode().Perm() != 0o400 {
			t.Fatalf("host file changed: %v %v", fi, err)
		}
	})
}

// TestLongNames: names past PATH_MAX are refused as invalid, not truncated.
func TestLongNames(t *testing.T) {
	long := strings.Repeat("d/", 2100) + "f"
	tr := tarOf(t, file(long, "x"))
	err := unpackTars(t, filepath.Join(t.TempDir(), "r"), Options{Rootless: true}, tr)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(maxNameLen)) {
		t.Errorf("long name: %v", err)
	}
}
