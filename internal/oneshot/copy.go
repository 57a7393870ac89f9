package oneshot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Copying between a container and the host (cp) or from an image into a new
// volume (copy-up) walks trees the container controls: a process in it can
// swap a directory for a symlink to /etc at any moment. So paths on the
// container side are resolved with openat2(RESOLVE_IN_ROOT) against a file
// descriptor of the container's root (symlinks, absolute ones included,
// stay inside it; CVE-2019-14271 and CVE-2018-15664 were docker cp
// following them out), and the walk itself only ever works on file
// descriptors: every entry is opened, created or read relative to its
// parent's descriptor with O_NOFOLLOW, and its type comes from fstat of the
// descriptor that is then read, never from a second lookup of the name.

// tree is one side of a copy.
type tree struct {
	root   *os.File // the directory paths are resolved in
	inRoot bool     // resolve in the root (container side), or as the host does
}

func openTree(dir string, inRoot bool) (*tree, error) {
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &tree{root: f, inRoot: inRoot}, nil
}

func (t *tree) Close() error { return t.root.Close() }

// openDir opens directory p of the tree (O_PATH, for *at calls), symlinks
// followed (in the root on the container side).
func (t *tree) openDir(p string) (*os.File, error) {
	return t.open(p, unix.O_PATH|unix.O_DIRECTORY)
}

func (t *tree) open(p string, flags int) (*os.File, error) {
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC)}
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	if t.inRoot {
		how.Resolve = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS
	}
	fd, err := unix.Openat2(int(t.root.Fd()), rel, &how)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// followFinal resolves a symlink at the last component of p, step by step
// and each step in the tree, so a destination that is a link is written
// where the link points (inside the container), as docker does.
func (t *tree) followFinal(p string) (string, error) {
	buf := make([]byte, unix.PathMax)
	for i := 0; i < 40; i++ {
		if p == "/" {
			return p, nil
		}
		parent, err := t.openDir(path.Dir(p))
		if err != nil {
			return p, nil // the copy reports it
		}
		n, err := unix.Readlinkat(int(parent.Fd()), path.Base(p), buf)
		parent.Close()
		if err != nil {
			return p, nil // not a symlink, or missing
		}
		target := string(buf[:n])
		if path.IsAbs(target) {
			p = path.Clean(target)
		} else {
			p = path.Join(path.Dir(p), target)
		}
	}
	return "", &os.PathError{Op: "resolve", Path: p, Err: unix.ELOOP}
}

// copyOpts: Owner >= 0 gives every copied entry that owner (docker cp:
// root inside the container, the caller on the host); -1 keeps the
// source's (cp -a, copy-up).
type copyOpts struct {
	UID, GID int
	Warn     func(string)
}

func (o copyOpts) keep() bool { return o.UID < 0 }

// copyEntry copies entry name of directory src (name "" is src itself, a
// directory) to entry dstName of directory dst, recursively.
func copyEntry(src *os.File, name string, dst *os.File, dstName string, o copyOpts) error {
	var st unix.Stat_t
	var err error
	if name == "" {
		err = unix.Fstat(int(src.Fd()), &st)
	} else {
		err = unix.Fstatat(int(src.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return &os.PathError{Op: "stat", Path: name, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		var sd *os.File
		if name == "" {
			sd, err = reopenDir(src)
		} else {
			sd, err = openAt(src, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		}
		if err != nil {
			return err
		}
		defer sd.Close()
		if err := unix.Fstat(int(sd.Fd()), &st); err != nil {
			return err
		}
		dd, err := makeDir(dst, dstName)
		if err != nil {
			return err
		}
		defer dd.Close()
		names, err := sd.Readdirnames(-1)
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := copyEntry(sd, n, dd, n, o); err != nil {
				return err
			}
		}
		return setAttrs(dd, &st, o)
	case unix.S_IFREG:
		sf, err := openAt(src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK)
		if err != nil {
			return err
		}
		defer sf.Close()
		if err := unix.Fstat(int(sf.Fd()), &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("%s changed while it was copied", name)
		}
		if err := clearEntry(dst, dstName); err != nil {
			return err
		}
		df, err := openAt(dst, dstName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		defer df.Close()
		if _, err := io.Copy(df, sf); err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
		return setAttrs(df, &st, o)
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(int(src.Fd()), name, buf)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: name, Err: err}
		}
		if err := clearEntry(dst, dstName); err != nil {
			return err
		}
		if err := unix.Symlinkat(string(buf[:n]), int(dst.Fd()), dstName); err != nil {
			return &os.PathError{Op: "symlink", Path: dstName, Err: err}
		}
		uid, gid := ownerFor(&st, o)
		_ = unix.Fchownat(int(dst.Fd()), dstName, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
		ts := []unix.Timespec{st.Atim, st.Mtim}
		_ = unix.UtimesNanoAt(int(dst.Fd()), dstName, ts, unix.AT_SYMLINK_NOFOLLOW)
		return nil
	case unix.S_IFIFO, unix.S_IFCHR, unix.S_IFBLK:
		if err := clearEntry(dst, dstName); err != nil {
			return err
		}
		if err := unix.Mknodat(int(dst.Fd()), dstName, st.Mode, int(st.Rdev)); err != nil {
			if o.Warn != nil {
				o.Warn(fmt.Sprintf("%s: not copied (a device or fifo): %v", name, err))
			}
			return nil
		}
		uid, gid := ownerFor(&st, o)
		_ = unix.Fchownat(int(dst.Fd()), dstName, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
		return nil
	default:
		if o.Warn != nil {
			o.Warn(fmt.Sprintf("%s: not copied (a socket)", name))
		}
		return nil
	}
}

func ownerFor(st *unix.Stat_t, o copyOpts) (int, int) {
	if o.keep() {
		return int(st.Uid), int(st.Gid)
	}
	return o.UID, o.GID
}

func setAttrs(f *os.File, st *unix.Stat_t, o copyOpts) error {
	uid, gid := ownerFor(st, o)
	if err := unix.Fchown(int(f.Fd()), uid, gid); err != nil {
		return &os.PathError{Op: "chown", Path: f.Name(), Err: err}
	}
	// After chown, which clears set-id bits.
	if err := unix.Fchmod(int(f.Fd()), st.Mode&0o7777); err != nil {
		return &os.PathError{Op: "chmod", Path: f.Name(), Err: err}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	_ = unix.UtimesNanoAt(int(f.Fd()), "", ts, unix.AT_EMPTY_PATH)
	return nil
}

func openAt(dir *os.File, name string, flags int, mode ...uint32) (*os.File, error) {
	var m uint32
	if len(mode) > 0 {
		m = mode[0]
	}
	fd, err := unix.Openat(int(dir.Fd()), name, flags|unix.O_CLOEXEC, m)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// reopenDir turns an O_PATH directory descriptor into a readable one.
func reopenDir(d *os.File) (*os.File, error) {
	return openAt(d, ".", unix.O_RDONLY|unix.O_DIRECTORY)
}

// makeDir returns directory name of dir, created if missing; a
// non-directory there is replaced.
func makeDir(dir *os.File, name string) (*os.File, error) {
	if name == "" {
		return reopenDir(dir)
	}
	err := unix.Mkdirat(int(dir.Fd()), name, 0o700)
	if errors.Is(err, unix.EEXIST) {
		var st unix.Stat_t
		if unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil {
				return nil, &os.PathError{Op: "unlink", Path: name, Err: err}
			}
			err = unix.Mkdirat(int(dir.Fd()), name, 0o700)
		} else {
			err = nil
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "mkdir", Path: name, Err: err}
	}
	return openAt(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
}

// clearEntry removes a non-directory at name so a new entry can be made
// there; a directory is an error (cp does not replace a directory with a
// file).
func clearEntry(dir *os.File, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("cannot overwrite directory %s with a non-directory", name)
	}
	if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil {
		return &os.PathError{Op: "unlink", Path: name, Err: err}
	}
	return nil
}

// copyInto copies the contents of directory p of rootfs (resolved in it)
// into the directory dst, which takes p's owner and mode: a new volume
// filled from the image. A missing p, or one that is not a directory,
// copies nothing.
func copyInto(rootfs, p, dst string) error {
	src, err := openTree(rootfs, true)
	if err != nil {
		return err
	}
	defer src.Close()
	d, err := src.openDir(p)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		return err
	}
	defer d.Close()
	to, err := os.OpenFile(dst, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer to.Close()
	return copyEntry(d, "", to, "", copyOpts{UID: -1, GID: -1})
}

// copyEnd is one side of `container cp`: a host path, or a path in a
// container's tree.
type copyEnd struct {
	tree *tree
	path string
}

// contentsOnly reports docker's "SRC/." form: the directory's contents, not
// the directory.
func contentsOnly(p string) bool {
	return p == "." || strings.HasSuffix(p, "/.")
}

// copyBetween copies src to dst with docker cp's rules: a directory
// destination that exists receives the source under its own name (or its
// contents, for "SRC/."); otherwise the destination names the copy, and
// its parent must exist.
func copyBetween(src, dst copyEnd, o copyOpts) error {
	sp := path.Clean("/" + src.path)
	var sparent *os.File
	var sname string
	var err error
	if sp == "/" || contentsOnly(src.path) {
		sparent, err = src.tree.openDir(sp)
		if err != nil {
			return err
		}
	} else {
		sparent, err = src.tree.openDir(path.Dir(sp))
		if err != nil {
			return err
		}
		sname = path.Base(sp)
	}
	defer sparent.Close()
	srcIsDir := sname == ""
	if !srcIsDir {
		var st unix.Stat_t
		if err := unix.Fstatat(int(sparent.Fd()), sname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "stat", Path: src.path, Err: err}
		}
		srcIsDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
	}
	dp, err := dst.tree.followFinal(path.Clean("/" + dst.path))
	if err != nil {
		return err
	}
	if dd, err := dst.tree.openDir(dp); err == nil {
		defer dd.Close()
		if sname == "" {
			// SRC/. (or the root of a tree): the contents.
			return copyEntry(sparent, "", dd, "", o)
		}
		return copyEntry(sparent, sname, dd, sname, o)
	} else if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
		return err
	}
	if strings.HasSuffix(dst.path, "/") && !srcIsDir {
		return fmt.Errorf("destination directory %s does not exist", dst.path)
	}
	if dp == "/" {
		return errors.New("cannot copy onto the root")
	}
	dparent, err := dst.tree.openDir(path.Dir(dp))
	if err != nil {
		return fmt.Errorf("destination %s: %w", dst.path, err)
	}
	defer dparent.Close()
	return copyEntry(sparent, sname, dparent, path.Base(dp), o)
}
