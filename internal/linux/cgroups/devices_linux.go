package cgroups

import (
	"berth/internal/linux/cgroups/devices"
)

// attachDevices is a variable so the fake-cgroupfs tests, which cannot load
// BPF into a temporary directory, can record the program instead.
var attachDevices = func(dir string, prog []devices.Insn) error {
	return devices.Attach(dir, prog)
}
