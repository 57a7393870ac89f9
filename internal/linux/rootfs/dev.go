package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func u32(v uint32) *uint32 { return &v }

// DefaultDevices are created in every container, as runc does.
var DefaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0, FileMode: mode(0o666), UID: u32(0), GID: u32(0)},
}

func mode(m os.FileMode) *os.FileMode { return &m }

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

// CreateDevices makes the default devices and linux.devices inside the
// rootfs (mknod; bind mounts of the host node inside a user namespace), plus
// the /dev/fd, /dev/std* and /dev/ptmx links.
func CreateDevices(c *Config) error {
	devs, ok := Devices(c.Spec)
	if !ok {
		return nil
	}
	root, err := openRoot(c.Rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, d := range devs {
		if err := createDevice(root, d, c.UserNS); err != nil {
			return fmt.Errorf("creating device %s: %w", d.Path, err)
		}
	}
	return devLinks(root)
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

// DevLinks are the symlinks made in /dev, as [target, name] pairs;
// /dev/ptmx replaces whatever the image had.
func DevLinks() [][2]string {
	links := [][2]string{
		{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
	}
	if _, err := os.Stat("/proc/kcore"); err == nil {
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

func createDevice(root *os.File, d specs.LinuxDevice, userns bool) error {
	if !strings.HasPrefix(filepath.Clean(d.Path), "/dev/") {
		return fmt.Errorf("device path must be under /dev")
	}
	dir, base := filepath.Split(filepath.Clean(d.Path))
	parent, err := pathrs.MkdirAllHandle(root, dir, 0o755)
	if err != nil {
		return err
	}
	defer parent.Close()
	if userns {
		// mknod is not permitted: bind-mount the host's node over a file.
		fd, err := unix.Openat(int(parent.Fd()), base, unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		unix.Close(fd)
		t, err := pathrs.OpenatInRoot(root, d.Path)
		if err != nil {
			return err
		}
		defer t.Close()
		return unix.Mount(d.Path, fdPath(t), "", unix.MS_BIND, "")
	}
	mode, err := DeviceMode(d)
	if err != nil {
		return err
	}
	// A node already there (a runtime-supplied rootfs may carry one) is replaced.
	_ = unix.Unlinkat(int(parent.Fd()), base, 0)
	if err := unix.Mknodat(int(parent.Fd()), base, mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil {
		return err
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	return unix.Fchownat(int(parent.Fd()), base, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

func devLinks(root *os.File) error {
	dev, err := pathrs.OpenatInRoot(root, "/dev")
	if err != nil {
		return err
	}
	defer dev.Close()
	for _, l := range DevLinks() {
		if l[1] == "ptmx" {
			// /dev/ptmx must point at the container's devpts instance.
			_ = unix.Unlinkat(int(dev.Fd()), "ptmx", 0)
		}
		if err := unix.Symlinkat(l[0], int(dev.Fd()), l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return &os.PathError{Op: "symlink", Path: "/dev/" + l[1], Err: err}
		}
	}
	return nil
}
