// Package atomicfile is berth's one way to replace a file: the data goes to
// a temp file in the same directory (".NAME.tmp-RANDOM", created O_EXCL and
// O_NOFOLLOW, so a planted symlink or file is never written through), which
// gets the mode asked for (not narrowed by the umask), is fsynced, renamed
// over NAME, and the directory is fsynced. A reader sees the old content or
// the new, never a part, and after a crash the file system holds one of the
// two as well.
//
// NoSync drops both fsyncs for files that describe only what a reboot ends
// anyway or that are scratch (a container's state.json, a netns marker, an
// OCI layout staged for an archive): on the disk this runs on an fsync costs
// milliseconds, which a container start pays for every save.
//
// A writer killed between creating the temp file and the rename leaves it
// behind; RemoveTemps, called under the lock every writer of those files
// holds, sweeps them, and IsTemp tells a directory listing to skip them.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

type options struct{ noSync bool }

// Option changes how a file is written.
type Option func(*options)

// NoSync skips the fsync of the file and of its directory (default: both
// are synced). The rename still keeps readers from seeing a part.
func NoSync() Option { return func(o *options) { o.noSync = true } }

// tempInfix sits between ".NAME" and the random suffix of a temp file.
const tempInfix = ".tmp-"

// IsTemp reports whether name (a base name) is a temp file this package
// writes: a directory listing skips such entries.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempInfix)
}

// RemoveTemps removes the temp files a killed writer left in dir for the
// files named. The caller must hold whatever lock every writer of those
// files holds, or it may remove a temp file being written.
func RemoveTemps(dir string, names ...string) {
	for _, n := range names {
		ms, _ := filepath.Glob(filepath.Join(dir, "."+n+tempInfix+"*"))
		for _, p := range ms {
			os.Remove(p)
		}
	}
}

// Write replaces path with data, with mode mode.
func Write(path string, data []byte, mode os.FileMode, opts ...Option) error {
	return WriteFunc(path, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, opts...)
}

// WriteFunc replaces path with what fill writes, with mode mode. When fill
// fails, path is left as it was and the temp file is removed.
func WriteFunc(path string, mode os.FileMode, fill func(io.Writer) error, opts ...Option) error {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	dirFd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dirFd)
	return write(dirFd, dir, name, mode, fill, opts)
}

// WriteAt replaces the file name in the directory open as dirFd, with mode
// mode: for writes into a tree the caller does not trust (a container's
// rootfs), where dirFd was resolved safely and name is a single component.
// dirFd may be an O_PATH descriptor.
func WriteAt(dirFd int, name string, data []byte, mode os.FileMode, opts ...Option) error {
	if name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
		return &os.PathError{Op: "write", Path: name, Err: errors.New("not a single path component")}
	}
	return write(dirFd, "", name, mode, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}, opts)
}

func write(dirFd int, dir, name string, mode os.FileMode, fill func(io.Writer) error, opts []Option) (retErr error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := "." + name + tempInfix + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dirFd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: filepath.Join(dir, tmp), Err: err}
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir, tmp))
	defer func() {
		if f != nil {
			f.Close()
		}
		if retErr != nil {
			_ = unix.Unlinkat(dirFd, tmp, 0)
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if !o.noSync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	err = f.Close()
	f = nil
	if err != nil {
		return err
	}
	if err := unix.Renameat(dirFd, tmp, dirFd, name); err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(dir, tmp), New: filepath.Join(dir, name), Err: err}
	}
	if o.noSync {
		return nil
	}
	return syncDir(dirFd, dir)
}

// syncDir fsyncs the directory open as dirFd, which may be O_PATH (fsync
// needs a descriptor that is not).
func syncDir(dirFd int, dir string) error {
	fd, err := unix.Openat(dirFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return &os.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return nil
}
