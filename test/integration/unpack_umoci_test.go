package integration

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/internal/testutil"
)

// unpackCapNetRaw is a v2 security.capability value granting cap_net_raw.
var unpackCapNetRaw = string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

// TestUnpackUmociEquivalence unpacks the same images with umoci and with
// berth and compares the trees: types, modes (special bits included),
// owners, xattrs, link targets, device numbers, contents, hardlink counts and
// mtimes.
func TestUnpackUmociEquivalence(t *testing.T) {
	testutil.RequireRoot(t)
	umoci, err := exec.LookPath("umoci")
	testutil.Require(t, err == nil, "umoci not installed (scripts/apt-packages.txt)")
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")

	l1 := unpackWriteTar(t, filepath.Join(dir, "l1.tar"),
		unpackEnt{name: "./", typ: tar.TypeDir, mode: 0o755},
		unpackEnt{name: "bin/", typ: tar.TypeDir},
		unpackEnt{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, body: "su"},
		unpackEnt{name: "bin/ping", typ: tar.TypeReg, mode: 0o755, body: "ping", xattrs: map[string]string{"security.capability": unpackCapNetRaw}},
		unpackEnt{name: "bin/link", typ: tar.TypeLink, link: "bin/su"},
		unpackEnt{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox", mode: 0o777},
		unpackEnt{name: "bin/abs", typ: tar.TypeSymlink, link: "/etc/passwd", mode: 0o777},
		unpackEnt{name: "shared/", typ: tar.TypeDir, mode: 0o2775, gid: 50},
		unpackEnt{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		unpackEnt{name: "home/", typ: tar.TypeDir},
		unpackEnt{name: "home/web/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000},
		unpackEnt{name: "home/web/notes", typ: tar.TypeReg, mode: 0o600, uid: 1000, gid: 1000, body: "n", xattrs: map[string]string{"user.tag": "v"}},
		unpackEnt{name: "dev/", typ: tar.TypeDir},
		unpackEnt{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		unpackEnt{name: "dev/sda1", typ: tar.TypeBlock, mode: 0o660, major: 8, minor: 1, gid: 6},
		unpackEnt{name: "dev/fifo", typ: tar.TypeFifo, mode: 0o620},
		unpackEnt{name: "etc/", typ: tar.TypeDir},
		unpackEnt{name: "etc/passwd", typ: tar.TypeReg, body: "root:x:0:0::/root:/bin/sh\n"},
		unpackEnt{name: "etc/motd", typ: tar.TypeReg, body: "motd"},
		unpackEnt{name: "etc/empty", typ: tar.TypeReg},
		unpackEnt{name: "var/", typ: tar.TypeDir},
		unpackEnt{name: "var/cache/", typ: tar.TypeDir},
		unpackEnt{name: "var/cache/a", typ: tar.TypeReg, body: "a"},
		unpackEnt{name: "var/cache/sub/", typ: tar.TypeDir},
		unpackEnt{name: "var/cache/sub/b", typ: tar.TypeReg, body: "b"},
		unpackEnt{name: "opt/", typ: tar.TypeDir},
		unpackEnt{name: "opt/x", typ: tar.TypeReg, body: strings.Repeat("big", 1<<20)},
		unpackEnt{name: "data", typ: tar.TypeReg, body: "file that becomes a dir"},
		unpackEnt{name: "lib/", typ: tar.TypeDir},
		unpackEnt{name: "lib/mod", typ: tar.TypeReg, body: "dir that becomes a symlink"},
		unpackEnt{name: "usr/", typ: tar.TypeDir},
		unpackEnt{name: "usr/lib64/", typ: tar.TypeDir},
		unpackEnt{name: "usr/lib64/ld.so", typ: tar.TypeReg, body: "ld"},
		unpackEnt{name: "lib64", typ: tar.TypeSymlink, link: "usr/lib64", mode: 0o777},
	)
	l2 := unpackWriteTar(t, filepath.Join(dir, "l2.tar"),
		unpackEnt{name: "etc/", typ: tar.TypeDir, mode: 0o750},
		unpackEnt{name: "etc/.wh.motd", typ: tar.TypeReg},
		unpackEnt{name: "var/cache/", typ: tar.TypeDir},
		unpackEnt{name: "var/cache/.wh..wh..opq", typ: tar.TypeReg},
		unpackEnt{name: "var/cache/new", typ: tar.TypeReg, body: "new"},
		unpackEnt{name: ".wh.opt", typ: tar.TypeReg},
		unpackEnt{name: "data/", typ: tar.TypeDir},
		unpackEnt{name: "data/inside", typ: tar.TypeReg, body: "i"},
		unpackEnt{name: "lib", typ: tar.TypeSymlink, link: "usr/lib", mode: 0o777},
		unpackEnt{name: "bin/link2", typ: tar.TypeLink, link: "bin/ping"},
		unpackEnt{name: "bin/su", typ: tar.TypeReg, mode: 0o4711, body: "su v2"},
		unpackEnt{name: "lib64/", typ: tar.TypeDir},
		unpackEnt{name: "lib64/new.so", typ: tar.TypeReg, body: "new"},
	)
	unpackMakeImage(t, layout, "crafted", "{}", l1+":gzip", l2+":none")

	// A Debian rootfs stand-in from the host's own Debian files (no
	// network for debootstrap): /etc, /usr/sbin, python's stdlib and the
	// zoneinfo tree (thousands of small files, symlinks and hardlinks).
	var parts []string
	for _, p := range []string{"/etc", "/usr/sbin", "/usr/lib/python3.11", "/usr/share/zoneinfo"} {
		if _, err := os.Stat(p); err == nil {
			parts = append(parts, p+"@"+strings.TrimPrefix(p, "/"))
		}
	}
	deb2 := unpackWriteTar(t, filepath.Join(dir, "deb2.tar"),
		unpackEnt{name: "etc/", typ: tar.TypeDir},
		unpackEnt{name: "etc/.wh.hostname", typ: tar.TypeReg},
		unpackEnt{name: "usr/", typ: tar.TypeDir},
		unpackEnt{name: "usr/share/", typ: tar.TypeDir},
		unpackEnt{name: "usr/share/zoneinfo/", typ: tar.TypeDir},
		unpackEnt{name: "usr/share/zoneinfo/Europe/", typ: tar.TypeDir},
		unpackEnt{name: "usr/share/zoneinfo/Europe/.wh..wh..opq", typ: tar.TypeReg},
		unpackEnt{name: "usr/share/zoneinfo/Europe/Berth", typ: tar.TypeReg, body: "TZif"},
	)
	unpackMakeImage(t, layout, "debian", `{"Cmd":["bash"]}`, strings.Join(parts, "+")+":gzip", deb2+":gzip")

	for _, c := range []struct {
		ref  string
		args []string
	}{{"crafted", nil}, {"crafted", []string{"--keep-dirlinks"}}, {"debian", nil}} {
		ref := c.ref
		t.Run(ref+strings.Join(c.args, ""), func(t *testing.T) {
			ub, bb := filepath.Join(dir, "umoci-"+ref), filepath.Join(dir, "berth-"+ref)
			start := time.Now()
			uargs := append(append([]string{"unpack"}, c.args...), "--image", layout+":"+ref, ub)
			if out, err := exec.Command(umoci, uargs...).CombinedOutput(); err != nil {
				t.Fatalf("umoci unpack: %v\n%s", err, out)
			}
			tu := time.Since(start)
			start = time.Now()
			bargs := append(append([]string{"unpack"}, c.args...), "--image", layout+":"+ref, bb)
			if out, err := unpackRun(t, nil, bargs...); err != nil {
				t.Fatalf("berth unpack: %v\n%s", err, out)
			}
			t.Logf("umoci %v, berth %v", tu, time.Since(start))
			a, b := unpackTree(t, filepath.Join(bb, "rootfs")), unpackTree(t, filepath.Join(ub, "rootfs"))
			if len(a) < 10 {
				t.Fatalf("berth rootfs has only %d paths", len(a))
			}
			if ref == "crafted" {
				// The two modes must really differ: the directory entry over
				// the lib64 symlink replaces it unless --keep-dirlinks.
				wantType := "d---------"
				if len(c.args) > 0 {
					wantType = "L---------"
				}
				if a["lib64"].typ != wantType {
					t.Errorf("lib64 is %q, want %q", a["lib64"].typ, wantType)
				}
			}
			if d := unpackDiffTrees(a, b); len(d) > 0 {
				if len(d) > 40 {
					d = append(d[:40], "...")
				}
				t.Errorf("%d differences:\n%s", len(d), strings.Join(d, "\n"))
			}
			os.RemoveAll(ub)
			os.RemoveAll(bb)
		})
	}
}
