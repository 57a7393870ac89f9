package rootfs

import "strings"

// CgroupBind is one hierarchy of a v1 (or hybrid) host as the container
// sees it: /sys/fs/cgroup/<Name> inside is a bind mount of Source, the
// container's own cgroup directory in that hierarchy.
type CgroupBind struct{ Name, Source string }

// CgroupBinds lists, in the host's mount order, the hierarchies mounted at
// /sys/fs/cgroup/<name> in which the container has a cgroup (paths maps a
// controller, or "" for the unified hierarchy, to its directory). Only the
// container's own directories are bound, never a hierarchy's root, so the
// container sees nothing of the host's tree (CVE-2022-0492's class).
func CgroupBinds(paths map[string]string, mounts []MountInfo) []CgroupBind {
	var out []CgroupBind
	for _, h := range mounts {
		if (h.FSType != "cgroup" && h.FSType != "cgroup2") || !strings.HasPrefix(h.Point, "/sys/fs/cgroup/") {
			continue
		}
		name := strings.TrimPrefix(h.Point, "/sys/fs/cgroup/")
		if strings.Contains(name, "/") {
			continue
		}
		src := ""
		for ctrl, path := range paths {
			if ctrl == "" && h.FSType == "cgroup2" || ctrl != "" && strings.HasPrefix(path, h.Point+"/") && hasController(name, ctrl) {
				src = path
				break
			}
		}
		if src == "" {
			// A hierarchy the container has no cgroup in (e.g. a named one):
			// binding its root would leak host state, so skip it.
			continue
		}
		out = append(out, CgroupBind{Name: name, Source: src})
	}
	return out
}

func hasController(hierarchy, ctrl string) bool {
	for _, c := range strings.Split(hierarchy, ",") {
		if c == ctrl || "name="+c == ctrl {
			return true
		}
	}
	return false
}
