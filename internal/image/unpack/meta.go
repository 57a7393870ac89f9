// Metadata: ownership (or the rootless xattr), mode, xattrs and times,
// set on the inode through its fd.

package unpack

import (
	"archive/tar"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
