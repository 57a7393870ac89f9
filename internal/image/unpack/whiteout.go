// Whiteouts: a .wh.NAME entry removes NAME from the layers below, an
// opaque marker hides a directory's lower content.

package unpack

import (
	"errors"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// whiteout applies a ".wh." entry found in directory parent.
func (a *applier) whiteout(parent, base string) error {
	if base == opaqueMarker {
		return a.opaque(parent)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // other aufs metadata (.wh..wh.plnk ...) carries no changes
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return invalid("whiteout %q names no file", base)
	}
	target := path.Join(parent, name)
	if _, ok := a.written[target]; ok {
		return nil // a whiteout only hides lower layers, never this one
	}
	if a.opts.Format == FormatOverlay {
		pfd, err := a.dir(parent, true)
		if err != nil {
			return err
		}
		if _, err := a.clear(pfd, name, false); err != nil {
			return err
		}
		if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
			return &os.PathError{Op: "mknod whiteout", Path: target, Err: err}
		}
		return nil
	}
	pfd, err := a.dirNoCache(parent)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil // nothing below to hide
	}
	if err != nil {
		return &os.PathError{Op: "resolve", Path: parent, Err: err}
	}
	defer unix.Close(pfd)
	return a.removeAt(pfd, name)
}

// opaque hides every lower child of dir. It may come after entries of the
// same layer in dir, so those (tracked in written) survive.
func (a *applier) opaque(dir string) error {
	if a.opts.Format == FormatOverlay {
		pfd, err := a.dir(dir, true)
		if err != nil {
			return err
		}
		fd, err := openat2(pfd, ".", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC})
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		x := "trusted.overlay.opaque"
		if a.opts.OverlayUserXattr {
			x = "user.overlay.opaque"
		}
		if err := unix.Fsetxattr(fd, x, []byte("y"), 0); err != nil {
			return &os.PathError{Op: "setxattr " + x, Path: dir, Err: err}
		}
		a.markWritten(dir)
		return nil
	}
	fd, err := a.dirNoCache(dir)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "resolve", Path: dir, Err: err}
	}
	rfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	unix.Close(fd)
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	return a.hideLower(rfd, dir)
}

func (a *applier) hideLower(fd int, dir string) error {
	names, err := readNames(fd)
	if err != nil {
		return err
	}
	for _, n := range names {
		cp := path.Join(dir, n)
		if _, ok := a.written[cp]; !ok {
			if err := a.removeAt(fd, n); err != nil {
				return err
			}
			continue
		}
		cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue
		}
		if err != nil {
			return err
		}
		err = a.hideLower(cfd, cp)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}
