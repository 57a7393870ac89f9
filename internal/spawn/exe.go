package spawn

import (
	"fmt"
	"io"
	"os"

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
//
// The mount is made detached from the start (open_tree OPEN_TREE_CLONE, then
// mount_setattr read-only): it never appears in a mount table and goes away
// with its last fd, so a runtime killed at any point leaves nothing behind.
// Where that is refused (kernels before 5.12), a bind mount on a temp file,
// detached right after it is opened, is the fallback. A rootless runtime
// may make neither mount: then the binary itself is safe when the runtime's
// user (the container's root at most) cannot write it, and otherwise a
// sealed memfd copy is what the child runs.
func sealedExe() (*os.File, error) {
	if f, err := detachedExe(); err == nil {
		return f, nil
	}
	if f, err := boundExe(); err == nil || os.Geteuid() == 0 {
		return f, err
	}
	if unix.Access("/proc/self/exe", unix.W_OK) != nil {
		return os.OpenFile("/proc/self/exe", unix.O_PATH|unix.O_CLOEXEC, 0)
	}
	return memfdExe()
}

// memfdExe is a copy of the runtime binary in a memfd sealed against any
// change (runc's answer, at the cost of the copy).
func memfdExe() (*os.File, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("berth-exe", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := os.NewFile(uintptr(fd), "berth-exe")
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("copy runtime binary: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, os.NewSyscallError("fcntl(F_ADD_SEALS)", err)
	}
	return f, nil
}

// boundExe is the fallback: a read-only bind mount on a temp file, opened
// and detached at once.
func boundExe() (*os.File, error) {
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
	return checkReadonly(f)
}

// detachedExe is the runtime binary on a read-only mount of its own that
// is detached from every mount table from the moment it exists.
func detachedExe() (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, "/proc/self/exe", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, &os.PathError{Op: "open_tree", Path: "/proc/self/exe", Err: err}
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "seal runtime binary (mount_setattr)", Path: "/proc/self/exe", Err: err}
	}
	return checkReadonly(os.NewFile(uintptr(fd), "berth-exe"))
}

// checkReadonly makes sure f really is on a read-only mount before it is
// trusted.
func checkReadonly(f *os.File) (*os.File, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || st.Flags&unix.ST_RDONLY == 0 {
		f.Close()
		return nil, fmt.Errorf("sealing the runtime binary: its mount is not read-only")
	}
	return f, nil
}
