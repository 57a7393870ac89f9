package runtime

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/linux/cgroups/devices"
)

// effectiveResources is the config's resources with the device rules runc
// adds: its default allowed devices (mknod of anything, the /dev/null
// family, ttys, ptys, tun) after the config's own rules. A linux.devices
// node is made in /dev but gets no rule of its own, as in runc: access to
// it is what linux.resources.devices allows (engines send both, e.g.
// docker's --device with its permissions), never more.
func effectiveResources(s *specs.Spec) *specs.LinuxResources {
	var r specs.LinuxResources
	if s.Linux.Resources != nil {
		r = *s.Linux.Resources
	}
	r.Devices = append(append([]specs.LinuxDeviceCgroup(nil), r.Devices...), devices.DefaultAllowed...)
	return &r
}
