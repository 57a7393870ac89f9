package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestWriteReplacesWithMode(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for i, mode := range []os.FileMode{0o644, 0o600, 0o755} {
		for _, opts := range [][]Option{nil, {NoSync()}} {
			data := []byte{'v', byte('0' + i)}
			if err := Write(p, data, mode, opts...); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != string(data) {
				t.Fatalf("read back %q, %v; want %q", got, err, data)
			}
			fi, _ := os.Stat(p)
			if fi.Mode().Perm() != mode {
				t.Errorf("mode %v, want %v (the umask must not narrow it)", fi.Mode().Perm(), mode)
			}
		}
	}
	assertOnly(t, dir, "state.json")
}

func TestWriteFuncFailureLeavesOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFunc(p, 0o600, func(w io.Writer) error {
		w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the fill error", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("content %q after a failed write, want the old one", got)
	}
	assertOnly(t, dir, "f")
}

// A symlink planted where the temp file goes is never followed: the name
// is random and created O_EXCL|O_NOFOLLOW; a symlink at the target itself
// is replaced, not written through.
func TestWriteDoesNotFollowTargetSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "f")
	if err := os.Symlink(victim, p); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "keep" {
		t.Errorf("write went through the symlink: victim holds %q", got)
	}
	if fi, _ := os.Lstat(p); fi.Mode()&os.ModeSymlink != 0 {
		t.Error("the symlink was not replaced")
	}
}

func TestWriteAt(t *testing.T) {
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := WriteAt(fd, "resolv.conf", []byte("nameserver 10.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "resolv.conf")); string(got) != "nameserver 10.0.0.1\n" {
		t.Errorf("got %q", got)
	}
	for _, bad := range []string{"", ".", "..", "a/b"} {
		if err := WriteAt(fd, bad, nil, 0o644); err == nil {
			t.Errorf("WriteAt(%q) succeeded", bad)
		}
	}
	assertOnly(t, dir, "resolv.conf")
}

func TestTemps(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".leases.json.tmp-abc", ".network.json.tmp-1", ".other.tmp-2", "leases.json"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if want := n[0] == '.'; IsTemp(n) != want {
			t.Errorf("IsTemp(%q) = %v", n, !want)
		}
	}
	RemoveTemps(dir, "leases.json", "network.json")
	assertOnly(t, dir, ".other.tmp-2", "leases.json")
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if len(got) != len(names) {
		t.Fatalf("dir holds %v, want %v", got, names)
	}
	for i := range got {
		if got[i] != names[i] {
			t.Fatalf("dir holds %v, want %v", got, names)
		}
	}
}
