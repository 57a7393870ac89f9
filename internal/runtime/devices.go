package runtime

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/linux/cgroups/devices"
)

// effectiveResources is the config's resources with the device rules runc
// adds: its default allowed devices (mknod of anything, the /dev/null
// family, ttys, ptys, tun) after the config's own rules, then every
// linux.devices node allowed.
func effectiveResources(s *specs.Spec) *specs.LinuxResources {
	var r specs.LinuxResources
	if s.Linux.Resources != nil {
		r = *s.Linux.Resources
	}
	devs := append([]specs.LinuxDeviceCgroup(nil), r.Devices...)
	devs = append(devs, devices.DefaultAllowed...)
	for _, d := range s.Linux.Devices {
		typ := d.Type
		switch typ {
		case "c", "b":
		case "u":
			typ = "c" // unbuffered char device
		default:
			continue // fifos need no device cgroup rule
		}
		maj, min := d.Major, d.Minor
		devs = append(devs, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &maj, Minor: &min, Access: "rwm"})
	}
	r.Devices = devs
	return &r
}
