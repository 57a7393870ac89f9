package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/initproc"
	"berth/internal/linux/rootfs"
	"berth/internal/linux/seccomp"
)

// The fast path of create: as for exec (fastexec.go), a container whose
// init does nothing but syscalls is set up by the nsenter constructor in C
// from a plan (internal/nsenter/initplan.c) and never starts Go. The plan
// lists the rootfs steps of internal/initproc and internal/linux/rootfs in
// their order (propagation of /, the bind of the rootfs on itself, the
// config's mounts, /dev, hostname, pivot_root, read-only and masked paths,
// read-only root, session keyring), then the process section of the exec
// plan, then init waits on exec.fifo as the Go init does. Every path the
// bundle controls is resolved with openat2(RESOLVE_IN_ROOT) and acted on
// through /proc/thread-self/fd, as on the Go path.
//
// Anything that needs more than that takes the Go path: hooks, a terminal,
// a user namespace, a joined mount namespace, --no-pivot, LSM labels,
// sysctls, oomScoreAdj, a shared root propagation, tmpcopyup, mounts at or
// under /proc other than procfs itself, a seccomp listener.
// EnvNoFastInit=1 sends every init down the Go path.
const EnvNoFastInit = "BERTH_NO_FAST_INIT"

const (
	planInitMagic = 0x42585032

	initWaitPlaced      = 1
	initPlacedEarly     = 2
	initUnshareCgroupNS = 4
	initNewUTS          = 8
	initNoKeyring       = 16
	initReadonlyRoot    = 32
	initDevices         = 64

	mountBind   = 0
	mountFS     = 1
	mountKernel = 2 // proc, sysfs: on an ordinary directory only
	mountCgroup = 3

	cgroupV1Binds = 0
	cgroupV2NS    = 1
	cgroupV2Bind  = 2
)

// fastInitCandidate reports whether c may take the fast path at all, before
// anything is compiled or encoded.
func fastInitCandidate(c *initproc.Config, newMountNS bool) bool {
	s, p := c.Spec, c.Process
	if os.Getenv(EnvNoFastInit) == "1" || !c.MountNS || !newMountNS || c.UserNS || c.NoPivot || c.RunHooks || c.ConsoleSocketFd >= 0 {
		return false
	}
	if s.Hooks != nil && (len(s.Hooks.CreateContainer) > 0 || len(s.Hooks.StartContainer) > 0) {
		return false
	}
	if p == nil || p.Terminal || p.OOMScoreAdj != nil || p.ApparmorProfile != "" || p.SelinuxLabel != "" {
		return false
	}
	if s.Linux == nil || len(s.Linux.Sysctl) > 0 || s.Linux.MountLabel != "" || (s.Linux.Seccomp != nil && s.Linux.Seccomp.ListenerPath != "") {
		return false
	}
	return true
}

// fastInitPlan returns the init plan, or ok=false when the config needs the
// Go path. filter is the compiled seccomp filter (nil without one).
func fastInitPlan(c *initproc.Config, filter *seccomp.Filter) (plan []byte, warnings []string, ok bool) {
	s, p := c.Spec, c.Process
	prop, err := rootfs.RootPropagation(s)
	if err != nil || prop&unix.MS_SHARED != 0 {
		return nil, nil, false
	}
	w := &planWriter{}
	w.u32(planInitMagic)
	var flags uint32
	if c.WaitPlaced {
		flags |= initWaitPlaced
	}
	if c.PlacedEarly {
		flags |= initPlacedEarly
	}
	if c.UnshareCgroupNS {
		flags |= initUnshareCgroupNS
	}
	if c.NewUTSNS {
		flags |= initNewUTS
	}
	if c.NoNewKeyring {
		flags |= initNoKeyring
	}
	if s.Root != nil && s.Root.Readonly {
		flags |= initReadonlyRoot
	}
	devs, makeDevs := rootfs.Devices(s)
	if makeDevs {
		flags |= initDevices
	}
	w.u32(flags)
	w.u32(uint32(c.FifoFd))
	w.str(c.Rootfs)
	w.u64(uint64(prop))
	w.str("make / " + rootfs.PropagationName(prop))

	w.u32(uint32(len(s.Mounts)))
	for _, m := range s.Mounts {
		if !w.mount(c, m) {
			return nil, nil, false
		}
	}
	w.u32(uint32(len(devs)))
	for _, d := range devs {
		clean := filepath.Clean(d.Path)
		mode, err := rootfs.DeviceMode(d)
		if err != nil || !strings.HasPrefix(clean, "/dev/") || hasNUL(d.Path) {
			return nil, nil, false // the Go path reports it
		}
		var uid, gid uint32
		if d.UID != nil {
			uid = *d.UID
		}
		if d.GID != nil {
			gid = *d.GID
		}
		w.str(d.Path)
		w.str(clean)
		w.u32(mode)
		w.u64(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))
		w.u32(uid)
		w.u32(gid)
	}
	links := rootfs.DevLinks()
	w.u32(uint32(len(links)))
	for _, l := range links {
		w.str(l[0])
		w.str(l[1])
	}
	if hasNUL(s.Hostname, s.Domainname) || hasNUL(s.Linux.ReadonlyPaths...) || hasNUL(s.Linux.MaskedPaths...) {
		return nil, nil, false
	}
	w.str(s.Hostname)
	w.str(s.Domainname)
	ensure := ""
	if p.Cwd != "" && p.Cwd != "/" {
		ensure = p.Cwd // a cwd the image lacks is created, as runc does
	}
	w.str(ensure)
	w.strs(s.Linux.ReadonlyPaths)
	w.strs(s.Linux.MaskedPaths)
	w.str("_ses." + c.ID)
	if warnings, ok = w.process(p, c.ExtraEnv, false, true, c.KeepFds, filter); !ok {
		return nil, nil, false
	}
	return w.finish(), warnings, true
}

// mount encodes one config mount as rootfs.mountOne would perform it.
func (w *planWriter) mount(c *initproc.Config, m specs.Mount) bool {
	dest := m.Destination
	if !filepath.IsAbs(dest) {
		dest = "/" + dest
	}
	clean := filepath.Clean(dest)
	if (clean == "/proc" || strings.HasPrefix(clean, "/proc/")) && (m.Type != "proc" || clean != "/proc") {
		return false // checkProcMount's cases: the Go path decides and words them
	}
	if hasNUL(m.Source, m.Destination, m.Type) || hasNUL(m.Options...) {
		return false
	}
	po := rootfs.ParseOptions(m.Options)
	kind := uint32(mountFS)
	switch {
	case m.Type == "cgroup" || m.Type == "cgroup2":
		kind = mountCgroup
	case rootfs.IsBind(m):
		kind = mountBind
	case po.TmpCopyUp && m.Type == "tmpfs":
		return false
	case m.Type == "proc" || m.Type == "sysfs":
		kind = mountKernel
	}
	src := m.Source
	if kind != mountBind && src == "" {
		src = m.Type
	}
	w.u32(kind)
	// MountAll's error prefix names the mount as the config does.
	w.str("error mounting " + strconv.Quote(m.Source) + " to rootfs at " + strconv.Quote(m.Destination))
	w.str(src)
	w.str(clean)
	w.str(m.Type)
	w.str(po.Data)
	w.u64(uint64(po.Flags))
	w.u32(uint32(len(po.Propagation)))
	for _, f := range po.Propagation {
		w.u64(uint64(f))
	}
	w.u64(po.RecAttrSet)
	w.u64(po.RecAttrClr)
	if kind != mountCgroup {
		return true
	}
	if _, unified := c.CgroupPaths[""]; unified && len(c.CgroupPaths) == 1 {
		if c.CgroupNS {
			w.u32(cgroupV2NS)
		} else {
			w.u32(cgroupV2Bind)
			w.str(c.CgroupPaths[""])
		}
		return true
	}
	binds, err := rootfs.CgroupBinds(c.CgroupPaths)
	if err != nil {
		return false
	}
	w.u32(cgroupV1Binds)
	w.u32(uint32(len(binds)))
	for _, b := range binds {
		w.str(b.Name)
		w.str(b.Source)
	}
	return true
}
