package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// procMountAllowlist are the /proc files a bind mount may cover even when its
// source is not procfs: lxcfs provides these (runc's checkProcMount list).
var procMountAllowlist = map[string]bool{
	"/proc/cpuinfo": true, "/proc/diskstats": true, "/proc/meminfo": true, "/proc/stat": true,
	"/proc/swaps": true, "/proc/uptime": true, "/proc/loadavg": true, "/proc/slabinfo": true,
	"/proc/sys/kernel/ns_last_pid": true, "/proc/sys/crypto/fips_enabled": true,
}

// checkProcMount refuses mounts that would put something other than procfs
// at or under /proc (CVE-2019-16884): with a directory bound over /proc, the
// runtime's writes to /proc/self/attr/* (LSM labels), /proc/sys (sysctls) and
// the container's view of its own status would all land in attacker files.
func checkProcMount(m specs.Mount) error {
	dest := filepath.Clean("/" + m.Destination)
	if dest != "/proc" && !strings.HasPrefix(dest, "/proc/") {
		return nil
	}
	if m.Type == "proc" {
		if dest == "/proc" {
			return nil
		}
		return fmt.Errorf("%q cannot be mounted because it is inside /proc", dest)
	}
	if procMountAllowlist[dest] {
		return nil
	}
	if IsBind(m) {
		var st unix.Statfs_t
		if err := unix.Statfs(m.Source, &st); err != nil {
			return &os.PathError{Op: "statfs", Path: m.Source, Err: err}
		}
		if st.Type == unix.PROC_SUPER_MAGIC {
			return nil
		}
		if dest == "/proc" {
			return fmt.Errorf("%q cannot be mounted as /proc because it is not of type proc", m.Source)
		}
	}
	return fmt.Errorf("%q cannot be mounted because it is inside /proc", dest)
}

// openOrdinaryDir re-opens dest under root without following any symlink,
// for the procfs and sysfs mount targets. CVE-2019-19921 / CVE-2023-27561 /
// CVE-2023-28642: an image (or a racer on a shared volume) that turns /proc
// into a symlink makes procfs land somewhere else while the container's
// /proc is a directory the attacker filled, so LSM label and sysctl writes
// and the masks go to fake files. runc requires an ordinary directory.
func openOrdinaryDir(root *os.File, dest string) (*os.File, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(int(root.Fd()), dest, how)
	if errors.Is(err, unix.ENOSYS) {
		return walkNoSymlinks(root, dest)
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("%s must be mounted on ordinary directory", dest)
		}
		return nil, &os.PathError{Op: "open mount target", Path: dest, Err: err}
	}
	return os.NewFile(uintptr(fd), dest), nil
}

// walkNoSymlinks is openOrdinaryDir for kernels without openat2: one
// O_NOFOLLOW step per component, the same guarantee.
func walkNoSymlinks(root *os.File, dest string) (*os.File, error) {
	cur, err := unix.Openat(int(root.Fd()), ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for _, c := range strings.Split(strings.Trim(filepath.Clean("/"+dest), "/"), "/") {
		if c == "" {
			continue
		}
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(cur)
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				return nil, fmt.Errorf("%s must be mounted on ordinary directory", dest)
			}
			return nil, &os.PathError{Op: "open mount target", Path: dest, Err: err}
		}
		cur = next
	}
	return os.NewFile(uintptr(cur), dest), nil
}
