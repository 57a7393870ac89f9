package rootfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Config is what the rootfs steps need to know.
type Config struct {
	Rootfs   string // absolute host path of the rootfs
	Spec     *specs.Spec
	UserNS   bool // mknod is impossible: bind-mount device nodes instead
	CgroupNS bool
	// CgroupPaths maps a v1 controller (or "" for the unified hierarchy) to
	// the container's cgroup directory on the host.
	CgroupPaths map[string]string
}

func fdPath(f *os.File) string { return "/proc/thread-self/fd/" + strconv.Itoa(int(f.Fd())) }

// PrepareRoot sets the propagation of / and makes the rootfs a mount point
// of its own (bind on itself), as pivot_root requires.
func PrepareRoot(c *Config) error {
	flag, err := RootPropagation(c.Spec)
	if err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", flag, ""); err != nil {
		return &os.PathError{Op: "make / " + PropagationName(flag), Path: "/", Err: err}
	}
	// pivot_root fails if the new root's parent mount is shared; make the
	// mount holding the rootfs private (only in our namespace). After an
	// rslave or rprivate / nothing is shared, so mountinfo need not be read.
	if flag&unix.MS_SHARED != 0 {
		if err := makeParentPrivate(c.Rootfs); err != nil {
			return err
		}
	}
	if err := unix.Mount(c.Rootfs, c.Rootfs, "bind", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return &os.PathError{Op: "bind mount rootfs", Path: c.Rootfs, Err: err}
	}
	return nil
}

// RootPropagation is the propagation / gets in the container's mount
// namespace: linux.rootfsPropagation, rslave by default (as runc).
func RootPropagation(s *specs.Spec) (uintptr, error) {
	flag := uintptr(unix.MS_SLAVE | unix.MS_REC)
	if s.Linux != nil && s.Linux.RootfsPropagation != "" {
		f, ok := propOpts[s.Linux.RootfsPropagation]
		if !ok {
			return 0, fmt.Errorf("invalid rootfsPropagation %q", s.Linux.RootfsPropagation)
		}
		flag = f
	}
	return flag, nil
}

// PropagationName is the option name of a propagation flag set.
func PropagationName(f uintptr) string {
	for n, v := range propOpts {
		if v == f {
			return n
		}
	}
	return "propagation"
}

// makeParentPrivate finds the mount point containing path and makes it
// private if it is shared.
func makeParentPrivate(path string) error {
	mi, err := readMountinfo()
	if err != nil {
		return err
	}
	best := ""
	shared := false
	for _, m := range mi {
		if (path == m.point || strings.HasPrefix(path, strings.TrimSuffix(m.point, "/")+"/")) && len(m.point) >= len(best) {
			best, shared = m.point, strings.Contains(m.optional, "shared:")
		}
	}
	if best != "" && shared {
		if err := unix.Mount("", best, "", unix.MS_PRIVATE, ""); err != nil {
			return &os.PathError{Op: "make parent mount private", Path: best, Err: err}
		}
	}
	return nil
}

type mountinfo struct {
	root, point, fstype, source, optional string
}

func readMountinfo() ([]mountinfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountinfo
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 6 || len(fields) < sep+3 {
			continue
		}
		out = append(out, mountinfo{
			root: UnescapeMountinfo(fields[3]), point: UnescapeMountinfo(fields[4]),
			optional: strings.Join(fields[6:sep], " "),
			fstype:   fields[sep+1], source: fields[sep+2],
		})
	}
	return out, s.Err()
}

// UnescapeMountinfo undoes mountinfo's octal escapes (\040 for a space, ...);
// a backslash not followed by three octal digits stays as it is.
func UnescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// openRoot opens the rootfs directory as the anchor of in-root resolution.
func openRoot(rootfs string) (*os.File, error) {
	return os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// ensureTarget resolves dest inside root, creating it (a directory, or an
// empty file when isFile) when missing, and returns an O_PATH handle.
// A trailing symlink whose target does not exist yet (an image's
// /etc/resolv.conf -> /run/resolv.conf) is followed in-root and its target
// created inside the rootfs, never beside the symlink's host-side meaning
// (CVE-2019-18837 created the file on the host).
func ensureTarget(root *os.File, dest string, isFile bool) (*os.File, error) {
	for hops := 0; ; hops++ {
		if h, err := pathrs.OpenatInRoot(root, dest); err == nil {
			return h, nil
		}
		if hops >= 40 {
			return nil, &os.PathError{Op: "create mount target", Path: dest, Err: unix.ELOOP}
		}
		dir, base := filepath.Split(filepath.Clean("/" + dest))
		d, err := pathrs.MkdirAllHandle(root, dir, 0o755)
		if err != nil {
			// A dangling symlink among the parents: substitute it and retry.
			if next, ok := expandDanglingParent(root, dir); ok {
				dest = filepath.Join(next, base)
				continue
			}
			return nil, err
		}
		if !isFile {
			err = unix.Mkdirat(int(d.Fd()), base, 0o755)
		} else {
			var fd int
			fd, err = unix.Openat(int(d.Fd()), base, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_WRONLY, 0o644)
			if err == nil {
				unix.Close(fd)
			}
		}
		if err == nil || !errors.Is(err, unix.EEXIST) {
			d.Close()
			if err != nil {
				return nil, &os.PathError{Op: "create mount target", Path: dest, Err: err}
			}
			return pathrs.OpenatInRoot(root, dest)
		}
		// Something is there but does not resolve: a dangling symlink.
		link, lerr := readlinkat(int(d.Fd()), base)
		d.Close()
		if lerr != nil {
			return nil, &os.PathError{Op: "create mount target", Path: dest, Err: err}
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(dir, link)
		}
		dest = link
	}
}

// expandDanglingParent finds the first component of dir that does not
// resolve and, if it is a symlink, returns dir with that component replaced
// by the symlink's target (read through the in-root handle of its parent).
// The result is resolved in-root again by the caller, so the worst a racer
// can achieve is a directory elsewhere inside the rootfs.
func expandDanglingParent(root *os.File, dir string) (string, bool) {
	parts := strings.Split(strings.Trim(filepath.Clean("/"+dir), "/"), "/")
	prefix := "/"
	for i, c := range parts {
		if c == "" {
			continue
		}
		next := filepath.Join(prefix, c)
		if h, err := pathrs.OpenatInRoot(root, next); err == nil {
			h.Close()
			prefix = next
			continue
		}
		ph, err := pathrs.OpenatInRoot(root, prefix)
		if err != nil {
			return "", false
		}
		link, err := readlinkat(int(ph.Fd()), c)
		ph.Close()
		if err != nil {
			return "", false
		}
		if !filepath.IsAbs(link) {
			link = filepath.Join(prefix, link)
		}
		return filepath.Join(append([]string{link}, parts[i+1:]...)...), true
	}
	return "", false
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// MountAll performs the config's mounts in order.
func MountAll(c *Config) error {
	root, err := openRoot(c.Rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, m := range c.Spec.Mounts {
		if err := mountOne(c, root, m); err != nil {
			return fmt.Errorf("error mounting %q to rootfs at %q: %w", m.Source, m.Destination, err)
		}
	}
	return nil
}

// IsBind reports whether m is a bind mount (type "bind" or a bind/rbind option).
func IsBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

func mountOne(c *Config, root *os.File, m specs.Mount) error {
	if !filepath.IsAbs(m.Destination) {
		// runc accepts relative destinations (as relative to /) with a warning.
		m.Destination = "/" + m.Destination
	}
	if err := checkProcMount(m); err != nil {
		return err
	}
	p := ParseOptions(m.Options)
	if m.Type == "cgroup" || m.Type == "cgroup2" {
		return mountCgroup(c, root, m, p)
	}
	bind := IsBind(m)
	isFile := false
	if bind {
		st, err := os.Stat(m.Source)
		if err != nil {
			return err
		}
		isFile = !st.IsDir()
	}
	target, err := ensureTarget(root, m.Destination, isFile)
	if err != nil {
		return err
	}
	defer target.Close()
	tp := fdPath(target)
	if bind {
		flags := uintptr(unix.MS_BIND) | (p.Flags & unix.MS_REC)
		if err := unix.Mount(m.Source, tp, "", flags, ""); err != nil {
			return err
		}
		// Bind mounts ignore most flags on the first call: remount to apply.
		extra := p.Flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT)
		if extra != 0 {
			// Re-open: the target fd now names the covered dir, not the mount.
			t2, err := pathrs.OpenatInRoot(root, m.Destination)
			if err != nil {
				return err
			}
			defer t2.Close()
			if err := remountBind(fdPath(t2), extra); err != nil {
				return err
			}
		}
	} else {
		src := m.Source
		if src == "" {
			src = m.Type
		}
		if m.Type == "proc" || m.Type == "sysfs" {
			// Mount on the directory itself, never through a symlink.
			d, err := openOrdinaryDir(root, m.Destination)
			if err != nil {
				return err
			}
			defer d.Close()
			tp = fdPath(d)
		}
		if p.TmpCopyUp && m.Type == "tmpfs" {
			return mountTmpfsCopyUp(root, target, m, p)
		}
		if err := unix.Mount(src, tp, m.Type, p.Flags&^unix.MS_REMOUNT, p.Data); err != nil {
			if m.Type == "mqueue" && errors.Is(err, unix.EPERM) && c.UserNS {
				// No ipc namespace of our own: bind the host's instead, like runc.
				return unix.Mount("/dev/mqueue", tp, "", unix.MS_BIND|unix.MS_REC, "")
			}
			return err
		}
	}
	if len(p.Propagation) > 0 || p.RecAttrSet != 0 || p.RecAttrClr != 0 {
		t2, err := pathrs.OpenatInRoot(root, m.Destination)
		if err != nil {
			return err
		}
		defer t2.Close()
		for _, pf := range p.Propagation {
			if err := unix.Mount("", fdPath(t2), "", pf, ""); err != nil {
				return &os.PathError{Op: "set propagation", Path: m.Destination, Err: err}
			}
		}
		if p.RecAttrSet != 0 || p.RecAttrClr != 0 {
			attr := &unix.MountAttr{Attr_set: p.RecAttrSet, Attr_clr: p.RecAttrClr}
			if err := unix.MountSetattr(int(t2.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
				return &os.PathError{Op: "mount_setattr", Path: m.Destination, Err: err}
			}
		}
	}
	return nil
}

// remountBind applies flags to a bind mount, keeping the locked flags
// (nodev, nosuid, noexec, atime) that an unprivileged remount may not clear.
func remountBind(path string, flags uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err == nil {
		locked := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
		flags |= locked
	}
	if err := unix.Mount("", path, "", unix.MS_BIND|unix.MS_REMOUNT|flags, ""); err != nil {
		return &os.PathError{Op: "remount", Path: path, Err: err}
	}
	return nil
}

// mountCgroup gives the container its cgroup view. With a cgroup namespace
// on a unified host it mounts cgroup2; otherwise it builds /sys/fs/cgroup
// from bind mounts of the container's own cgroup directories (a tmpfs with one
// directory per v1 hierarchy), as runc does.
func mountCgroup(c *Config, root *os.File, m specs.Mount, p Parsed) error {
	target, err := ensureTarget(root, m.Destination, false)
	if err != nil {
		return err
	}
	defer target.Close()
	ro := p.Flags&unix.MS_RDONLY != 0
	base := p.Flags &^ (unix.MS_RDONLY | unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT)
	if _, unified := c.CgroupPaths[""]; unified && len(c.CgroupPaths) == 1 {
		if c.CgroupNS {
			return unix.Mount("cgroup2", fdPath(target), "cgroup2", p.Flags&^(unix.MS_BIND|unix.MS_REC), "")
		}
		if err := unix.Mount(c.CgroupPaths[""], fdPath(target), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if ro {
			t2, err := pathrs.OpenatInRoot(root, m.Destination)
			if err != nil {
				return err
			}
			defer t2.Close()
			return remountBind(fdPath(t2), unix.MS_RDONLY|base)
		}
		return nil
	}
	if err := unix.Mount("tmpfs", fdPath(target), "tmpfs", base, "mode=755"); err != nil {
		return err
	}
	// The tmpfs was mounted just now, by us: its one-level entries are ours,
	// so they are made and opened relative to it (no symlink to resolve,
	// O_NOFOLLOW all the same) instead of by a lookup from the root each time.
	tmp, err := pathrs.OpenatInRoot(root, m.Destination)
	if err != nil {
		return err
	}
	defer tmp.Close()
	openEntry := func(name string) (*os.File, error) {
		fd, err := unix.Openat(int(tmp.Fd()), name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: filepath.Join(m.Destination, name), Err: err}
		}
		return os.NewFile(uintptr(fd), name), nil
	}
	binds, err := CgroupBinds(c.CgroupPaths)
	if err != nil {
		return err
	}
	for _, b := range binds {
		name, src := b.Name, b.Source
		dst := filepath.Join(m.Destination, name)
		if err := unix.Mkdirat(int(tmp.Fd()), name, 0o755); err != nil && err != unix.EEXIST {
			return &os.PathError{Op: "mkdir", Path: dst, Err: err}
		}
		t, err := openEntry(name)
		if err != nil {
			return err
		}
		err = unix.Mount(src, fdPath(t), "", unix.MS_BIND|unix.MS_REC, "")
		t.Close()
		if err != nil {
			return &os.PathError{Op: "bind cgroup", Path: dst, Err: err}
		}
		t2, err := openEntry(name) // now the bind mount on top
		if err != nil {
			return err
		}
		err = remountBind(fdPath(t2), base|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|map[bool]uintptr{true: unix.MS_RDONLY}[ro])
		t2.Close()
		if err != nil {
			return err
		}
		// cpu -> cpu,cpuacct style aliases, as on the host.
		if strings.Contains(name, ",") {
			for _, alias := range strings.Split(name, ",") {
				_ = unix.Symlinkat(name, int(tmp.Fd()), alias)
			}
		}
	}
	if ro {
		t2, err := pathrs.OpenatInRoot(root, m.Destination)
		if err != nil {
			return err
		}
		defer t2.Close()
		return remountBind(fdPath(t2), unix.MS_RDONLY|base)
	}
	return nil
}

// CgroupBind is one hierarchy of a v1 (or hybrid) host as the container
// sees it: /sys/fs/cgroup/<Name> inside is a bind mount of Source, the
// container's own cgroup directory in that hierarchy.
type CgroupBind struct{ Name, Source string }

// CgroupBinds lists, in the host's mount order, the hierarchies mounted at
// /sys/fs/cgroup/<name> in which the container has a cgroup (paths maps a
// controller, or "" for the unified hierarchy, to its directory).
func CgroupBinds(paths map[string]string) ([]CgroupBind, error) {
	mi, err := readMountinfo()
	if err != nil {
		return nil, err
	}
	var out []CgroupBind
	for _, h := range mi {
		if (h.fstype != "cgroup" && h.fstype != "cgroup2") || !strings.HasPrefix(h.point, "/sys/fs/cgroup/") {
			continue
		}
		name := strings.TrimPrefix(h.point, "/sys/fs/cgroup/")
		if strings.Contains(name, "/") {
			continue
		}
		src := ""
		for ctrl, path := range paths {
			if ctrl == "" && h.fstype == "cgroup2" || ctrl != "" && strings.HasPrefix(path, h.point+"/") && hasController(name, ctrl) {
				src = path
				break
			}
		}
		if src == "" {
			// A hierarchy the container has no cgroup in (e.g. a named one):
			// bind its root read-only would leak host state, so skip it.
			continue
		}
		out = append(out, CgroupBind{Name: name, Source: src})
	}
	return out, nil
}

func hasController(hierarchy, ctrl string) bool {
	for _, c := range strings.Split(hierarchy, ",") {
		if c == ctrl || "name="+c == ctrl {
			return true
		}
	}
	return false
}
