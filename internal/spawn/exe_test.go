package spawn

import (
	"testing"

	"golang.org/x/sys/unix"

	"berth/internal/testutil"
)

// TestSealedExe: the handle names the running binary (same inode) on a
// read-only mount, so writes through it fail with EROFS once the binary is
// no longer running (test/integration's TestCVE_2019_5736_ExeOverwrite
// checks that end to end).
func TestSealedExe(t *testing.T) {
	testutil.RequireRoot(t)
	f, err := sealedExe()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
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
