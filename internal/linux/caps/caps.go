// Package caps maps capability names to numbers and parses the five OCI
// capability sets (the executor applies them: see internal/linux/plan).
package caps

import (
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var names = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// Names returns every capability name berth knows, in number order.
func Names() []string { return append([]string(nil), names...) }

// Last returns the highest capability the running kernel knows.
func Last() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return len(names) - 1
}

// Parse returns the number of a capability name ("CAP_NET_RAW"; case-insensitive,
// the CAP_ prefix optional).
func Parse(name string) (int, bool) {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	for i, c := range names {
		if c == n {
			return i, true
		}
	}
	return 0, false
}

// Set is a bit set of capabilities.
type Set uint64

func (s Set) Has(c int) bool { return s&(1<<uint(c)) != 0 }

// Sets is the parsed form of the OCI capabilities; Unknown lists names that
// are not capabilities of this kernel (runc ignores them with a warning).
type Sets struct {
	Bounding, Effective, Inheritable, Permitted, Ambient Set
	Unknown                                              []string
}

// FromSpec parses the five sets; last is the highest capability the
// kernel knows (Last).
func FromSpec(c *specs.LinuxCapabilities, last int) Sets {
	var s Sets
	if c == nil {
		return s
	}
	seen := map[string]bool{}
	conv := func(list []string) Set {
		var out Set
		for _, n := range list {
			i, ok := Parse(n)
			if !ok || i > last {
				if !seen[n] {
					seen[n] = true
					s.Unknown = append(s.Unknown, n)
				}
				continue
			}
			out |= 1 << uint(i)
		}
		return out
	}
	s.Bounding = conv(c.Bounding)
	s.Effective = conv(c.Effective)
	s.Inheritable = conv(c.Inheritable)
	s.Permitted = conv(c.Permitted)
	s.Ambient = conv(c.Ambient)
	return s
}
