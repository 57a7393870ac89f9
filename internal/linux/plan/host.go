package plan

import (
	"os"
	"sync"

	"berth/internal/linux/caps"
	"berth/internal/linux/rootfs"
)

// Host is what the compiler needs to know about the machine. Probe reads
// it from the running host; tests build one by hand, so the compiler runs
// without root and without touching the host.
type Host struct {
	// CapLast is the highest capability the kernel knows.
	CapLast int
	// Kcore: /proc/kcore exists (the container gets a /dev/core link).
	Kcore bool
	// AppArmor and SELinux report whether each LSM is enabled.
	AppArmor, SELinux func() bool
	// Mounts returns the runtime's mount table (read when a step needs it:
	// cgroup v1 binds, a shared root propagation, --no-pivot).
	Mounts func() ([]rootfs.MountInfo, error)
}

// Probe reads the host facts; the mount table and the LSM checks are read
// on first use.
func Probe() *Host {
	_, kerr := os.Stat("/proc/kcore")
	return &Host{
		CapLast:  caps.Last(),
		Kcore:    kerr == nil,
		AppArmor: exists("/sys/kernel/security/apparmor"),
		SELinux:  exists("/sys/fs/selinux/enforce"),
		Mounts:   sync.OnceValues(rootfs.ReadMountinfo),
	}
}

func exists(path string) func() bool {
	return func() bool {
		_, err := os.Stat(path)
		return err == nil
	}
}
