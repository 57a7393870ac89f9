package plan

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/rootfs"
)

// rootfs adds the mount-namespace steps up to the devices: the propagation
// of /, the rootfs a mount point of its own, the config's mounts in order
// and /dev.
func (c *compiler) rootfs(in *Init) error {
	s := in.Spec
	prop, err := rootfs.RootPropagation(s)
	if err != nil {
		return err
	}
	c.add(HostMount{Target: "/", Flags: uint64(prop), Err: "make / " + rootfs.PropagationName(prop) + " /"})
	if prop&unix.MS_SHARED != 0 {
		// pivot_root fails if the new root's parent mount is shared, and
		// after an rshared / every mount is: make the one holding the
		// rootfs private (in the container's namespace only).
		mounts, err := in.Host.Mounts()
		if err != nil {
			return fmt.Errorf("read mount table: %w", err)
		}
		if mp := rootfs.MountPointOf(in.Rootfs, mounts); mp != "" {
			c.add(HostMount{Target: mp, Flags: unix.MS_PRIVATE, Err: "make parent mount private " + mp})
		}
	}
	c.add(HostMount{Source: in.Rootfs, Target: in.Rootfs, FSType: "bind", Flags: unix.MS_BIND | unix.MS_REC, Err: "bind mount rootfs " + in.Rootfs})
	c.add(OpenRoot{Path: in.Rootfs})
	for i, m := range s.Mounts {
		if err := c.mount(in, i, m); err != nil {
			return fmt.Errorf("error mounting %q to rootfs at %q: %w", m.Source, m.Destination, err)
		}
	}
	if hostCgroupsReadonly(s.Mounts) {
		c.add(ReadonlyTree{Path: "/sys/fs/cgroup"})
	}
	return c.devices(in)
}

// hostCgroupsReadonly reports a config whose /sys/fs/cgroup comes from a
// read-only recursive bind of the host's (/sys rbind,ro: `spec --rootless`
// writes it) and that mounts no cgroup view of its own. ro is not
// recursive (runc), so the host's cgroupfs mounts below would stay
// writable: CVE-2023-25809 gave a rootless container write access to its
// user's delegated cgroups that way. They are made read-only with it.
func hostCgroupsReadonly(mounts []specs.Mount) bool {
	covered := false
	for _, m := range mounts {
		dest := filepath.Clean("/" + m.Destination)
		if m.Type == "cgroup" || m.Type == "cgroup2" {
			return false
		}
		if dest == "/sys/fs/cgroup" || strings.HasPrefix(dest, "/sys/fs/cgroup/") {
			return false
		}
		po := rootfs.ParseOptions(m.Options)
		if !rootfs.IsBind(m) || po.Flags&unix.MS_REC == 0 {
			continue
		}
		if dest == "/" || dest == "/sys" || dest == "/sys/fs" {
			covered = po.Flags&unix.MS_RDONLY != 0
		}
	}
	return covered
}

// mount adds one of the config's mounts: the one place that decides what
// kind of mount it is and which flags, propagation and attributes it gets.
func (c *compiler) mount(in *Init, i int, m specs.Mount) error {
	if !filepath.IsAbs(m.Destination) {
		// runc accepts relative destinations (as relative to /).
		m.Destination = "/" + m.Destination
	}
	if err := rootfs.CheckProcMount(m); err != nil {
		return err
	}
	// As runc: a destination lexically inside the rootfs path is that
	// path in the container.
	dest := stripRoot(in.Rootfs, m.Destination)
	prefix := "error mounting " + strconv.Quote(m.Source) + " to rootfs at " + strconv.Quote(m.Destination)
	po := rootfs.ParseOptions(m.Options)
	if m.Type == "cgroup" || m.Type == "cgroup2" {
		return c.cgroupMount(in, prefix, dest, po)
	}
	st := Mount{
		Err: prefix, Source: m.Source, Dest: dest, FSType: m.Type, Data: po.Data,
		Flags: uint64(po.Flags), AttrSet: po.RecAttrSet, AttrClear: po.RecAttrClr,
	}
	for _, f := range po.Propagation {
		st.Propagation = append(st.Propagation, uint64(f))
	}
	bind := rootfs.IsBind(m)
	if bind && !filepath.IsAbs(st.Source) {
		// As runc: a relative bind source is relative to the bundle.
		st.Source = filepath.Join(in.Bundle, st.Source)
	}
	idmapped, _ := rootfs.IDMapped(m)
	st.Index = uint32(i)
	switch {
	case idmapped:
		if err := checkIDMapped(in, m, bind); err != nil {
			return &ConfigError{err}
		}
		st.Kind = MountAttach
	case bind:
		st.Kind = MountBind
		if in.UserNS && in.MountSources {
			st.MountFlags |= MountFAskSource
		}
	case po.TmpCopyUp && m.Type == "tmpfs":
		st.Kind = MountTmpCopyUp
	case m.Type == "proc" || m.Type == "sysfs":
		st.Kind = MountKernel
	default:
		st.Kind = MountFS
	}
	if st.Kind != MountBind && st.Source == "" {
		st.Source = m.Type
	}
	if m.Type == "mqueue" && in.UserNS {
		st.MountFlags |= MountFMqueueUserNS
	}
	if st.Kind == MountFS && m.Type == "tmpfs" && !hasDataOption(po.Data, "mode") {
		st.MountFlags |= MountFInheritMode
	}
	if dest == "/dev" && st.Kind == MountFS && st.Flags&unix.MS_RDONLY != 0 {
		// runc: a read-only /dev is made read-only once its nodes and
		// links are in it (after pivot_root).
		st.Flags &^= unix.MS_RDONLY
		c.devReadonly = true
	}
	c.add(st)
	return nil
}

// checkIDMapped refuses an idmapped mount runc refuses: of anything but a
// bind, from a rootless runtime (MOUNT_ATTR_IDMAP needs privileges over
// the filesystem's user namespace, the host's), or without a mapping (its
// own, or the container's user namespace's).
func checkIDMapped(in *Init, m specs.Mount, bind bool) error {
	if !bind {
		return errors.New("id-mapped mounts are only supported for bind-mounts")
	}
	if !in.MountSources {
		return errors.New("id-mapped mounts are not supported for rootless containers")
	}
	if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
		if len(m.UIDMappings) == 0 || len(m.GIDMappings) == 0 {
			return errors.New("id-mapped mounts must have both uid and gid mappings specified")
		}
		return nil
	}
	for _, n := range in.Spec.Linux.Namespaces {
		if n.Type == specs.UserNamespace && n.Path != "" {
			return nil
		}
	}
	if len(in.Spec.Linux.UIDMappings) == 0 || len(in.Spec.Linux.GIDMappings) == 0 {
		return errors.New("id-mapped mounts must have both uid and gid mappings specified")
	}
	return nil
}

// stripRoot is runc's lexical strip of the rootfs from a destination: a
// clean absolute path, relative to root when it lies (lexically) in it.
func stripRoot(root, path string) string {
	root, path = filepath.Clean("/"+root), filepath.Clean("/"+path)
	switch {
	case path == root:
		return "/"
	case root == "/":
		return path
	}
	return filepath.Clean("/" + strings.TrimPrefix(path, root+"/"))
}

// hasDataOption reports whether the comma-separated data has key=.
func hasDataOption(data, key string) bool {
	for _, o := range strings.Split(data, ",") {
		if strings.HasPrefix(o, key+"=") {
			return true
		}
	}
	return false
}

// cgroupMount gives the container its cgroup view: cgroup2 in its cgroup
// namespace on a unified host, a bind of its unified cgroup without one,
// or (v1 and hybrid hosts) a tmpfs of bind mounts of its own cgroup
// directories, one per hierarchy, as runc does.
func (c *compiler) cgroupMount(in *Init, prefix, dest string, po rootfs.Parsed) error {
	st := MountCgroup{Err: prefix, Dest: dest, Flags: uint64(po.Flags)}
	if unified, ok := in.CgroupPaths[""]; ok && len(in.CgroupPaths) == 1 {
		if in.CgroupNS {
			st.Mode = CgroupV2NS
		} else {
			st.Mode, st.Unified = CgroupV2Bind, unified
		}
		c.add(st)
		return nil
	}
	mounts, err := in.Host.Mounts()
	if err != nil {
		return fmt.Errorf("read mount table: %w", err)
	}
	st.Mode = CgroupV1Binds
	for _, b := range rootfs.CgroupBinds(in.CgroupPaths, mounts) {
		st.Binds = append(st.Binds, CgroupBind{Name: b.Name, Source: b.Source})
	}
	c.add(st)
	return nil
}

// devices adds the container's device nodes (mknod, or bind mounts of the
// host's nodes in a user namespace, where mknod is not permitted) and the
// /dev links, unless the config bind-mounts the host's /dev.
func (c *compiler) devices(in *Init) error {
	devs, ok := rootfs.Devices(in.Spec)
	if !ok {
		return nil
	}
	st := Devices{Bind: in.UserNS}
	for _, d := range devs {
		prefix := "creating device " + d.Path
		clean := filepath.Clean(d.Path)
		if !strings.HasPrefix(clean, "/dev/") {
			return fmt.Errorf("%s: device path must be under /dev", prefix)
		}
		mode, err := rootfs.DeviceMode(d)
		if err != nil {
			return fmt.Errorf("%s: %w", prefix, err)
		}
		nd := Device{Err: prefix, Path: clean, Mode: mode, Dev: unix.Mkdev(uint32(d.Major), uint32(d.Minor))}
		if d.UID != nil {
			nd.UID = *d.UID
		}
		if d.GID != nil {
			nd.GID = *d.GID
		}
		st.Devices = append(st.Devices, nd)
	}
	for _, l := range rootfs.DevLinks(in.Host.Kcore) {
		st.Links = append(st.Links, Link{Target: l[0], Name: l[1]})
	}
	c.add(st)
	return nil
}
