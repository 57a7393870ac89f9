package runtime

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/linux/cgroups"
	"berth/internal/linux/cgroups/systemd"
)

// newCgroup is the container's cgroup manager for the driver the runtime
// was started with: cgroupfs paths, or with SystemdCgroup a transient
// systemd unit named by cgroupsPath ("slice:prefix:name") whose properties
// include the config's org.systemd.property.* annotations. Importing
// package systemd also makes every later command (cgroups.Load) manage a
// unit's saved paths through systemd.
func (r *Runtime) newCgroup(s *specs.Spec, cgroupsPath, id string) (cgroups.Manager, error) {
	if !r.SystemdCgroup {
		return cgroups.New(cgroupsPath, id)
	}
	extra, err := systemd.AnnotationProperties(s.Annotations)
	if err != nil {
		return nil, err
	}
	return systemd.New(cgroupsPath, id, extra)
}
