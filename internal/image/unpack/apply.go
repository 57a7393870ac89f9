package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	opaqueMarker   = ".wh..wh..opq"
	// rootlessXattr is where rootless unpacks record image ownership, in the
	// rootless-containers protobuf encoding umoci and runc's tooling read.
	rootlessXattr = "user.rootlesscontainers"
	// smallFile is the size up to which file content is buffered and written
	// by the worker pool; bigger files are written inline.
	smallFile = 1 << 20
)

// ErrInvalidArchive marks a layer whose entries are malformed or hostile.
var ErrInvalidArchive = errors.New("invalid archive")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArchive, fmt.Sprintf(format, a...))
}

// applier applies layers to one root directory.
type applier struct {
	root    *os.File
	rootfd  int
	opts    Options
	stats   Stats
	written map[string]struct{} // paths this layer wrote (and their ancestors)
	dirs    map[string]dirMeta  // directory attributes applied at the very end
	cache   map[string]int      // resolved directory fds, dropped on any removal
	stale   []int               // dropped fds, closed before the next entry
	pool    *writerPool
}

func newApplier(root string, opts Options) (*applier, error) {
	f, err := os.OpenFile(root, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs: %w", err)
	}
	w := opts.Workers
	if w <= 0 {
		w = 4
	}
	return &applier{
		root: f, rootfd: int(f.Fd()), opts: opts,
		dirs:  map[string]dirMeta{},
		cache: map[string]int{},
		pool:  newWriterPool(w),
	}, nil
}

func (a *applier) close() {
	a.dropCache()
	a.reap()
	a.pool.stop()
	a.root.Close()
}

func (a *applier) markWritten(p string) {
	for p != "/" {
		if _, ok := a.written[p]; ok {
			return
		}
		a.written[p] = struct{}{}
		p = path.Dir(p)
	}
}

// applyLayer reads one uncompressed tar stream into the root.
func (a *applier) applyLayer(r io.Reader) error {
	a.written = map[string]struct{}{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if err := a.pool.failed(); err != nil {
			return err
		}
		a.stats.Entries++
		if a.stats.Entries > a.opts.maxEntries() {
			return fmt.Errorf("%w: more than %d entries", ErrTooLarge, a.opts.maxEntries())
		}
		if len(hdr.Name) > maxNameLen || len(hdr.Linkname) > maxNameLen {
			return invalid("entry name longer than %d bytes", maxNameLen)
		}
		a.reap()
		if err := a.entry(hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
	// Read what follows the tar end (padding) so the diff id covers it all.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	return a.pool.wait()
}

func (a *applier) entry(hdr *tar.Header, tr *tar.Reader) error {
	p := cleanName(hdr.Name)
	parent, base := path.Dir(p), path.Base(p)
	if p == "/" {
		// CVE-2021-29136: a root entry of another type would redirect every
		// later entry through whatever it points at.
		if hdr.Typeflag != tar.TypeDir {
			return invalid("refusing to change the type of the root directory")
		}
		return a.applyDirMeta(a.rootfd, "/", hdr)
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(parent, base)
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeDir, tar.TypeReg, tar.TypeGNUSparse, tar.TypeSymlink, tar.TypeLink,
		tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return invalid("unsupported entry type %q", hdr.Typeflag)
	}
	if hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock {
		if a.opts.Rootless {
			// An unprivileged user cannot make device nodes, and a rootless
			// container would get none from a layer anyway.
			a.stats.SkippedDevices++
			return nil
		}
	}
	pfd, err := a.dir(parent, true)
	if err != nil {
		return err
	}
	m, err := a.meta(hdr)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = a.mkdir(pfd, p, base, hdr)
	case tar.TypeReg, tar.TypeGNUSparse: // archive/tar reads TypeRegA as TypeReg
		err = a.file(pfd, base, hdr, tr, m)
	case tar.TypeSymlink:
		err = a.symlink(pfd, base, hdr, m)
	case tar.TypeLink:
		err = a.hardlink(pfd, p, base, hdr)
	default:
		err = a.node(pfd, base, hdr, m)
	}
	if err != nil {
		return err
	}
	a.markWritten(p)
	return nil
}

// finish sets directory modes (rootless) and times once all layers are in:
// creating children changes a directory's mtime, so this must come last.
// Deepest first, so fixing a parent does not disturb a child.
func (a *applier) finish() error {
	if err := a.pool.wait(); err != nil {
		return err
	}
	a.dropCache()
	if _, ok := a.dirs["/"]; !ok {
		// No layer described the root: give it a fixed time (the epoch, as
		// umoci does) rather than the time of the unpack, so the same image
		// always unpacks to the same tree.
		a.dirs["/"] = dirMeta{mode: 0o755, mtime: time.Unix(0, 0), atime: time.Unix(0, 0)}
		if a.opts.Rootless {
			var st unix.Stat_t
			if unix.Fstat(a.rootfd, &st) == nil {
				a.dirs["/"] = dirMeta{mode: st.Mode & 0o7777, mtime: time.Unix(0, 0), atime: time.Unix(0, 0)}
			}
		}
	}
	paths := make([]string, 0, len(a.dirs))
	for p := range a.dirs {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return strings.Count(paths[i], "/") > strings.Count(paths[j], "/") })
	for _, p := range paths {
		d := a.dirs[p]
		var fd int
		var err error
		if p == "/" {
			fd, err = unix.Dup(a.rootfd)
		} else {
			var pfd int
			pfd, err = a.dirNoCache(path.Dir(p))
			if err == nil {
				fd, err = unix.Openat(pfd, path.Base(p), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				unix.Close(pfd)
			}
		}
		if err != nil {
			continue // replaced or whited out by a later layer
		}
		if a.opts.Rootless {
			err = unix.Fchmod(fd, d.mode)
		}
		if err == nil {
			err = futimens(fd, d.atime, d.mtime)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}
