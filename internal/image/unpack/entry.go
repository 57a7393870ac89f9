// The entry kinds: directories, regular files, symlinks, hardlinks (in
// this layer or, for overlay bundles, a lower one) and device nodes, each
// created at a name already resolved in the root.

package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clear makes room for a new entry at base: an existing entry is
// removed, except that an existing directory stays when the new entry is a
// directory too (only its attributes change, per the image-spec).
func (a *applier) clear(pfd int, base string, keepDir bool) (isDir bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return false, nil
		}
		return false, err
	}
	if keepDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return true, nil
	}
	return false, a.removeAt(pfd, base)
}

func (a *applier) mkdir(pfd int, p, base string, hdr *tar.Header) error {
	err := unix.Mkdirat(pfd, base, 0o700)
	if errors.Is(err, unix.EEXIST) && a.opts.KeepDirlinks && a.isDirlink(pfd, p, base) {
		// umoci --keep-dirlinks: a directory entry over a symlink that
		// resolves (inside the root) to a directory keeps the symlink. The
		// entry's attributes are not applied through it.
		return nil
	}
	if errors.Is(err, unix.EEXIST) {
		var isDir bool
		if isDir, err = a.clear(pfd, base, true); err != nil {
			return err
		}
		if !isDir {
			err = unix.Mkdirat(pfd, base, 0o700)
		}
	}
	if err != nil {
		return &os.PathError{Op: "mkdir", Path: base, Err: err}
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: base, Err: err}
	}
	defer unix.Close(fd)
	return a.applyDirMeta(fd, p, hdr)
}

// isDirlink reports whether base in pfd is a symlink resolving, inside the
// root, to a directory.
func (a *applier) isDirlink(pfd int, p, base string) bool {
	var st unix.Stat_t
	if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return false
	}
	fd, err := openat2(a.rootfd, p[1:], &inRoot)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

func (a *applier) file(pfd int, base string, hdr *tar.Header, tr *tar.Reader, m meta) error {
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, base, flags, 0o600)
	if errors.Is(err, unix.EEXIST) {
		if _, err = a.clear(pfd, base, false); err != nil {
			return err
		}
		fd, err = unix.Openat(pfd, base, flags, 0o600)
	}
	if err != nil {
		return &os.PathError{Op: "create", Path: base, Err: err}
	}
	if hdr.Size < 0 {
		unix.Close(fd)
		return invalid("negative size")
	}
	a.stats.Bytes += hdr.Size
	if a.stats.Bytes > a.opts.maxBytes() {
		unix.Close(fd)
		return fmt.Errorf("%w: more than %d bytes of files", ErrTooLarge, a.opts.maxBytes())
	}
	if hdr.Size <= smallFile {
		bp := chunkPool.Get().(*[]byte)
		b := (*bp)[:hdr.Size]
		if _, err := io.ReadFull(tr, b); err != nil {
			chunkPool.Put(bp)
			unix.Close(fd)
			return fmt.Errorf("reading content: %w", err)
		}
		a.pool.submit(job{a: a, fd: fd, buf: bp, data: b, m: m})
		return nil
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	// A plain loop with a 1 MiB buffer: io.Copy into an *os.File would take
	// its ReadFrom path and write in 32 KiB pieces.
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := (*bp)[:chunkSize]
	for left := hdr.Size; left > 0; {
		n, err := io.ReadFull(tr, buf[:min(left, int64(len(buf)))])
		if err != nil {
			return fmt.Errorf("reading content: %w", err)
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return fmt.Errorf("writing content: %w", err)
		}
		left -= int64(n)
	}
	return a.setMeta(fd, m, m.mode, true)
}

func (a *applier) symlink(pfd int, base string, hdr *tar.Header, m meta) error {
	if _, err := a.clear(pfd, base, false); err != nil {
		return err
	}
	// The target is stored verbatim: it is only ever resolved inside the
	// root (here with RESOLVE_IN_ROOT, in the container by its mount ns).
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return &os.PathError{Op: "symlink", Path: base, Err: err}
	}
	if !a.opts.Rootless {
		if err := unix.Fchownat(pfd, base, m.uid, m.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lchown", Path: base, Err: err}
		}
	}
	for _, k := range sortedKeys(m.xattrs) {
		if strings.HasPrefix(k, "user.") {
			continue // the kernel allows no user.* xattrs on symlinks
		}
		if err := unix.Lsetxattr(procPath(pfd, base), k, []byte(m.xattrs[k]), 0); err != nil && !a.tolerableXattr(k, err) {
			return &os.PathError{Op: "lsetxattr " + k, Path: base, Err: err}
		}
	}
	return utimesAt(pfd, base, m)
}

func (a *applier) hardlink(pfd int, p, base string, hdr *tar.Header) error {
	target := cleanName(hdr.Linkname)
	if target == "/" {
		return invalid("hardlink to the root directory")
	}
	if target == p {
		return nil // a link to itself changes nothing
	}
	// The target's parent is resolved in the root like any entry; its last
	// component is never followed, so a link to a symlink links the symlink.
	tpfd, err := a.dirNoCache(path.Dir(target))
	if err != nil {
		return a.lowerHardlink(pfd, base, target, err)
	}
	defer unix.Close(tpfd)
	tbase := path.Base(target)
	var st unix.Stat_t
	if err := unix.Fstatat(tpfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return a.lowerHardlink(pfd, base, target, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return invalid("hardlink %s to a directory", target)
	}
	var cur unix.Stat_t
	if unix.Fstatat(pfd, base, &cur, unix.AT_SYMLINK_NOFOLLOW) == nil && cur.Ino == st.Ino && cur.Dev == st.Dev {
		return nil
	}
	if _, err := a.clear(pfd, base, false); err != nil {
		return err
	}
	if err := unix.Linkat(tpfd, tbase, pfd, base, 0); err != nil {
		return &os.LinkError{Op: "link", Old: target, New: base, Err: err}
	}
	return nil
}

// lowerHardlink handles a hardlink whose target is not in this directory:
// in FormatOverlay the target may live in a lower layer's directory, and the
// file is copied (an overlay cannot link across layers).
func (a *applier) lowerHardlink(pfd int, base, target string, cause error) error {
	if a.opts.Format == FormatOverlay {
		for _, lower := range a.opts.Lowers {
			if err := a.copyFromLower(lower, target, pfd, base); err == nil {
				return nil
			} else if !errors.Is(err, unix.ENOENT) {
				return err
			}
		}
	}
	if a.opts.Format == FormatOverlay && len(a.opts.Lowers) > 0 {
		return fmt.Errorf("%w: %s", ErrHardlinkLower, target)
	}
	return invalid("hardlink target %s does not exist in the root: %v", target, cause)
}

// ErrHardlinkLower is returned in FormatOverlay when a hardlink target is in
// neither this layer nor any of Options.Lowers (they may not be extracted
// yet when layers are extracted in parallel).
var ErrHardlinkLower = errors.New("hardlink target not found in this or any lower layer")

func (a *applier) copyFromLower(lower, target string, pfd int, base string) error {
	lf, err := os.OpenFile(lower, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer lf.Close()
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	sfd, err := openat2(int(lf.Fd()), target[1:], &how)
	if errors.Is(err, unix.ELOOP) {
		return invalid("hardlink to a symlink in a lower layer: %s", target)
	}
	if err != nil {
		return err
	}
	src := os.NewFile(uintptr(sfd), target)
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return invalid("hardlink to a non-regular file in a lower layer: %s", target)
	}
	if _, err := a.clear(pfd, base, false); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	dst := os.NewFile(uintptr(fd), base)
	defer dst.Close()
	if _, err := io.Copy(dst, src); err != nil {
		return err
	}
	m := meta{uid: int(st.Uid), gid: int(st.Gid), mode: st.Mode & 0o7777,
		atime: time.Unix(st.Atim.Unix()), mtime: time.Unix(st.Mtim.Unix())}
	if !a.opts.Rootless {
		if err := unix.Fchown(fd, m.uid, m.gid); err != nil {
			return err
		}
	}
	if err := unix.Fchmod(fd, m.mode); err != nil {
		return err
	}
	return futimens(fd, m.atime, m.mtime)
}

func (a *applier) node(pfd int, base string, hdr *tar.Header, m meta) error {
	if _, err := a.clear(pfd, base, false); err != nil {
		return err
	}
	mode := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode = unix.S_IFCHR
	case tar.TypeBlock:
		mode = unix.S_IFBLK
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(pfd, base, mode|0o600, int(dev)); err != nil {
		return &os.PathError{Op: "mknod", Path: base, Err: err}
	}
	// Nodes cannot be opened safely (a fifo blocks, a device has side
	// effects): reach the inode through an O_PATH fd that did not follow.
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: base, Err: err}
	}
	defer unix.Close(fd)
	self := "/proc/self/fd/" + strconv.Itoa(fd)
	if !a.opts.Rootless {
		if err := unix.Fchownat(fd, "", m.uid, m.gid, unix.AT_EMPTY_PATH); err != nil {
			return &os.PathError{Op: "chown", Path: base, Err: err}
		}
	}
	if err := unix.Chmod(self, m.mode); err != nil {
		return &os.PathError{Op: "chmod", Path: base, Err: err}
	}
	for _, k := range sortedKeys(m.xattrs) {
		if err := unix.Setxattr(self, k, []byte(m.xattrs[k]), 0); err != nil && !a.tolerableXattr(k, err) {
			return &os.PathError{Op: "setxattr " + k, Path: base, Err: err}
		}
	}
	return utimesAt(pfd, base, m)
}
