// In-root resolution: every path of a layer is resolved inside the root
// (openat2 RESOLVE_IN_ROOT), directory by directory, with a cache of the
// directory fds resolved so far that any removal drops.

package unpack

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"unsafe"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// dropCache forgets every resolved directory (after any removal a path may
// resolve differently). The fds may still be in use by the entry being
// applied, so they are closed only when the next entry starts (reap).
func (a *applier) dropCache() {
	for k, fd := range a.cache {
		a.stale = append(a.stale, fd)
		delete(a.cache, k)
	}
}

func (a *applier) reap() {
	for _, fd := range a.stale {
		unix.Close(fd)
	}
	a.stale = a.stale[:0]
}

// cleanName turns a tar entry name into an absolute, lexically clean path
// inside the root: "../../etc" and "/../etc" both become "/etc", so no name
// can climb out before resolution even starts.
func cleanName(name string) string { return path.Clean("/" + name) }

var inRoot = unix.OpenHow{
	Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
	Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
}

func openat2(dirfd int, p string, how *unix.OpenHow) (int, error) {
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dirfd, p, how)
		if err == unix.EAGAIN && i < 16 {
			continue // a concurrent rename elsewhere on the system: retry
		}
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// dir returns an O_PATH fd of directory p resolved inside the root, with
// symlinks followed as if the root were "/". With create, missing directories
// are made and a non-directory in the way is replaced (umoci's rule for an
// entry under a regular file). The fd belongs to the cache.
func (a *applier) dir(p string, create bool) (int, error) {
	if p == "/" {
		return a.rootfd, nil
	}
	if fd, ok := a.cache[p]; ok {
		return fd, nil
	}
	fd, err := openat2(a.rootfd, p[1:], &inRoot)
	if err != nil && create && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)) {
		fd, err = a.mkdirAll(p)
	}
	if err != nil {
		return -1, &os.PathError{Op: "resolve", Path: p, Err: err}
	}
	if len(a.cache) >= 64 {
		a.dropCache()
	}
	a.cache[p] = fd
	return fd, nil
}

func (a *applier) mkdirAll(p string) (int, error) { return a.mkdirAllDepth(p, 0) }

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: name, Err: err}
	}
	return string(buf[:n]), nil
}

func (a *applier) mkdirAllDepth(p string, depth int) (int, error) {
	if depth > 40 {
		return -1, &os.PathError{Op: "mkdir", Path: p, Err: unix.ELOOP}
	}
	for attempt := 0; attempt < 64; attempt++ {
		missing := a.missingPrefixes(p)
		f, err := pathrs.MkdirAllHandle(a.root, p, 0o755)
		if err == nil {
			fd, derr := unix.Dup(int(f.Fd()))
			f.Close()
			if derr != nil {
				return -1, derr
			}
			unix.CloseOnExec(fd)
			if err := a.ownImplicit(missing); err != nil {
				unix.Close(fd)
				return -1, err
			}
			return fd, nil
		}
		if !errors.Is(err, unix.ENOTDIR) {
			return -1, err
		}
		// Find the first component that is a non-directory and replace it.
		fixed := false
		comps := strings.Split(p[1:], "/")
	walk:
		for i := range comps {
			q := "/" + strings.Join(comps[:i+1], "/")
			pfd, perr := a.dirNoCache(path.Dir(q))
			if perr != nil {
				return -1, perr
			}
			var st unix.Stat_t
			serr := unix.Fstatat(pfd, comps[i], &st, unix.AT_SYMLINK_NOFOLLOW)
			if serr != nil {
				unix.Close(pfd)
				if serr == unix.ENOENT {
					break
				}
				return -1, serr
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				unix.Close(pfd)
				continue
			case unix.S_IFLNK:
				// A symlink: it must resolve to a directory in the root.
				if fd, oerr := openat2(a.rootfd, q[1:], &inRoot); oerr == nil {
					unix.Close(fd)
					unix.Close(pfd)
					continue
				}
				// A dangling symlink: make its target, resolved inside the
				// root (as umoci's securejoin.MkdirAll does), then retry.
				target, lerr := readlinkat(pfd, comps[i])
				unix.Close(pfd)
				if lerr != nil {
					return -1, lerr
				}
				if !path.IsAbs(target) {
					target = path.Join(path.Dir(q), target)
				}
				if dfd, derr := a.mkdirAllDepth(cleanName(target), depth+1); derr != nil {
					return -1, invalid("%s: parent is a symlink to a non-directory: %v", q, derr)
				} else {
					unix.Close(dfd)
				}
				fixed = true
				break walk
			}
			rerr := a.removeAt(pfd, comps[i])
			unix.Close(pfd)
			if rerr != nil {
				return -1, rerr
			}
			fixed = true
			break
		}
		if !fixed {
			return -1, err
		}
	}
	return -1, fmt.Errorf("mkdir %s: too many replacements", p)
}

// missingPrefixes lists the prefixes of p that do not resolve yet, when
// implicitly created directories need an owner other than the host's root.
func (a *applier) missingPrefixes(p string) []string {
	if a.opts.Rootless || len(a.opts.UIDMaps)+len(a.opts.GIDMaps) == 0 {
		return nil
	}
	var out []string
	for q := p; q != "/"; q = path.Dir(q) {
		fd, err := a.dirNoCache(q)
		if err == nil {
			unix.Close(fd)
			break
		}
		out = append(out, q)
	}
	return out
}

// ownImplicit gives directories made only because an entry needed them the
// image root's owner (container 0 mapped to the host), so a user-namespaced
// container does not see them as owned by nobody.
func (a *applier) ownImplicit(dirs []string) error {
	if len(dirs) == 0 || a.opts.Rootless || len(a.opts.UIDMaps)+len(a.opts.GIDMaps) == 0 {
		return nil
	}
	uid, uok := toHost(0, a.opts.UIDMaps)
	gid, gok := toHost(0, a.opts.GIDMaps)
	if !uok || !gok {
		return nil // container root is unmapped: leave host root
	}
	for _, d := range dirs {
		fd, err := a.dirNoCache(d)
		if err != nil {
			return &os.PathError{Op: "resolve", Path: d, Err: err}
		}
		err = unix.Fchownat(fd, "", int(uid), int(gid), unix.AT_EMPTY_PATH)
		unix.Close(fd)
		if err != nil {
			return &os.PathError{Op: "chown", Path: d, Err: err}
		}
	}
	return nil
}

// dirNoCache resolves p in the root without creating; the caller closes.
func (a *applier) dirNoCache(p string) (int, error) {
	if p == "/" {
		return unix.Dup(a.rootfd)
	}
	return openat2(a.rootfd, p[1:], &inRoot)
}

// removeAt removes name in dirfd, recursively for directories, never
// following a symlink (the link itself is removed).
func (a *applier) removeAt(dirfd int, name string) error {
	a.dropCache()
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return &os.PathError{Op: "unlink", Path: name, Err: err}
	}
	fd, oerr := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if oerr != nil {
		return &os.PathError{Op: "unlink", Path: name, Err: err}
	}
	if a.opts.Rootless {
		unix.Fchmod(fd, 0o700) // a 0500 directory cannot lose its children otherwise
	}
	names, rerr := readNames(fd)
	if rerr == nil {
		for _, n := range names {
			if rerr = a.removeAt(fd, n); rerr != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if rerr != nil {
		return rerr
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "rmdir", Path: name, Err: err}
	}
	return nil
}

// readNames lists a directory fd without changing its offset for others
// (the fd is private to the caller).
func readNames(fd int) ([]string, error) {
	var names []string
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		b := buf[:n]
		for len(b) > 0 {
			d := (*unix.Dirent)(unsafe.Pointer(&b[0]))
			rec := b[:d.Reclen]
			b = b[d.Reclen:]
			nameb := rec[unsafe.Offsetof(d.Name):]
			if i := indexByte0(nameb); i >= 0 {
				nameb = nameb[:i]
			}
			nm := string(nameb)
			if nm == "." || nm == ".." {
				continue
			}
			names = append(names, nm)
		}
	}
}

func indexByte0(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}
