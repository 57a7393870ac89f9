package plan

// Which field of the runtime-spec types does what: an allow-list. Every
// field of every type berth links (Spec and everything it reaches) is
// classified here, and TestFieldsClassified walks the types by reflection
// and fails on a field this table does not name, so a runtime-spec upgrade
// that adds a field fails until someone decides what berth does with it.
// A field the runtime cannot honour is refused (spec.Validate words the
// error), never silently ignored.

// Class is what becomes of a field.
type Class int

const (
	// InPlan: compiled into the plan the executor carries out.
	InPlan Class = iota + 1
	// Parent: the runtime handles it itself (cgroups, namespaces, state,
	// hooks it runs, the seccomp compiler, validation).
	Parent
	// Refused: a config that sets it is refused with an error naming it.
	Refused
	// OtherOS: another platform's section, which a Linux runtime ignores
	// as runc does (the whole subtree).
	OtherOS
)

// Fields classifies every field path ("Spec.Linux.Sysctl"); a slice, map
// or pointer is walked into, so "Spec.Mounts.Type" is a field of every
// element of Spec.Mounts. (A function, not a variable: nothing on the start
// path of a container pays for building it.)
func Fields() map[string]Class {
	return map[string]Class{
		"Spec.Version":       Parent, // checked by spec.Validate's callers as runc does: informational
		"Spec.Annotations":   Parent, // the state and hooks carry them
		"Spec.Hostname":      InPlan,
		"Spec.Domainname":    InPlan,
		"Spec.Root":          InPlan,
		"Spec.Root.Path":     InPlan, // the rootfs the plan binds and pivots into
		"Spec.Root.Readonly": InPlan,

		"Spec.Process":                          InPlan,
		"Spec.Process.Terminal":                 InPlan,
		"Spec.Process.ConsoleSize":              InPlan,
		"Spec.Process.ConsoleSize.Height":       InPlan,
		"Spec.Process.ConsoleSize.Width":        InPlan,
		"Spec.Process.User":                     InPlan,
		"Spec.Process.User.UID":                 InPlan,
		"Spec.Process.User.GID":                 InPlan,
		"Spec.Process.User.Umask":               InPlan,
		"Spec.Process.User.AdditionalGids":      InPlan,
		"Spec.Process.User.Username":            OtherOS, // Windows only
		"Spec.Process.Args":                     InPlan,
		"Spec.Process.CommandLine":              OtherOS, // Windows only
		"Spec.Process.Env":                      InPlan,
		"Spec.Process.Cwd":                      InPlan,
		"Spec.Process.Capabilities":             InPlan,
		"Spec.Process.Capabilities.Bounding":    InPlan,
		"Spec.Process.Capabilities.Effective":   InPlan,
		"Spec.Process.Capabilities.Inheritable": InPlan,
		"Spec.Process.Capabilities.Permitted":   InPlan,
		"Spec.Process.Capabilities.Ambient":     InPlan,
		"Spec.Process.Rlimits":                  InPlan,
		"Spec.Process.Rlimits.Type":             InPlan,
		"Spec.Process.Rlimits.Hard":             InPlan,
		"Spec.Process.Rlimits.Soft":             InPlan,
		"Spec.Process.NoNewPrivileges":          InPlan,
		"Spec.Process.ApparmorProfile":          InPlan,
		"Spec.Process.OOMScoreAdj":              InPlan,
		"Spec.Process.Scheduler":                InPlan,
		"Spec.Process.Scheduler.Policy":         InPlan,
		"Spec.Process.Scheduler.Nice":           InPlan,
		"Spec.Process.Scheduler.Priority":       InPlan,
		"Spec.Process.Scheduler.Flags":          InPlan,
		"Spec.Process.Scheduler.Runtime":        InPlan,
		"Spec.Process.Scheduler.Deadline":       InPlan,
		"Spec.Process.Scheduler.Period":         InPlan,
		"Spec.Process.SelinuxLabel":             InPlan,
		"Spec.Process.IOPriority":               InPlan,
		"Spec.Process.IOPriority.Class":         InPlan,
		"Spec.Process.IOPriority.Priority":      InPlan,
		"Spec.Process.ExecCPUAffinity":          InPlan,
		"Spec.Process.ExecCPUAffinity.Initial":  Parent, // the spawning thread's affinity, which the child inherits
		"Spec.Process.ExecCPUAffinity.Final":    InPlan,

		"Spec.Mounts":                         InPlan,
		"Spec.Mounts.Destination":             InPlan,
		"Spec.Mounts.Type":                    InPlan,
		"Spec.Mounts.Source":                  InPlan,
		"Spec.Mounts.Options":                 InPlan,
		"Spec.Mounts.UIDMappings":             Parent, // a detached idmapped mount the parent makes; the plan attaches it
		"Spec.Mounts.UIDMappings.ContainerID": Parent,
		"Spec.Mounts.UIDMappings.HostID":      Parent,
		"Spec.Mounts.UIDMappings.Size":        Parent,
		"Spec.Mounts.GIDMappings":             Parent,
		"Spec.Mounts.GIDMappings.ContainerID": Parent,
		"Spec.Mounts.GIDMappings.HostID":      Parent,
		"Spec.Mounts.GIDMappings.Size":        Parent,

		// Prestart, createRuntime, poststart and poststop run where the
		// runtime runs (a hooks plan the parent starts); createContainer and
		// startContainer are steps of the init plan.
		"Spec.Hooks":                         Parent,
		"Spec.Hooks.Prestart":                Parent,
		"Spec.Hooks.Prestart.Path":           Parent,
		"Spec.Hooks.Prestart.Args":           Parent,
		"Spec.Hooks.Prestart.Env":            Parent,
		"Spec.Hooks.Prestart.Timeout":        Parent,
		"Spec.Hooks.CreateRuntime":           Parent,
		"Spec.Hooks.CreateRuntime.Path":      Parent,
		"Spec.Hooks.CreateRuntime.Args":      Parent,
		"Spec.Hooks.CreateRuntime.Env":       Parent,
		"Spec.Hooks.CreateRuntime.Timeout":   Parent,
		"Spec.Hooks.CreateContainer":         InPlan,
		"Spec.Hooks.CreateContainer.Path":    InPlan,
		"Spec.Hooks.CreateContainer.Args":    InPlan,
		"Spec.Hooks.CreateContainer.Env":     InPlan,
		"Spec.Hooks.CreateContainer.Timeout": InPlan,
		"Spec.Hooks.StartContainer":          InPlan,
		"Spec.Hooks.StartContainer.Path":     InPlan,
		"Spec.Hooks.StartContainer.Args":     InPlan,
		"Spec.Hooks.StartContainer.Env":      InPlan,
		"Spec.Hooks.StartContainer.Timeout":  InPlan,
		"Spec.Hooks.Poststart":               Parent,
		"Spec.Hooks.Poststart.Path":          Parent,
		"Spec.Hooks.Poststart.Args":          Parent,
		"Spec.Hooks.Poststart.Env":           Parent,
		"Spec.Hooks.Poststart.Timeout":       Parent,
		"Spec.Hooks.Poststop":                Parent,
		"Spec.Hooks.Poststop.Path":           Parent,
		"Spec.Hooks.Poststop.Args":           Parent,
		"Spec.Hooks.Poststop.Env":            Parent,
		"Spec.Hooks.Poststop.Timeout":        Parent,

		"Spec.Linux":                         Parent,
		"Spec.Linux.UIDMappings":             Parent, // written by the clone (internal/spawn)
		"Spec.Linux.UIDMappings.ContainerID": Parent,
		"Spec.Linux.UIDMappings.HostID":      Parent,
		"Spec.Linux.UIDMappings.Size":        Parent,
		"Spec.Linux.GIDMappings":             Parent,
		"Spec.Linux.GIDMappings.ContainerID": Parent,
		"Spec.Linux.GIDMappings.HostID":      Parent,
		"Spec.Linux.GIDMappings.Size":        Parent,
		"Spec.Linux.Sysctl":                  InPlan,
		"Spec.Linux.CgroupsPath":             Parent,
		"Spec.Linux.Namespaces":              Parent, // cloned, joined or unshared by internal/spawn and the constructor
		"Spec.Linux.Namespaces.Type":         Parent,
		"Spec.Linux.Namespaces.Path":         Parent,
		"Spec.Linux.Devices":                 InPlan,
		"Spec.Linux.Devices.Path":            InPlan,
		"Spec.Linux.Devices.Type":            InPlan,
		"Spec.Linux.Devices.Major":           InPlan,
		"Spec.Linux.Devices.Minor":           InPlan,
		"Spec.Linux.Devices.FileMode":        InPlan,
		"Spec.Linux.Devices.UID":             InPlan,
		"Spec.Linux.Devices.GID":             InPlan,
		"Spec.Linux.NetDevices":              Refused,
		"Spec.Linux.NetDevices.Name":         Refused,
		// The seccomp profile is compiled to BPF by the parent; the program
		// is a plan step.
		"Spec.Linux.Seccomp":                        InPlan,
		"Spec.Linux.Seccomp.DefaultAction":          InPlan,
		"Spec.Linux.Seccomp.DefaultErrnoRet":        InPlan,
		"Spec.Linux.Seccomp.Architectures":          InPlan,
		"Spec.Linux.Seccomp.Flags":                  InPlan,
		"Spec.Linux.Seccomp.ListenerPath":           Parent, // where the parent sends the listener
		"Spec.Linux.Seccomp.ListenerMetadata":       Parent,
		"Spec.Linux.Seccomp.Syscalls":               InPlan,
		"Spec.Linux.Seccomp.Syscalls.Names":         InPlan,
		"Spec.Linux.Seccomp.Syscalls.Action":        InPlan,
		"Spec.Linux.Seccomp.Syscalls.ErrnoRet":      InPlan,
		"Spec.Linux.Seccomp.Syscalls.Args":          InPlan,
		"Spec.Linux.Seccomp.Syscalls.Args.Index":    InPlan,
		"Spec.Linux.Seccomp.Syscalls.Args.Value":    InPlan,
		"Spec.Linux.Seccomp.Syscalls.Args.ValueTwo": InPlan,
		"Spec.Linux.Seccomp.Syscalls.Args.Op":       InPlan,
		"Spec.Linux.RootfsPropagation":              InPlan,
		"Spec.Linux.MaskedPaths":                    InPlan,
		"Spec.Linux.ReadonlyPaths":                  InPlan,
		"Spec.Linux.MountLabel":                     InPlan,
		"Spec.Linux.IntelRdt":                       Refused,
		"Spec.Linux.IntelRdt.ClosID":                Refused,
		"Spec.Linux.IntelRdt.Schemata":              Refused,
		"Spec.Linux.IntelRdt.L3CacheSchema":         Refused,
		"Spec.Linux.IntelRdt.MemBwSchema":           Refused,
		"Spec.Linux.IntelRdt.EnableMonitoring":      Refused,
		"Spec.Linux.MemoryPolicy":                   InPlan,
		"Spec.Linux.MemoryPolicy.Mode":              InPlan,
		"Spec.Linux.MemoryPolicy.Nodes":             InPlan,
		"Spec.Linux.MemoryPolicy.Flags":             InPlan,
		"Spec.Linux.Personality":                    InPlan,
		"Spec.Linux.Personality.Domain":             InPlan,
		"Spec.Linux.Personality.Flags":              Parent, // none is defined: ignored with a warning, as runc does
		"Spec.Linux.TimeOffsets":                    Parent, // written by the constructor for the new time namespace
		"Spec.Linux.TimeOffsets.Secs":               Parent,
		"Spec.Linux.TimeOffsets.Nanosecs":           Parent,

		// Resources are the cgroup driver's (internal/linux/cgroups), every
		// one of them written to the container's cgroup by the parent.
		"Spec.Linux.Resources":                                       Parent,
		"Spec.Linux.Resources.Devices":                               Parent,
		"Spec.Linux.Resources.Devices.Allow":                         Parent,
		"Spec.Linux.Resources.Devices.Type":                          Parent,
		"Spec.Linux.Resources.Devices.Major":                         Parent,
		"Spec.Linux.Resources.Devices.Minor":                         Parent,
		"Spec.Linux.Resources.Devices.Access":                        Parent,
		"Spec.Linux.Resources.Memory":                                Parent,
		"Spec.Linux.Resources.Memory.Limit":                          Parent,
		"Spec.Linux.Resources.Memory.Reservation":                    Parent,
		"Spec.Linux.Resources.Memory.Swap":                           Parent,
		"Spec.Linux.Resources.Memory.Kernel":                         Parent,
		"Spec.Linux.Resources.Memory.KernelTCP":                      Parent,
		"Spec.Linux.Resources.Memory.Swappiness":                     Parent,
		"Spec.Linux.Resources.Memory.DisableOOMKiller":               Parent,
		"Spec.Linux.Resources.Memory.UseHierarchy":                   Parent,
		"Spec.Linux.Resources.Memory.CheckBeforeUpdate":              Parent,
		"Spec.Linux.Resources.CPU":                                   Parent,
		"Spec.Linux.Resources.CPU.Shares":                            Parent,
		"Spec.Linux.Resources.CPU.Quota":                             Parent,
		"Spec.Linux.Resources.CPU.Burst":                             Parent,
		"Spec.Linux.Resources.CPU.Period":                            Parent,
		"Spec.Linux.Resources.CPU.RealtimeRuntime":                   Parent,
		"Spec.Linux.Resources.CPU.RealtimePeriod":                    Parent,
		"Spec.Linux.Resources.CPU.Cpus":                              Parent,
		"Spec.Linux.Resources.CPU.Mems":                              Parent,
		"Spec.Linux.Resources.CPU.Idle":                              Parent,
		"Spec.Linux.Resources.Pids":                                  Parent,
		"Spec.Linux.Resources.Pids.Limit":                            Parent,
		"Spec.Linux.Resources.BlockIO":                               Parent,
		"Spec.Linux.Resources.BlockIO.Weight":                        Parent,
		"Spec.Linux.Resources.BlockIO.LeafWeight":                    Parent,
		"Spec.Linux.Resources.BlockIO.WeightDevice":                  Parent,
		"Spec.Linux.Resources.BlockIO.WeightDevice.Major":            Parent,
		"Spec.Linux.Resources.BlockIO.WeightDevice.Minor":            Parent,
		"Spec.Linux.Resources.BlockIO.WeightDevice.Weight":           Parent,
		"Spec.Linux.Resources.BlockIO.WeightDevice.LeafWeight":       Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleReadBpsDevice":         Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleReadBpsDevice.Major":   Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleReadBpsDevice.Minor":   Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleReadBpsDevice.Rate":    Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleWriteBpsDevice":        Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleWriteBpsDevice.Major":  Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleWriteBpsDevice.Minor":  Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleWriteBpsDevice.Rate":   Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleReadIOPSDevice":        Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleReadIOPSDevice.Major":  Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleReadIOPSDevice.Minor":  Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleReadIOPSDevice.Rate":   Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleWriteIOPSDevice":       Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleWriteIOPSDevice.Major": Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleWriteIOPSDevice.Minor": Parent,
		"Spec.Linux.Resources.BlockIO.ThrottleWriteIOPSDevice.Rate":  Parent,
		"Spec.Linux.Resources.HugepageLimits":                        Parent,
		"Spec.Linux.Resources.HugepageLimits.Pagesize":               Parent,
		"Spec.Linux.Resources.HugepageLimits.Limit":                  Parent,
		"Spec.Linux.Resources.Network":                               Parent,
		"Spec.Linux.Resources.Network.ClassID":                       Parent,
		"Spec.Linux.Resources.Network.Priorities":                    Parent,
		"Spec.Linux.Resources.Network.Priorities.Name":               Parent,
		"Spec.Linux.Resources.Network.Priorities.Priority":           Parent,
		"Spec.Linux.Resources.Rdma":                                  Parent,
		"Spec.Linux.Resources.Rdma.HcaHandles":                       Parent,
		"Spec.Linux.Resources.Rdma.HcaObjects":                       Parent,
		"Spec.Linux.Resources.Unified":                               Parent,

		"Spec.Solaris": OtherOS,
		"Spec.Windows": OtherOS,
		"Spec.VM":      OtherOS,
		"Spec.ZOS":     OtherOS,
		"Spec.FreeBSD": OtherOS,
	}
}
