package rootfs

import (
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

// CheckProcMount refuses mounts that would put something other than procfs
// at or under /proc (CVE-2019-16884): with a directory bound over /proc, the
// runtime's writes to /proc/self/attr/* (LSM labels), /proc/sys (sysctls) and
// the container's view of its own status would all land in attacker files.
func CheckProcMount(m specs.Mount) error {
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
