package rootfs

import (
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func u32(v uint32) *uint32 { return &v }

func mode(m os.FileMode) *os.FileMode { return &m }

// DefaultDevices are created in every container, as runc does.
var DefaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
}

// devBindMounted reports whether the config bind-mounts the host's /dev, in
// which case berth creates no device nodes.
func devBindMounted(s *specs.Spec) bool {
	for _, m := range s.Mounts {
		if filepath.Clean(m.Destination) == "/dev" && IsBind(m) {
			return true
		}
	}
	return false
}

// Devices lists the device nodes a container's /dev gets, in creation
// order: the defaults, each replaced by a linux.devices entry of the same
// path, then the other entries. ok is false when the config bind-mounts the
// host's /dev (no nodes and no links are made then).
func Devices(s *specs.Spec) (devs []specs.LinuxDevice, ok bool) {
	if devBindMounted(s) {
		return nil, false
	}
	devs = append([]specs.LinuxDevice(nil), DefaultDevices...)
	if s.Linux != nil {
		for _, d := range s.Linux.Devices {
			replaced := false
			for i := range devs {
				if devs[i].Path == d.Path {
					devs[i], replaced = d, true
				}
			}
			if !replaced {
				devs = append(devs, d)
			}
		}
	}
	return devs, true
}

// DevLinks are the symlinks made in /dev, as [target, name] pairs, with
// /dev/core when the host has /proc/kcore; /dev/ptmx replaces whatever the
// image had (it must point at the container's devpts instance).
func DevLinks(kcore bool) [][2]string {
	links := [][2]string{
		{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
	}
	if kcore {
		links = append(links, [2]string{"/proc/kcore", "core"})
	}
	return links
}

// DeviceMode is the mknod mode of d: its type and permission bits.
func DeviceMode(d specs.LinuxDevice) (uint32, error) {
	var typ uint32
	switch d.Type {
	case "c", "u":
		typ = unix.S_IFCHR
	case "b":
		typ = unix.S_IFBLK
	case "p":
		typ = unix.S_IFIFO
	default:
		return 0, fmt.Errorf("invalid device type %q", d.Type)
	}
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(d.FileMode.Perm())
	}
	return typ | perm, nil
}
