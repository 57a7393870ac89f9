package spawn

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"berth/internal/testutil"
)

// TestSealedExe: the handle names the running binary (same inode) on a
// read-only mount, so writes through it fail with EROFS once the binary is
// no longer running (test/integration's TestCVE_2019_5736_ExeOverwrite
// checks that end to end).
// Both ways of sealing are checked; neither mount may be in the mount table
// while the handle is held (the detached one never was).
func TestSealedExe(t *testing.T) {
	testutil.RequireRoot(t)
	for name, seal := range map[string]func() (*os.File, error){"detached": detachedExe, "bound": boundExe, "default": sealedExe} {
		t.Run(name, func(t *testing.T) {
			f, err := seal()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			checkSealed(t, f)
			info, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(int(f.Fd())))
			if err != nil {
				t.Fatal(err)
			}
			id := ""
			for _, l := range strings.Split(string(info), "\n") {
				if v, ok := strings.CutPrefix(l, "mnt_id:"); ok {
					id = strings.TrimSpace(v)
				}
			}
			mi, err := os.ReadFile("/proc/self/mountinfo")
			if err != nil || id == "" {
				t.Fatalf("mount id %q: %v", id, err)
			}
			for _, l := range strings.Split(string(mi), "\n") {
				if strings.HasPrefix(l, id+" ") {
					t.Errorf("the sealed binary's mount is in the mount table: %s", l)
				}
			}
		})
	}
}

func checkSealed(t *testing.T, f *os.File) {
	t.Helper()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil || fs.Flags&unix.ST_RDONLY == 0 {
		t.Fatalf("sealed binary is not on a read-only mount (flags %#x, %v)", fs.Flags, err)
	}
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat("/proc/self/exe", &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino || a.Dev != b.Dev {
		t.Fatal("sealed handle is not the running binary")
	}
}

// BenchmarkSealedExe is the per-start cost of the CVE-2019-5736
// protection (runc 1.1 copies its binary into a memfd instead).
func BenchmarkSealedExe(b *testing.B) {
	testutil.RequireRoot(b)
	for b.Loop() {
		f, err := sealedExe()
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
