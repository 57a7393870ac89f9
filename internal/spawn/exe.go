package spawn

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// sealedExe returns an O_PATH handle of the runtime binary on a read-only
// bind mount that is already detached from every mount table.
//
// CVE-2019-5736: a container process could open /proc/<pid>/exe of a
// runtime process running inside the container (init before it execs, or an
// exec'd process) and, once that process exited, reopen it for writing and
// overwrite the host's runtime binary. runc answered with a memfd copy of
// the binary on every start (about 9 ms) and later an overlayfs seal. berth
// executes itself through a read-only bind mount instead: /proc/<pid>/exe of
// the child names a file on a read-only mount, so every write through it
// fails with EROFS, and the cost is a handful of syscalls, not a copy.
func sealedExe() (*os.File, error) {
	tmp, err := os.CreateTemp("", ".berth-exe-")
	if err != nil {
		return nil, err
	}
	path := tmp.Name()
	tmp.Close()
	defer os.Remove(path)
	if err := unix.Mount("/proc/self/exe", path, "", unix.MS_BIND, ""); err != nil {
		return nil, &os.PathError{Op: "bind mount runtime binary", Path: path, Err: err}
	}
	detach := func() { _ = unix.Unmount(path, unix.MNT_DETACH) }
	if err := unix.Mount("", path, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		detach()
		return nil, &os.PathError{Op: "seal runtime binary", Path: path, Err: err}
	}
	f, err := os.OpenFile(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	detach()
	if err != nil {
		return nil, err
	}
	// Make sure we really got the read-only view before trusting it.
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
		f.Close()
		return nil, fmt.Errorf("sealing %s: the bind mount is not read-only", filepath.Base(path))
	}
	return f, nil
}
