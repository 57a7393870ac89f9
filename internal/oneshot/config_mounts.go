// Mounts: volumes, binds, tmpfs, shm and the image's VOLUMEs, in the
// order and with the options docker gives them.

package oneshot

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/image/bundle"
)

// parseTmpfs reads --tmpfs /path[:opts], podman's defaults first.
func parseTmpfs(t string) (specs.Mount, error) {
	dst, opts, _ := strings.Cut(t, ":")
	if !path.IsAbs(dst) {
		return specs.Mount{}, fmt.Errorf("--tmpfs %q: the path must be absolute", t)
	}
	o := []string{"rw", "noexec", "nosuid", "nodev"}
	if opts != "" {
		for _, x := range strings.Split(opts, ",") {
			switch x {
			case "exec":
				o = dropOption(o, "noexec")
			case "suid":
				o = dropOption(o, "nosuid")
			case "dev":
				o = dropOption(o, "nodev")
			case "ro":
				o = dropOption(o, "rw")
			}
			o = append(o, x)
		}
	}
	return specs.Mount{Destination: path.Clean(dst), Type: "tmpfs", Source: "tmpfs", Options: o}, nil
}

// mounts adds volumes (image Volumes become anonymous volumes, not umoci's
// tmpfs), binds, tmpfs mounts, the /dev/shm size and --read-only's tmpfs.
func (o *Options) mounts(s *specs.Spec, img *bundle.Image, m *Meta) error {
	var add []specs.Mount
	claimed := map[string]bool{}
	for _, v := range o.Volumes {
		vm, bm, err := parseVolumeFlag(v)
		if err != nil {
			return err
		}
		if bm != nil {
			if _, err := os.Stat(bm.Source); err != nil {
				return fmt.Errorf("-v %q: %w", v, err)
			}
			m.Binds = append(m.Binds, *bm)
			claimed[bm.Destination] = true
			continue
		}
		if vm.Name == "" {
			vm.Name, vm.Anonymous = NewID(), true
		}
		m.Volumes = append(m.Volumes, *vm)
		claimed[vm.Destination] = true
	}
	// The image's volumes that no -v covers: anonymous volumes.
	var imgVols []string
	for v := range img.Config.Config.Volumes {
		if d := path.Clean("/" + v); d != "/" {
			imgVols = append(imgVols, d)
		}
	}
	sort.Strings(imgVols)
	m.Config.Volumes = imgVols
	var unmount []string
	for _, d := range imgVols {
		unmount = append(unmount, d) // bundle.FromImage made them tmpfs (umoci's rule)
		if !claimed[d] {
			m.Volumes = append(m.Volumes, VolumeMount{Name: NewID(), Destination: d, Anonymous: true})
		}
	}
	for _, t := range o.Tmpfs {
		mt, err := parseTmpfs(t)
		if err != nil {
			return err
		}
		m.Tmpfs = append(m.Tmpfs, t)
		add = append(add, mt)
	}
	if o.ReadOnly && (o.ReadOnlyTmpfs == nil || *o.ReadOnlyTmpfs) {
		for _, d := range []string{"/run", "/tmp", "/var/tmp"} {
			if !claimed[d] && !hasMount(add, d) {
				add = append(add, specs.Mount{Destination: d, Type: "tmpfs", Source: "tmpfs",
					Options: []string{"rw", "nosuid", "nodev", "mode=1777"}})
			}
		}
	}
	for _, b := range m.Binds {
		opts := []string{"rbind", "rprivate"}
		if b.ReadOnly {
			opts = append(opts, "ro")
		}
		add = append(add, specs.Mount{Type: "bind", Source: b.Source, Destination: b.Destination, Options: opts})
	}
	// Prepare creates the volumes before the config is saved.
	for _, v := range m.Volumes {
		opts := []string{"rbind", "rprivate"}
		if v.ReadOnly {
			opts = append(opts, "ro")
		}
		_, data, _ := volumePaths(o.VolumeDir, v.Name)
		add = append(add, specs.Mount{Type: "bind", Source: data, Destination: v.Destination, Options: opts})
	}
	if o.ShmSize > 0 {
		for i := range s.Mounts {
			if s.Mounts[i].Destination == "/dev/shm" {
				var opts []string
				for _, x := range s.Mounts[i].Options {
					if !strings.HasPrefix(x, "size=") {
						opts = append(opts, x)
					}
				}
				s.Mounts[i].Options = append(opts, "size="+strconv.FormatInt(o.ShmSize, 10))
			}
		}
	}
	// Parents before children, whatever the order on the command line
	// (docker sorts its mounts the same way).
	sort.SliceStable(add, func(i, j int) bool { return depth(add[i].Destination) < depth(add[j].Destination) })
	return (&bundle.Edit{UnMounts: unmount, Mounts: add}).Apply(s)
}

func depth(p string) int { return strings.Count(path.Clean(p), "/") }

func hasMount(ms []specs.Mount, dst string) bool {
	for _, m := range ms {
		if m.Destination == dst {
			return true
		}
	}
	return false
}

// parseVolumeFlag reads -v: /host:/ctr[:opts] (a bind), NAME:/ctr[:opts]
// (a named volume) or /ctr (an anonymous volume). Options: ro, rw, and the
// propagation/label options docker accepts (z, Z are accepted and ignored:
// no SELinux here).
func parseVolumeFlag(v string) (*VolumeMount, *BindMount, error) {
	f := strings.Split(v, ":")
	bad := func(why string) (*VolumeMount, *BindMount, error) {
		return nil, nil, fmt.Errorf("-v %q: %s (want /host/path:/container/path[:ro], NAME:/container/path[:ro] or /container/path)", v, why)
	}
	if len(f) == 1 {
		if !path.IsAbs(f[0]) {
			return bad("a container path must be absolute")
		}
		return &VolumeMount{Destination: path.Clean(f[0])}, nil, nil
	}
	if len(f) > 3 {
		return bad("too many fields")
	}
	src, dst := f[0], f[1]
	if !path.IsAbs(dst) {
		return bad("the container path must be absolute")
	}
	dst = path.Clean(dst)
	ro := false
	if len(f) == 3 {
		for _, o := range strings.Split(f[2], ",") {
			switch o {
			case "ro":
				ro = true
			case "rw", "z", "Z", "rprivate", "private":
			default:
				return bad("unknown option " + strconv.Quote(o))
			}
		}
	}
	if filepath.IsAbs(src) {
		return nil, &BindMount{Source: filepath.Clean(src), Destination: dst, ReadOnly: ro}, nil
	}
	if err := ValidVolumeName(src); err != nil {
		return bad("the source is neither an absolute host path nor a volume name")
	}
	return &VolumeMount{Name: src, Destination: dst, ReadOnly: ro}, nil, nil
}
