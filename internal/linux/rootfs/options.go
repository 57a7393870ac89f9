// Package rootfs holds the facts and decisions about a container's root
// filesystem that the plan compiler (internal/linux/plan) uses: what mount
// options mean, which device nodes and links /dev gets, which mounts at or
// under /proc are allowed, which sysctls a container may set, the host's
// mount table. It performs nothing: the executor in internal/nsenter
// carries the compiled plan out.
package rootfs

import (
	"fmt"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Parsed is a mount's options split into what mount(2) and mount_setattr(2)
// take.
type Parsed struct {
	Flags       uintptr // flags for mount(2)
	ClearFlags  uintptr // flags an option explicitly cleared (e.g. "rw", "suid")
	Propagation []uintptr
	RecAttrSet  uint64 // mount_setattr attributes applied recursively (rro, rnosuid, ...)
	RecAttrClr  uint64
	Data        string // fs-specific options
	TmpCopyUp   bool
	Unsupported []string // options berth recognises but cannot honour here
}

var flagOpts = map[string]struct {
	clear bool
	flag  uintptr
}{
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"mand":          {false, unix.MS_MANDLOCK},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"silent":        {false, unix.MS_SILENT},
	"loud":          {true, unix.MS_SILENT},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

var propOpts = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"shared":      unix.MS_SHARED,
	"slave":       unix.MS_SLAVE,
	"unbindable":  unix.MS_UNBINDABLE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

var recAttrOpts = map[string]struct {
	clear bool
	attr  uint64
}{
	"rro":            {false, unix.MOUNT_ATTR_RDONLY},
	"rrw":            {true, unix.MOUNT_ATTR_RDONLY},
	"rnosuid":        {false, unix.MOUNT_ATTR_NOSUID},
	"rsuid":          {true, unix.MOUNT_ATTR_NOSUID},
	"rnodev":         {false, unix.MOUNT_ATTR_NODEV},
	"rdev":           {true, unix.MOUNT_ATTR_NODEV},
	"rnoexec":        {false, unix.MOUNT_ATTR_NOEXEC},
	"rexec":          {true, unix.MOUNT_ATTR_NOEXEC},
	"rnodiratime":    {false, unix.MOUNT_ATTR_NODIRATIME},
	"rdiratime":      {true, unix.MOUNT_ATTR_NODIRATIME},
	"rrelatime":      {false, unix.MOUNT_ATTR_RELATIME},
	"rnorelatime":    {true, unix.MOUNT_ATTR_RELATIME},
	"rnoatime":       {false, unix.MOUNT_ATTR_NOATIME},
	"ratime":         {true, unix.MOUNT_ATTR_NOATIME},
	"rstrictatime":   {false, unix.MOUNT_ATTR_STRICTATIME},
	"rnostrictatime": {true, unix.MOUNT_ATTR_STRICTATIME},
	"rnosymfollow":   {false, unix.MOUNT_ATTR_NOSYMFOLLOW},
	"rsymfollow":     {true, unix.MOUNT_ATTR_NOSYMFOLLOW},
}

// ParseOptions splits OCI mount options the way runc does.
func ParseOptions(opts []string) Parsed {
	var p Parsed
	var data []string
	for _, o := range opts {
		if f, ok := flagOpts[o]; ok {
			if f.clear {
				p.Flags &^= f.flag
				p.ClearFlags |= f.flag
			} else {
				p.Flags |= f.flag
			}
			continue
		}
		if f, ok := propOpts[o]; ok {
			p.Propagation = append(p.Propagation, f)
			continue
		}
		if a, ok := recAttrOpts[o]; ok {
			if a.clear {
				p.RecAttrClr |= a.attr
			} else {
				p.RecAttrSet |= a.attr
			}
			continue
		}
		switch {
		case o == "tmpcopyup":
			p.TmpCopyUp = true
		case o == "idmap" || o == "ridmap" || strings.HasPrefix(o, "x-"):
			// x-* are for userspace helpers; idmap and ridmap make an
			// idmapped mount (IDMapped).
		default:
			data = append(data, o)
		}
	}
	p.Data = strings.Join(data, ",")
	return p
}

// KnownOptions lists every mount option berth understands, sorted (for
// `features`).
func KnownOptions() []string {
	var out []string
	for k := range flagOpts {
		out = append(out, k)
	}
	for k := range propOpts {
		out = append(out, k)
	}
	for k := range recAttrOpts {
		out = append(out, k)
	}
	out = append(out, "tmpcopyup", "idmap", "ridmap")
	sort.Strings(out)
	return out
}

// IsBind reports whether m is a bind mount (type "bind" or a bind/rbind option).
func IsBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// RootPropagation is the propagation / gets in the container's mount
// namespace: linux.rootfsPropagation, rslave by default (as runc).
func RootPropagation(s *specs.Spec) (uintptr, error) {
	flag := uintptr(unix.MS_SLAVE | unix.MS_REC)
	if s.Linux != nil && s.Linux.RootfsPropagation != "" {
		f, ok := propOpts[s.Linux.RootfsPropagation]
		if !ok {
			return 0, fmt.Errorf("invalid rootfsPropagation %q", s.Linux.RootfsPropagation)
		}
		flag = f
	}
	return flag, nil
}

// PropagationName is the option name of a propagation flag set.
func PropagationName(f uintptr) string {
	for n, v := range propOpts {
		if v == f {
			return n
		}
	}
	return "propagation"
}

// IDMapped reports whether m is an idmapped mount (the idmap or ridmap
// option, or mappings of its own), and whether its mapping applies to the
// whole tree (ridmap).
func IDMapped(m specs.Mount) (idmapped, recursive bool) {
	for _, o := range m.Options {
		switch o {
		case "idmap":
			idmapped = true
		case "ridmap":
			idmapped, recursive = true, true
		}
	}
	return idmapped || len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0, recursive
}
