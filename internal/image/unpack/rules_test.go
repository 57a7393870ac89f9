package unpack

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"berth/internal/testutil"
	"golang.org/x/sys/unix"
)

func mustNotExist(t *testing.T, root, rel string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(root, rel)); !os.IsNotExist(err) {
		t.Errorf("%s should not exist (err %v)", rel, err)
	}
}

func mustContain(t *testing.T, root, rel, body string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil || string(b) != body {
		t.Errorf("%s: got %q, %v; want %q", rel, b, err, body)
	}
}

// TestWhiteoutRules covers the image-spec changeset rules.
func TestWhiteoutRules(t *testing.T) {
	opts := Options{Rootless: os.Geteuid() != 0}
	cases := []struct {
		name   string
		layers [][]ent
		check  func(t *testing.T, root string)
	}{
		{"WhiteoutLower", [][]ent{{file("a", "1"), dir("d/"), file("d/x", "2")}, {file(".wh.a", ""), file(".wh.d", "")}}, func(t *testing.T, r string) {
			mustNotExist(t, r, "a")
			mustNotExist(t, r, "d")
			mustNotExist(t, r, ".wh.a")
		}},
		{"SameLayerWhiteoutAfterEntry", [][]ent{{file("a", "1")}, {file("a", "2"), file(".wh.a", "")}}, func(t *testing.T, r string) {
			mustContain(t, r, "a", "2")
		}},
		{"WhiteoutBeforeRecreate", [][]ent{{dir("d/"), file("d/old", "1")}, {file(".wh.d", ""), dir("d/"), file("d/new", "2")}}, func(t *testing.T, r string) {
			mustNotExist(t, r, "d/old")
			mustContain(t, r, "d/new", "2")
		}},
		{"OpaqueAfterSiblings", [][]ent{{dir("d/"), file("d/old", "1"), dir("d/sub/"), file("d/sub/old2", "2"), file("keep", "k")},
			{dir("d/"), file("d/new", "3"), dir("d/sub/"), file("d/sub/new2", "4"), file("d/.wh..wh..opq", "")}}, func(t *testing.T, r string) {
			mustNotExist(t, r, "d/old")
			mustNotExist(t, r, "d/sub/old2")
			mustContain(t, r, "d/new", "3")
			mustContain(t, r, "d/sub/new2", "4")
			mustContain(t, r, "keep", "k")
			mustNotExist(t, r, "d/.wh..wh..opq")
		}},
		{"OpaqueFirst", [][]ent{{dir("d/"), file("d/old", "1")}, {dir("d/"), file("d/.wh..wh..opq", ""), file("d/new", "3")}}, func(t *testing.T, r string) {
			mustNotExist(t, r, "d/old")
			mustContain(t, r, "d/new", "3")
		}},
		{"OpaqueImplicitParent", [][]ent{{dir("d/"), dir("d/sub/"), file("d/sub/old", "1")}, {file("d/sub/new", "2"), file("d/.wh..wh..opq", "")}}, func(t *testing.T, r string) {
			mustNotExist(t, r, "d/sub/old")
			mustContain(t, r, "d/sub/new", "2")
		}},
		{"OpaqueRoot", [][]ent{{file("a", "1"), dir("d/"), file("d/x", "2")}, {file("new", "3"), file(".wh..wh..opq", "")}}, func(t *testing.T, r string) {
			mustNotExist(t, r, "a")
			mustNotExist(t, r, "d")
			mustContain(t, r, "new", "3")
		}},
		{"OpaqueMarkerAsDirectory", [][]ent{{dir("d/"), file("d/old", "1")}, {dir("d/.wh..wh..opq/")}}, func(t *testing.T, r string) {
			mustNotExist(t, r, "d/old")
			mustNotExist(t, r, "d/.wh..wh..opq")
		}},
		{"OpaqueMissingDir", [][]ent{{file("a", "1")}, {file("nodir/.wh..wh..opq", "")}}, func(t *testing.T, r string) {
			mustContain(t, r, "a", "1")
			mustNotExist(t, r, "nodir")
		}},
		{"WhiteoutMissing", [][]ent{{file("a", "1")}, {file(".wh.nothing", ""), file("nodir/.wh.x", "")}}, func(t *testing.T, r string) {
			mustContain(t, r, "a", "1")
			mustNotExist(t, r, "nodir")
		}},
		{"AufsMetaIgnored", [][]ent{{file(".wh..wh.plnk", ""), file("a", "1")}}, func(t *testing.T, r string) {
			mustNotExist(t, r, ".wh..wh.plnk")
			mustContain(t, r, "a", "1")
		}},
		{"HardlinkAcrossLayers", [][]ent{{file("f", "data")}, {hardlink("g", "f")}}, func(t *testing.T, r string) {
			a, _ := os.Stat(filepath.Join(r, "f"))
			b, _ := os.Stat(filepath.Join(r, "g"))
			if a == nil || b == nil || !os.SameFile(a, b) {
				t.Error("g is not a hardlink of f")
			}
		}},
		// Replacing an entry drops the directory cache while the parent's
		// fd is still in use (a use-after-close regression).
		{"ReplaceInSubdir", [][]ent{{dir("d/"), file("d/a", "1"), symlink("d/l", "a")}, {file("d/a", "2"), file("d/l", "3"), hardlink("d/h", "d/a"), file("d/a", "4")}}, func(t *testing.T, r string) {
			mustContain(t, r, "d/a", "4")
			mustContain(t, r, "d/l", "3")
			mustContain(t, r, "d/h", "2")
		}},
		{"FileReplacesDir", [][]ent{{dir("d/"), file("d/x", "1")}, {file("d", "2")}}, func(t *testing.T, r string) {
			mustContain(t, r, "d", "2")
		}},
		{"DirKeepsChildren", [][]ent{{dir("d/"), file("d/x", "1")}, {{name: "d/", typ: tar.TypeDir, mode: 0o700}}}, func(t *testing.T, r string) {
			mustContain(t, r, "d/x", "1")
			if fi, _ := os.Stat(filepath.Join(r, "d")); fi == nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("d mode not updated: %v", fi)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "rootfs")
			var tars [][]byte
			for _, l := range c.layers {
				tars = append(tars, tarOf(t, l...))
			}
			if err := unpackTars(t, root, opts, tars...); err != nil {
				t.Fatal(err)
			}
			c.check(t, root)
		})
	}
}

// TestAttributes: modes with special bits, times, xattrs, owners and the
// compression formats all land as the tar says.
func TestAttributes(t *testing.T) {
	rootless := os.Geteuid() != 0
	ents := []ent{
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, body: "su"},
		{name: "bin/wall", typ: tar.TypeReg, mode: 0o2755, body: "wall", gid: 5},
		{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		{name: "srv/", typ: tar.TypeDir, mode: 0o2770, uid: 1000, gid: 1000},
		{name: "srv/owned", typ: tar.TypeReg, mode: 0o640, uid: 1000, gid: 1001, body: "o"},
		{name: "x", typ: tar.TypeReg, mode: 0o600, body: "x", xattrs: map[string]string{"user.note": "hi"}},
		{name: "ln", typ: tar.TypeSymlink, link: "x", mode: 0o777, uid: 1000},
		{name: "fifo", typ: tar.TypeFifo, mode: 0o620},
		{name: "big", typ: tar.TypeReg, mode: 0o644, body: string(make([]byte, 3<<20))},
	}
	for _, comp := range []string{"none", "gzip", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			tr := tarOf(t, ents...)
			blob := tr
			switch comp {
			case "gzip":
				blob = gz(t, tr)
			case "zstd":
				blob = zst(t, tr)
			}
			root := filepath.Join(t.TempDir(), "rootfs")
			if _, err := Unpack(context.Background(), root, []Layer{layerOf(blob, tr)}, Options{Rootless: rootless}); err != nil {
				t.Fatal(err)
			}
			modes := map[string]os.FileMode{
				"bin/su": os.ModeSetuid | 0o755, "bin/wall": os.ModeSetgid | 0o755,
				"tmp": os.ModeDir | os.ModeSticky | 0o777, "srv": os.ModeDir | os.ModeSetgid | 0o770,
				"fifo": os.ModeNamedPipe | 0o620, "x": 0o600,
			}
			for p, want := range modes {
				fi, err := os.Lstat(filepath.Join(root, p))
				if err != nil || fi.Mode() != want {
					t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, want)
				}
				if err == nil && !fi.ModTime().Equal(testTime) {
					t.Errorf("%s: mtime %v, want %v", p, fi.ModTime(), testTime)
				}
			}
			if l, err := os.Readlink(filepath.Join(root, "ln")); err != nil || l != "x" {
				t.Errorf("symlink: %q %v", l, err)
			}
			if fi, err := os.Lstat(filepath.Join(root, "ln")); err != nil || !fi.ModTime().Equal(testTime) {
				t.Errorf("symlink mtime: %v", fi.ModTime())
			}
			buf := make([]byte, 64)
			if n, err := unix.Getxattr(filepath.Join(root, "x"), "user.note", buf); err != nil || string(buf[:n]) != "hi" {
				t.Errorf("xattr: %q %v", buf[:n], err)
			}
			if fi, err := os.Stat(filepath.Join(root, "big")); err != nil || fi.Size() != 3<<20 {
				t.Errorf("big file: %v %v", fi, err)
			}
			st, _ := os.Lstat(filepath.Join(root, "srv/owned"))
			sys := st.Sys().(*syscall.Stat_t)
			if rootless {
				n, err := unix.Getxattr(filepath.Join(root, "srv/owned"), rootlessXattr, buf)
				if err != nil || string(buf[:n]) != string(rootlessValue(1000, 1001)) {
					t.Errorf("rootless owner xattr: %x %v", buf[:n], err)
				}
			} else if sys.Uid != 1000 || sys.Gid != 1001 {
				t.Errorf("owner %d:%d, want 1000:1001", sys.Uid, sys.Gid)
			}
		})
	}
}

func TestRootOnlyAttributes(t *testing.T) {
	testutil.RequireRoot(t)
	// security.capability v2: cap_net_raw (bit 13) permitted+effective.
	capv2 := string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	tr := tarOf(t,
		ent{name: "null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		ent{name: "sda", typ: tar.TypeBlock, mode: 0o660, major: 8, minor: 0, gid: 6},
		ent{name: "ping", typ: tar.TypeReg, mode: 0o755, body: "elf", xattrs: map[string]string{"security.capability": capv2}},
		ent{name: "owned", typ: tar.TypeReg, mode: 0o4750, uid: 1000, gid: 1000, body: "x"},
	)
	root := filepath.Join(t.TempDir(), "rootfs")
	maps := []IDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	if _, err := Unpack(context.Background(), root, []Layer{layerOf(tr, tr)}, Options{UIDMaps: maps, GIDMaps: maps}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "null"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) || st.Uid != 100000 {
		t.Errorf("char device: %+v %v", st, err)
	}
	if err := unix.Lstat(filepath.Join(root, "sda"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Gid != 100006 {
		t.Errorf("block device: %+v %v", st, err)
	}
	if err := unix.Lstat(filepath.Join(root, "owned"), &st); err != nil || st.Uid != 101000 || st.Mode&0o7777 != 0o4750 {
		t.Errorf("mapped owner with setuid: uid %d mode %o %v", st.Uid, st.Mode&0o7777, err)
	}
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(filepath.Join(root, "ping"), "security.capability", buf); err != nil || string(buf[:n]) != capv2 {
		t.Errorf("file capability: %x %v", buf[:n], err)
	}
	// Rootless: devices are skipped, not an error.
	root2 := filepath.Join(t.TempDir(), "rootfs")
	st2, err := Unpack(context.Background(), root2, []Layer{layerOf(tr, tr)}, Options{Rootless: true})
	if err != nil || st2.SkippedDevices != 2 {
		t.Errorf("rootless devices: %+v %v", st2, err)
	}
	mustNotExist(t, root2, "null")
}

// TestOverlayFormat: whiteouts become 0:0 char devices, opaque dirs get the
// xattr, and a hardlink to a lower layer's file is copied.
func TestOverlayFormat(t *testing.T) {
	testutil.RequireRoot(t)
	lower := filepath.Join(t.TempDir(), "l1")
	os.Mkdir(lower, 0o755)
	if _, err := Apply(lower, bytesReader(tarOf(t, file("f", "lower"), dir("d/"), file("d/x", "1"))), Options{Format: FormatOverlay}); err != nil {
		t.Fatal(err)
	}
	upper := filepath.Join(t.TempDir(), "l2")
	os.Mkdir(upper, 0o755)
	_, err := Apply(upper, bytesReader(tarOf(t, file(".wh.gone", ""), dir("d/"), file("d/.wh..wh..opq", ""), hardlink("g", "f"),
		file("same", "s"), file(".wh.same", ""))), Options{Format: FormatOverlay, Lowers: []string{lower}})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(upper, "gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout device: %+v %v", st, err)
	}
	buf := make([]byte, 8)
	if n, err := unix.Getxattr(filepath.Join(upper, "d"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque xattr: %q %v", buf[:n], err)
	}
	mustContain(t, upper, "g", "lower")
	mustContain(t, upper, "same", "s")
}

// TestKeepDirlinks: a directory entry over a symlink to a directory
// replaces it by default (image-spec), keeps it with KeepDirlinks; either way
// files under the path land in the directory the symlink points to only when
// the symlink is kept.
func TestKeepDirlinks(t *testing.T) {
	l1 := tarOf(t, dir("usr/"), dir("usr/lib/"), file("usr/lib/a", "a"), symlink("lib", "usr/lib"))
	l2 := tarOf(t, dir("lib/"), file("lib/b", "b"))
	for _, keep := range []bool{false, true} {
		root := filepath.Join(t.TempDir(), "rootfs")
		if err := unpackTars(t, root, Options{Rootless: os.Geteuid() != 0, KeepDirlinks: keep}, l1, l2); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(filepath.Join(root, "lib"))
		if err != nil {
			t.Fatal(err)
		}
		if isLink := fi.Mode()&os.ModeSymlink != 0; isLink != keep {
			t.Errorf("keep=%v: lib is a symlink: %v", keep, isLink)
		}
		if keep {
			mustContain(t, root, "usr/lib/b", "b")
		} else {
			mustContain(t, root, "lib/b", "b")
			mustNotExist(t, root, "usr/lib/b")
		}
	}
}

func TestParseIDMapping(t *testing.T) {
	cases := []struct {
		in   string
		want IDMapping
		ok   bool
	}{
		{"0:1000", IDMapping{0, 1000, 1}, true},
		{"0:100000:65536", IDMapping{0, 100000, 65536}, true},
		{"0:1000:0", IDMapping{}, false},
		{"a:1", IDMapping{}, false},
		{"1", IDMapping{}, false},
		{"4294967295:0:2", IDMapping{}, false},
	}
	for _, c := range cases {
		got, err := ParseIDMapping(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseIDMapping(%q) = %v, %v", c.in, got, err)
		}
	}
	if h, ok := toHost(1000, []IDMapping{{0, 100000, 65536}}); !ok || h != 101000 {
		t.Errorf("toHost = %d %v", h, ok)
	}
	if _, ok := toHost(70000, []IDMapping{{0, 100000, 65536}}); ok {
		t.Error("unmapped id accepted")
	}
}
