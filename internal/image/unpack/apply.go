package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
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

// meta is the subset of a tar header applied to an inode.
type meta struct {
	uid, gid     int
	mode         uint32 // permission bits incl. setuid/setgid/sticky
	atime, mtime time.Time
	xattrs       map[string]string
	container    [2]uint32 // image uid/gid, for the rootless xattr
}

type dirMeta struct {
	mode  uint32
	mtime time.Time
	atime time.Time
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

func (a *applier) markWritten(p string) {
	for p != "/" {
		if _, ok := a.written[p]; ok {
			return
		}
		a.written[p] = struct{}{}
		p = path.Dir(p)
	}
}

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

func (a *applier) meta(hdr *tar.Header) (meta, error) {
	m := meta{mode: uint32(hdr.Mode) & 0o7777, mtime: hdr.ModTime, atime: hdr.AccessTime}
	if m.atime.IsZero() {
		m.atime = m.mtime
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) > 1<<32-1 || int64(hdr.Gid) > 1<<32-1 {
		return m, invalid("uid/gid %d/%d out of range", hdr.Uid, hdr.Gid)
	}
	m.container = [2]uint32{uint32(hdr.Uid), uint32(hdr.Gid)}
	uid, ok := toHost(uint32(hdr.Uid), a.opts.UIDMaps)
	if !ok {
		return m, fmt.Errorf("uid %d is not in the uid map", hdr.Uid)
	}
	gid, ok := toHost(uint32(hdr.Gid), a.opts.GIDMaps)
	if !ok {
		return m, fmt.Errorf("gid %d is not in the gid map", hdr.Gid)
	}
	m.uid, m.gid = int(uid), int(gid)
	for k, v := range hdr.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			if m.xattrs == nil {
				m.xattrs = map[string]string{}
			}
			m.xattrs[strings.TrimPrefix(k, "SCHILY.xattr.")] = v
		}
	}
	return m, nil
}

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

func (a *applier) applyDirMeta(fd int, p string, hdr *tar.Header) error {
	m, err := a.meta(hdr)
	if err != nil {
		return err
	}
	mode := m.mode
	if a.opts.Rootless {
		mode |= 0o700 // the final mode is set once every layer is in
	}
	if err := a.setMeta(fd, m, mode, false); err != nil {
		return err
	}
	a.dirs[p] = dirMeta{mode: m.mode, mtime: m.mtime, atime: m.atime}
	return nil
}

// setMeta applies owner, mode and xattrs to an open fd (not a symlink), and
// the times when withTimes.
func (a *applier) setMeta(fd int, m meta, mode uint32, withTimes bool) error {
	if !a.opts.Rootless {
		if err := unix.Fchown(fd, m.uid, m.gid); err != nil {
			return &os.SyscallError{Syscall: "fchown", Err: err}
		}
	} else if m.container != [2]uint32{} {
		if err := unix.Fsetxattr(fd, rootlessXattr, rootlessValue(m.container[0], m.container[1]), 0); err != nil && err != unix.ENOTSUP {
			return &os.SyscallError{Syscall: "fsetxattr " + rootlessXattr, Err: err}
		}
	}
	// chmod after chown: chown clears setuid/setgid.
	if err := unix.Fchmod(fd, mode); err != nil {
		return &os.SyscallError{Syscall: "fchmod", Err: err}
	}
	for _, k := range sortedKeys(m.xattrs) {
		if err := unix.Fsetxattr(fd, k, []byte(m.xattrs[k]), 0); err != nil {
			if a.tolerableXattr(k, err) {
				continue
			}
			return &os.SyscallError{Syscall: "fsetxattr " + k, Err: err}
		}
	}
	if withTimes {
		return futimens(fd, m.atime, m.mtime)
	}
	return nil
}

func (a *applier) tolerableXattr(k string, err error) bool {
	if errors.Is(err, unix.ENOTSUP) {
		return true // the file system has no xattrs of this namespace
	}
	return a.opts.Rootless && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) &&
		(strings.HasPrefix(k, "trusted.") || strings.HasPrefix(k, "security."))
}

func sortedKeys(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// rootlessValue encodes the rootless-containers Resource message
// (uid = field 1, gid = field 2, proto3 varints, zero fields omitted).
func rootlessValue(uid, gid uint32) []byte {
	var b []byte
	put := func(tag byte, v uint32) {
		if v == 0 {
			return
		}
		b = append(b, tag)
		for v >= 0x80 {
			b = append(b, byte(v)|0x80)
			v >>= 7
		}
		b = append(b, byte(v))
	}
	put(0x08, uid)
	put(0x10, gid)
	return b
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return unix.NsecToTimespec(t.UnixNano())
}

func futimens(fd int, atime, mtime time.Time) error {
	ts := [2]unix.Timespec{timespec(atime), timespec(mtime)}
	// utimensat(fd, NULL, ts, 0) is futimens(3): it works on the fd itself.
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return &os.SyscallError{Syscall: "futimens", Err: e}
	}
	return nil
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

// procPath names base inside dirfd for the path-only syscalls (lsetxattr):
// the magic link pins the directory, and only the last, unfollowed
// component is looked up by name.
func procPath(dirfd int, base string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
}

func utimesAt(pfd int, base string, m meta) error {
	ts := []unix.Timespec{timespec(m.atime), timespec(m.mtime)}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: base, Err: err}
	}
	return nil
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

// job is one small file whose content and attributes a worker writes.
type job struct {
	a    *applier
	fd   int
	buf  *[]byte
	data []byte
	m    meta
}

// writerPool writes small files in parallel with the tar parser: the names
// are created in tar order by the parser (so every namespace change keeps
// its order), only content and attributes of the already-open inode move to
// a worker, which cannot be redirected by later entries.
type writerPool struct {
	jobs chan job
	wg   sync.WaitGroup // outstanding jobs
	quit sync.WaitGroup // workers
	mu   sync.Mutex
	err  error
}

func newWriterPool(n int) *writerPool {
	p := &writerPool{jobs: make(chan job, 64)} // at most 64 MiB of file content in flight
	for i := 0; i < n; i++ {
		p.quit.Add(1)
		go func() {
			defer p.quit.Done()
			for j := range p.jobs {
				p.setErr(j.run())
				p.wg.Done()
			}
		}()
	}
	return p
}

func (j job) run() error {
	defer unix.Close(j.fd)
	defer chunkPool.Put(j.buf)
	for b := j.data; len(b) > 0; {
		n, err := unix.Write(j.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.SyscallError{Syscall: "write", Err: err}
		}
		b = b[n:]
	}
	return j.a.setMeta(j.fd, j.m, j.m.mode, true)
}

func (p *writerPool) setErr(err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

func (p *writerPool) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *writerPool) submit(j job) {
	p.wg.Add(1)
	p.jobs <- j
}

func (p *writerPool) wait() error {
	p.wg.Wait()
	return p.failed()
}

func (p *writerPool) stop() {
	p.wg.Wait()
	close(p.jobs)
	p.quit.Wait()
}
