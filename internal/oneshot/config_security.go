// Privilege: capabilities, masked paths, seccomp, AppArmor and
// no-new-privileges, as docker and podman set them.

package oneshot

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/image/bundle"
	"berth/internal/linux/caps"
)

// capabilities sets docker's set, or everything berth holds
// (--privileged), with --cap-add/--cap-drop, --read-only, and docker's
// masked and read-only paths.
func (o *Options) capabilities(s *specs.Spec) error {
	p := s.Process
	set := DefaultCaps
	var capAdd []string
	for _, c := range o.CapAdd {
		if strings.EqualFold(c, "ALL") {
			set = nil
		} else {
			capAdd = append(capAdd, c)
		}
	}
	if o.Privileged || set == nil {
		set = boundingCaps()
	}
	p.Capabilities = &specs.LinuxCapabilities{
		Bounding: append([]string(nil), set...), Effective: append([]string(nil), set...), Permitted: append([]string(nil), set...),
	}
	e := bundle.Edit{CapAdd: capAdd, CapDrop: o.CapDrop}
	if o.ReadOnly {
		ro := true
		e.Readonly = &ro
	}
	if err := e.Apply(s); err != nil {
		return err
	}

	// Masked and read-only paths: docker's list (runc's spec plus the
	// powercap counters, CVE-2020-8694); none with --privileged.
	s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/sys/devices/virtual/powercap")
	if o.Privileged {
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
		for i := range s.Mounts {
			if s.Mounts[i].Type == "sysfs" || s.Mounts[i].Type == "cgroup" || s.Mounts[i].Type == "cgroup2" {
				s.Mounts[i].Options = dropOption(s.Mounts[i].Options, "ro")
			}
		}
	}
	return nil
}

// boundingCaps is every capability in berth's own bounding set: what
// --privileged can give (podman does the same; asking for more fails).
func boundingCaps() []string {
	var out []string
	names := caps.Names()
	for c := 0; c <= caps.Last() && c < len(names); c++ {
		if r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err == nil && r == 1 {
			out = append(out, names[c])
		}
	}
	return out
}

// mayRemount reports whether the container gets CAP_SYS_ADMIN, with which
// it can remount a read-only bind read-write.
func (o *Options) mayRemount() bool {
	if o.Privileged {
		return true
	}
	for _, c := range o.CapAdd {
		if u := strings.ToUpper(c); u == "ALL" || u == "SYS_ADMIN" || u == "CAP_SYS_ADMIN" {
			return true
		}
	}
	return false
}

func (o *Options) securityOpts(s *specs.Spec) error {
	seccomp := "default"
	if o.Privileged {
		seccomp = "unconfined"
	}
	for _, so := range o.SecurityOpt {
		k, v, hasV := strings.Cut(so, "=")
		if !hasV {
			k, v, hasV = strings.Cut(so, ":") // docker's old form
		}
		switch k {
		case "no-new-privileges":
			b := true
			if hasV {
				var err error
				if b, err = strconv.ParseBool(v); err != nil {
					return fmt.Errorf("--security-opt %q: want no-new-privileges[=true|false]", so)
				}
			}
			s.Process.NoNewPrivileges = b
		case "seccomp":
			if v == "" {
				return fmt.Errorf("--security-opt %q: want seccomp=unconfined or seccomp=FILE", so)
			}
			seccomp = v
		case "label":
			if v != "disable" {
				return fmt.Errorf("--security-opt %q: berth applies no SELinux labels; only label=disable is accepted", so)
			}
		case "apparmor":
			if v != "unconfined" {
				return fmt.Errorf("--security-opt %q: berth applies no AppArmor profile; only apparmor=unconfined is accepted", so)
			}
		default:
			return fmt.Errorf("--security-opt %q: supported: no-new-privileges, seccomp=unconfined|FILE, label=disable, apparmor=unconfined", so)
		}
	}
	switch seccomp {
	case "unconfined":
		s.Linux.Seccomp = nil
	case "default":
		prof, err := moby.GetDefaultProfile(s)
		if err != nil {
			return fmt.Errorf("default seccomp profile: %w", err)
		}
		s.Linux.Seccomp = prof
	default:
		b, err := os.ReadFile(seccomp)
		if err != nil {
			return fmt.Errorf("--security-opt seccomp: %w", err)
		}
		prof, err := moby.LoadProfile(string(b), s)
		if err != nil {
			return fmt.Errorf("--security-opt seccomp=%s: %w", seccomp, err)
		}
		s.Linux.Seccomp = prof
	}
	return nil
}

func hasCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil {
		return false
	}
	return data[c/32].Effective&(1<<uint(c%32)) != 0
}
