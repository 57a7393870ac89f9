package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// TestHostileLayers is the breakout matrix (containerd TestBreakouts, umoci
// scoping tests, CVE-2021-29136, CVE-2025-47290, CVE-2021-32760): every case
// either fails or stays inside the rootfs, and nothing outside it — a
// sentinel directory next to the rootfs, and the host's /etc — changes.
func TestHostileLayers(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	sentinel := filepath.Join(outside, "passwd")
	if err := os.WriteFile(sentinel, []byte("host"), 0o400); err != nil {
		t.Fatal(err)
	}
	// A name unique to this run, for cases aimed at the real /etc.
	pwn := fmt.Sprintf("berth-unpack-pwn-%d", os.Getpid())
	hostEtcPwn := "/etc/" + pwn
	absOut := outside // an absolute host path an entry may aim at

	type tc struct {
		name    string
		layers  [][]ent
		wantErr error // nil: must succeed; ErrInvalidArchive etc.: must fail with it
		anyErr  bool  // failing or succeeding are both fine, escaping is not
		check   func(t *testing.T, root string)
	}
	exists := func(rel string) func(*testing.T, string) {
		return func(t *testing.T, root string) {
			if _, err := os.Lstat(filepath.Join(root, rel)); err != nil {
				t.Errorf("expected %s inside the rootfs: %v", rel, err)
			}
		}
	}
	cases := []tc{
		{name: "TraversalRelative", layers: [][]ent{{file("../../outside/pwn", "x")}}, check: exists("outside/pwn")},
		{name: "TraversalAbsolute", layers: [][]ent{{file(absOut+"/pwn", "x")}}, check: exists(absOut + "/pwn")},
		{name: "TraversalDotDotPrefix", layers: [][]ent{{file("/../../../outside/pwn", "x"), file("..", "x")}}, wantErr: ErrInvalidArchive},
		{name: "SymlinkAbsolute", layers: [][]ent{{symlink("localetc", "/etc"), file("localetc/"+pwn, "x")}}, check: exists("etc/" + pwn)},
		{name: "SymlinkAbsoluteHostDir", layers: [][]ent{{symlink("l", absOut), file("l/pwn", "x")}}, check: exists(absOut + "/pwn")},
		{name: "SymlinkRelative", layers: [][]ent{{symlink("l", "../../../../../outside"), file("l/pwn", "x")}}, check: exists("outside/pwn")},
		{name: "SymlinkUpAndOut", layers: [][]ent{{dir("dummy/"), symlink("l", "dummy/../../../outside"), file("l/pwn", "x")}}, check: exists("outside/pwn")},
		{name: "SymlinkMultipleAbsolute", layers: [][]ent{{symlink("l1", "/etc"), symlink("l2", "/l1"), file("l2/"+pwn, "x")}}, check: exists("etc/" + pwn)},
		{name: "SymlinkMultipleRelative", layers: [][]ent{{symlink("l1", "../../etc"), symlink("l2", "l1/../../etc"), file("l2/"+pwn, "x")}}, check: exists("etc/" + pwn)},
		{name: "SymlinkEmptyFile", layers: [][]ent{{symlink("l", absOut+"/passwd"), file("l", "")}}, check: func(t *testing.T, root string) {
			if fi, err := os.Lstat(filepath.Join(root, "l")); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("l should be a regular file replacing the symlink: %v %v", fi, err)
			}
		}},
		{name: "SymlinkParentDirectory", layers: [][]ent{{symlink("..", absOut)}}, wantErr: ErrInvalidArchive},
		{name: "SymlinkEmptyFilename", layers: [][]ent{{symlink("", absOut)}}, wantErr: ErrInvalidArchive},
		{name: "RootSymlinkThenFile", layers: [][]ent{{symlink("./", "/")}, {file("etc/"+pwn, "x")}}, wantErr: ErrInvalidArchive},
		{name: "RootReplacedByFile", layers: [][]ent{{file(".", "x")}}, wantErr: ErrInvalidArchive},
		{name: "SymlinkParentRelative", layers: [][]ent{{dir("localetc/"), dir("localetc/sub/"), symlink("localetc/sub/..", absOut)}}, wantErr: ErrInvalidArchive, anyErr: true},
		{name: "SymlinkSlashEnded", layers: [][]ent{{symlink("l/", absOut), file("l/pwn", "x")}}, check: exists(absOut + "/pwn")},
		{name: "SymlinkOverrideDirectory", layers: [][]ent{{dir("etc/"), symlink("etc", absOut), file("etc/pwn", "x")}}, check: exists(absOut + "/pwn")},
		{name: "SymlinkOverrideDirectoryRelative", layers: [][]ent{{dir("etc/"), symlink("etc", "../../../outside"), file("etc/pwn", "x")}}, check: exists("outside/pwn")},
		{name: "DirectoryOverrideSymlink", layers: [][]ent{{symlink("etc", absOut), dir("etc/"), file("etc/pwn", "x")}}, check: exists("etc/pwn")},
		{name: "DirectoryOverrideSymlinkAndHardlink", layers: [][]ent{{symlink("etc", absOut), dir("etc/"), hardlink("etc/passwd", absOut+"/passwd")}}, anyErr: true},
		{name: "HardlinkRelative", layers: [][]ent{{dir("breakouts/"), symlink("breakouts/d1", "../../etc"), hardlink("breakouts/d1/passwd-"+pwn, "/etc/passwd")}}, anyErr: true},
		{name: "HardlinkOutsideRelative", layers: [][]ent{{hardlink("h", "../outside/passwd")}}, wantErr: ErrInvalidArchive},
		{name: "HardlinkAbsolute", layers: [][]ent{{hardlink("h", absOut+"/passwd")}}, wantErr: ErrInvalidArchive},
		{name: "HardlinkDownAndOut", layers: [][]ent{{symlink("d", absOut), hardlink("h", "d/passwd")}}, wantErr: ErrInvalidArchive},
		{name: "HardlinkRelativeLong", layers: [][]ent{{hardlink("h", "../../../../../../../etc/passwd")}}, wantErr: ErrInvalidArchive},
		{name: "HardlinkRelativeUpAndOut", layers: [][]ent{{dir("d/"), hardlink("h", "d/../../outside/passwd")}}, wantErr: ErrInvalidArchive},
		{name: "HardlinkSymlinkBeforeCreateTarget", layers: [][]ent{{symlink("s", absOut+"/passwd"), hardlink("h", "s"), file("s", "root file")}}, check: func(t *testing.T, root string) {
			l, err := os.Readlink(filepath.Join(root, "h"))
			if err != nil || l != absOut+"/passwd" {
				t.Errorf("h should be a hardlink of the symlink itself: %q %v", l, err)
			}
		}},
		{name: "HardlinkSymlinkRelative", layers: [][]ent{{symlink("s", "../outside/passwd"), hardlink("h", "s")}}, check: exists("h")},
		{name: "HardlinkSymlinkChmod", layers: [][]ent{{symlink("s", absOut+"/passwd"), hardlink("h", "s"),
			{name: "h", typ: tar.TypeReg, mode: 0o777}, {name: "s", typ: tar.TypeSymlink, link: absOut + "/passwd", mode: 0o777}}}},
		{name: "WhiteoutRootParent", layers: [][]ent{{file(".wh...", "")}}, wantErr: ErrInvalidArchive},
		{name: "WhiteoutParent", layers: [][]ent{{dir("etc/"), file("etc/.wh...", "")}}, wantErr: ErrInvalidArchive},
		{name: "WhiteoutRoot", layers: [][]ent{{file(".wh..", "")}}, wantErr: ErrInvalidArchive},
		{name: "WhiteoutCurrentDirectory", layers: [][]ent{{dir("etc/"), file("etc/.wh..", "")}}, wantErr: ErrInvalidArchive},
		{name: "WhiteoutEmpty", layers: [][]ent{{file(".wh.", "")}}, wantErr: ErrInvalidArchive},
		{name: "WhiteoutSymlink", layers: [][]ent{{dir("etc/"), file("etc/keep", "x"), symlink("localetc", "/etc")}, {file(".wh.localetc", "")}}, check: func(t *testing.T, root string) {
			exists("etc/keep")(t, root)
			if _, err := os.Lstat(filepath.Join(root, "localetc")); !os.IsNotExist(err) {
				t.Errorf("localetc should be whited out: %v", err)
			}
		}},
		{name: "WhiteoutSymlinkPath", layers: [][]ent{{symlink("localetc", absOut)}, {file("localetc/.wh.passwd", "")}}},
		{name: "WhiteoutSymlinkPathRelative", layers: [][]ent{{symlink("l", "../outside")}, {file("l/.wh.passwd", "")}}},
		{name: "WhiteoutDirectoryName", layers: [][]ent{{file(".wh.etc/somefile", "x")}}, check: exists(".wh.etc/somefile")},
		{name: "WhiteoutDeadSymlinkParent", layers: [][]ent{{symlink("dead", absOut+"/nothing")}, {file("dead/.wh.passwd", "")}}},
		{name: "WhiteoutRelativePath", layers: [][]ent{{dir("etc/")}, {file("dne/../.wh.etc", "")}}, check: func(t *testing.T, root string) {
			if _, err := os.Lstat(filepath.Join(root, "etc")); !os.IsNotExist(err) {
				t.Errorf("etc should be whited out: %v", err)
			}
		}},
		{name: "OpaqueThroughSymlink", layers: [][]ent{{symlink("l", absOut)}, {file("l/.wh..wh..opq", "")}}},
		{name: "SymlinkOverridePath", layers: [][]ent{{dir("foo/"), file("foo"+absOut+"/x1", "x"), symlink("foo", "/"),
			file("foo"+absOut+"/x2", "x"), dir("foo/"), file("foo"+absOut+"/x3", "x")}}, check: exists(absOut + "/x2")},
		{name: "NonDirParent", layers: [][]ent{{file("a", "x"), file("a/b", "y")}}, check: exists("a/b")},
		{name: "SymlinkToFileAsParent", layers: [][]ent{{symlink("s", absOut+"/passwd"), file("s/x", "y")}}, anyErr: true},
	}
	for _, c := range cases {
		for _, rootless := range []bool{true, false} {
			if !rootless && os.Geteuid() != 0 {
				continue
			}
			t.Run(fmt.Sprintf("%s/rootless=%v", c.name, rootless), func(t *testing.T) {
				before := snapshot(t, outside)
				root := filepath.Join(t.TempDir(), "rootfs")
				var tars [][]byte
				for _, l := range c.layers {
					tars = append(tars, tarOf(t, l...))
				}
				err := unpackTars(t, root, Options{Rootless: rootless}, tars...)
				switch {
				case c.anyErr:
				case c.wantErr != nil && !errors.Is(err, c.wantErr):
					t.Errorf("want error %v, got %v", c.wantErr, err)
				case c.wantErr == nil && err != nil:
					t.Errorf("unexpected error: %v", err)
				}
				if err != nil {
					if _, serr := os.Lstat(root); !os.IsNotExist(serr) {
						t.Errorf("half-built rootfs left behind after %v", err)
					}
				} else if c.check != nil {
					c.check(t, root)
				}
				if d := diffSnap(before, snapshot(t, outside)); len(d) > 0 {
					t.Errorf("host directory outside the rootfs changed:\n%s", strings.Join(d, "\n"))
				}
				if fi, err := os.Stat(sentinel); err != nil || fi.Mode().Perm() != 0o400 {
					t.Errorf("sentinel changed: %v %v", fi, err)
				}
				if _, err := os.Lstat(hostEtcPwn); err == nil {
					os.Remove(hostEtcPwn)
					t.Errorf("wrote %s on the host", hostEtcPwn)
				}
			})
		}
	}
}

// TestBombs: decompressed size and entry count are bounded, and the partial
// rootfs is removed.
func TestBombs(t *testing.T) {
	zeros := tarOf(t, file("zeros", strings.Repeat("\x00", 8<<20)))
	many := make([]ent, 0, 2000)
	for i := 0; i < 2000; i++ {
		many = append(many, file(fmt.Sprintf("f%d", i), ""))
	}
	manyTar := tarOf(t, many...)
	cases := []struct {
		name string
		blob []byte
		tar  []byte
		opts Options
	}{
		{"GzipBytes", gz(t, zeros), zeros, Options{MaxBytes: 1 << 20}},
		{"ZstdBytes", zst(t, zeros), zeros, Options{MaxBytes: 1 << 20}},
		{"PlainBytes", zeros, zeros, Options{MaxBytes: 1 << 20}},
		{"Entries", gz(t, manyTar), manyTar, Options{MaxEntries: 100}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Rootless = os.Geteuid() != 0
			root := filepath.Join(t.TempDir(), "rootfs")
			_, err := Unpack(context.Background(), root, []Layer{layerOf(c.blob, c.tar)}, c.opts)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("want ErrTooLarge, got %v", err)
			}
			if _, err := os.Lstat(root); !os.IsNotExist(err) {
				t.Errorf("rootfs not removed: %v", err)
			}
		})
	}
	t.Run("ZstdHugeWindow", func(t *testing.T) {
		// A frame header declaring a 2 GiB window (no checksum, no size):
		// refused by the decoder limit before it allocates.
		frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0x01, 0x00, 0x00}
		_, err := Unpack(context.Background(), filepath.Join(t.TempDir(), "r"), []Layer{{
			Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(frame)), nil },
		}}, Options{Rootless: true})
		if err == nil {
			t.Fatal("huge-window zstd frame accepted")
		}
	})
}

// TestVerification: a corrupted blob or a wrong diff id fails the unpack
// and removes the rootfs; a digest that is not a digest is refused before
// the blob is opened (CVE-2024-3727).
func TestVerification(t *testing.T) {
	tr := tarOf(t, file("a", "hello"))
	blob := gz(t, tr)
	bad := append([]byte(nil), blob...)
	bad = append(bad, 0) // trailing garbage changes the blob digest
	opened := false
	cases := []struct {
		name string
		l    Layer
	}{
		{"BlobDigest", Layer{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(bad)), nil }, Digest: sha(blob), DiffID: sha(tr)}},
		{"DiffID", Layer{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil }, Digest: sha(blob), DiffID: sha([]byte("x"))}},
		{"SizeTooSmall", Layer{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil }, Digest: sha(blob), Size: int64(len(blob)) - 1}},
		{"SizeTooLarge", Layer{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil }, DiffID: sha(tr), Size: int64(len(blob)) + 1}},
		{"UnsupportedAlgorithm", Layer{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil }, DiffID: "md5:d41d8cd98f00b204e9800998ecf8427e"}},
		{"Sha512Mismatch", Layer{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil }, Digest: digest.Digest("sha512:" + strings.Repeat("0", 128))}},
		{"TruncatedGzipNoDigests", Layer{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob[:len(blob)-12])), nil }}},
		{"InvalidDigest", Layer{Open: func() (io.ReadCloser, error) { opened = true; return io.NopCloser(bytes.NewReader(blob)), nil }, Digest: "sha256:../../../../etc/pwn"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "rootfs")
			if _, err := Unpack(context.Background(), root, []Layer{c.l}, Options{Rootless: true}); err == nil {
				t.Fatal("corrupt layer accepted")
			}
			if _, err := os.Lstat(root); !os.IsNotExist(err) {
				t.Errorf("rootfs not removed: %v", err)
			}
		})
	}
	if opened {
		t.Error("blob with an invalid digest was opened")
	}
	// sha512 digests are verified too, not skipped.
	good := Layer{Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil },
		Digest: digest.SHA512.FromBytes(blob), DiffID: digest.SHA512.FromBytes(tr)}
	if _, err := Unpack(context.Background(), filepath.Join(t.TempDir(), "r"), []Layer{good}, Options{Rootless: true}); err != nil {
		t.Errorf("sha512 layer: %v", err)
	}
}

// cancelReader cancels its context once the first bytes are read.
type cancelReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if len(p) > 4096 {
		p = p[:4096]
	}
	n, err := c.r.Read(p)
	c.cancel()
	return n, err
}

// TestCancel: an interrupted unpack (the CLI cancels on SIGINT/SIGTERM)
// fails with the context's error and removes the half-built rootfs.
func TestCancel(t *testing.T) {
	var ents []ent
	for i := 0; i < 200; i++ {
		ents = append(ents, file(fmt.Sprintf("f%d", i), strings.Repeat("x", 64<<10)))
	}
	tr := tarOf(t, ents...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := Layer{Open: func() (io.ReadCloser, error) {
		return io.NopCloser(&cancelReader{r: bytes.NewReader(tr), cancel: cancel}), nil
	}}
	root := filepath.Join(t.TempDir(), "rootfs")
	_, err := Unpack(ctx, root, []Layer{l}, Options{Rootless: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if _, err := os.Lstat(root); !os.IsNotExist(err) {
		t.Errorf("rootfs left after cancel: %v", err)
	}
}
