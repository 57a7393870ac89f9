package integration

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	unpackMkimageOnce sync.Once
	unpackMkimageBin  string
	unpackMkimageErr  error
)

// mkimage builds bench/unpack/mkimage once: it writes OCI layouts from
// directories and tar files, offline.
func unpackMkimage(t *testing.T) string {
	t.Helper()
	unpackMkimageOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		unpackMkimageBin = filepath.Join(filepath.Dir(berthBin), "mkimage")
		cmd := exec.Command("go", "build", "-o", unpackMkimageBin, "./bench/unpack/mkimage")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			unpackMkimageErr = fmt.Errorf("building mkimage: %w\n%s", err, out)
		}
	})
	if unpackMkimageErr != nil {
		t.Fatal(unpackMkimageErr)
	}
	return unpackMkimageBin
}

func unpackMakeImage(t *testing.T, layout, ref, config string, layers ...string) {
	t.Helper()
	args := []string{"-o", layout, "-ref", ref, "-config", config}
	for _, l := range layers {
		args = append(args, "-layer", l)
	}
	if out, err := exec.Command(unpackMkimage(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("mkimage %v: %v\n%s", args, err, out)
	}
}

func unpackRun(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(berthBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// unpackBusybox makes a tiny rootfs from Debian's busybox-static.
func unpackBusybox(t *testing.T, dir string) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox-static not installed")
	}
	for _, d := range []string{"bin", "etc", "tmp", "home/web"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"sh", "id", "cat", "ls", "echo", "pwd"} {
		os.Symlink("busybox", filepath.Join(dir, "bin", n))
	}
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/home/web:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\nweb:x:1000:\nwheel:x:10:web\n"), 0o644)
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
}

// unpackEnt is one entry of a hand-made layer.
type unpackEnt struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
	major, minor     int64
	xattrs           map[string]string
}

func unpackWriteTar(t *testing.T, path string, ents ...unpackEnt) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Devmajor: e.major, Devminor: e.minor, ModTime: time.Unix(1.6e9, 0), Format: tar.FormatPAX}
		if h.Mode == 0 {
			h.Mode = 0o644
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
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
		io.WriteString(tw, e.body)
	}
	tw.Close()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// node is what the equivalence test compares for each path.
type unpackNode struct {
	typ, mode, owner, link, content, xattrs, rdev, mtime string
	nlink                                                uint64
}

// tree describes every path under root (root itself included).
func unpackTree(t *testing.T, root string) map[string]unpackNode {
	t.Helper()
	out := map[string]unpackNode{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		n := unpackNode{typ: fi.Mode().Type().String(), mode: fmt.Sprintf("%o", st.Mode&0o7777),
			owner: fmt.Sprintf("%d:%d", st.Uid, st.Gid), mtime: fi.ModTime().UTC().Format(time.RFC3339)}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			n.content = hex.EncodeToString(s[:8])
			n.nlink = uint64(st.Nlink)
		case fi.Mode()&os.ModeSymlink != 0:
			n.link, _ = os.Readlink(p)
		case fi.Mode()&(os.ModeDevice|os.ModeCharDevice) != 0:
			n.rdev = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		n.xattrs = unpackXattrs(p)
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func unpackXattrs(p string) string {
	buf := make([]byte, 8192)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	keys := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		v := make([]byte, 8192)
		m, err := unix.Lgetxattr(p, k, v)
		if err == nil {
			parts = append(parts, k+"="+hex.EncodeToString(v[:m]))
		}
	}
	return strings.Join(parts, ",")
}

func unpackDiffTrees(a, b map[string]unpackNode) []string {
	var out []string
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			out = append(out, fmt.Sprintf("%s: only in berth (%+v)", k, v))
		} else if v != w {
			out = append(out, fmt.Sprintf("%s: berth %+v, umoci %+v", k, v, w))
		}
	}
	for k, w := range b {
		if _, ok := a[k]; !ok {
			out = append(out, fmt.Sprintf("%s: only in umoci (%+v)", k, w))
		}
	}
	sort.Strings(out)
	return out
}
