package rootfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountTmpfsCopyUp is a tmpfs with runc's "tmpcopyup": it starts with a copy
// of what the image has at the destination (podman adds it to every tmpfs,
// and to /run, /tmp and /var/tmp under --read-only). The directory is held
// open before the tmpfs covers it, so the copy reads the covered contents
// through that fd; every entry is opened relative to its parent with
// O_NOFOLLOW, so nothing outside the rootfs is read or written.
func mountTmpfsCopyUp(root, target *os.File, m specs.Mount, p Parsed) error {
	old, err := pathrs.Reopen(target, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("tmpcopyup: %s is not a directory: %w", m.Destination, err)
	}
	defer old.Close()
	flags := p.Flags &^ (unix.MS_REMOUNT | unix.MS_RDONLY)
	if err := unix.Mount("tmpfs", fdPath(target), "tmpfs", flags, p.Data); err != nil {
		return err
	}
	nt, err := pathrs.OpenatInRoot(root, m.Destination)
	if err != nil {
		return err
	}
	defer nt.Close()
	dst, err := pathrs.Reopen(nt, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	defer dst.Close()
	if err := copyTree(int(old.Fd()), int(dst.Fd())); err != nil {
		return fmt.Errorf("tmpcopyup %s: %w", m.Destination, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(old.Fd()), &st); err == nil {
		if !strings.Contains(p.Data, "mode=") {
			_ = unix.Fchmod(int(dst.Fd()), st.Mode&0o7777)
		}
		_ = unix.Fchown(int(dst.Fd()), int(st.Uid), int(st.Gid))
	}
	if p.Flags&unix.MS_RDONLY != 0 {
		if err := unix.Mount("", fdPath(nt), "", unix.MS_REMOUNT|unix.MS_RDONLY|flags, p.Data); err != nil {
			return &os.PathError{Op: "remount read-only", Path: m.Destination, Err: err}
		}
	}
	return nil
}

// copyTree copies the contents of directory src into directory dst:
// directories, regular files, symlinks, device nodes and fifos, with modes,
// owners and times.
func copyTree(src, dst int) error {
	dup, err := unix.FcntlInt(uintptr(src), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(dup), "copyup-src")
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := copyEntry(src, dst, name); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func copyEntry(src, dst int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	perm := st.Mode & 0o7777
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdirat(dst, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		s, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		t, err := unix.Openat(dst, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(t)
		if err := copyTree(s, t); err != nil {
			return err
		}
		if err := unix.Fchmod(t, perm); err != nil {
			return err
		}
	case unix.S_IFREG:
		s, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		sf := os.NewFile(uintptr(s), name)
		defer sf.Close()
		t, err := unix.Openat(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		tf := os.NewFile(uintptr(t), name)
		_, err = io.Copy(tf, sf)
		if err == nil {
			err = unix.Fchmod(t, perm)
		}
		if cerr := tf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(src, name, buf)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(string(buf[:n]), dst, name); err != nil {
			return err
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		if err := unix.Mknodat(dst, name, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
	default:
		return nil // sockets are not copied
	}
	if err := unix.Fchownat(dst, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(dst, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}
