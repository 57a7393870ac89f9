package rootfs

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SysctlPath is where key lives below the procfs root: net.ipv4.ip_forward
// is sys/net/ipv4/ip_forward; a key written with slashes (runc accepts
// net/ipv4/conf/eth0.1/forwarding, where the dot belongs to a name) is
// taken as a path, cleaned so it stays below sys/.
func SysctlPath(key string) string {
	if strings.Contains(key, "/") || strings.Contains(key, "..") {
		return "sys" + filepath.Clean("/"+key)
	}
	return "sys/" + strings.ReplaceAll(key, ".", "/")
}

// ValidateSysctl rejects sysctls that are not namespaced by the container's
// own namespaces, as runc does.
func ValidateSysctl(s *specs.Spec, has func(specs.LinuxNamespaceType) bool) error {
	if s.Linux == nil {
		return nil
	}
	for k := range s.Linux.Sysctl {
		switch {
		case strings.HasPrefix(k, "kernel.msg") || strings.HasPrefix(k, "kernel.shm") || k == "kernel.sem" || strings.HasPrefix(k, "fs.mqueue."):
			if !has(specs.IPCNamespace) {
				return fmt.Errorf("sysctl %q is not allowed in the hosts ipc namespace", k)
			}
		case strings.HasPrefix(k, "net."):
			if !has(specs.NetworkNamespace) {
				return fmt.Errorf("sysctl %q not allowed in host network namespace", k)
			}
		case k == "kernel.domainname" || k == "kernel.hostname":
			if !has(specs.UTSNamespace) {
				return fmt.Errorf("sysctl %q is not allowed as it conflicts with the OCI %q field", k, strings.TrimPrefix(k, "kernel."))
			}
		default:
			return fmt.Errorf("sysctl %q is not in a separate kernel namespace", k)
		}
	}
	return nil
}
