// Package cgroups places container processes into control groups and manages
// their limits, freezing, process lists, statistics and teardown, on cgroup v1
// (legacy and hybrid hosts) and cgroup v2 (unified hosts).
//
// Placement (Create/Apply) is separate from resource writes (Set/Update), as in
// crun: a runtime can create the cgroup, write limits, start init inside it
// with CLONE_INTO_CGROUP (CgroupFD) and only then release it.
//
// Every controller writer takes a directory, so the whole package runs against
// a temporary directory in tests (see WithRoot); conformance_test.go holds the
// suite every driver passes.
package cgroups

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/rootfs"
)

// Manager is the contract between the runtime and a cgroup driver. All methods
// are safe to call on a manager built by Load in a later process.
//
//   - Create makes the cgroup directories (idempotent) without moving anything.
//   - Apply(pid) does Create and moves pid (a whole process) into every hierarchy.
//   - Set writes r, devices included; Update writes r but never touches devices
//     (runc update semantics; give it the merged resources, as runc update
//     does). A nil r is a no-op. Nothing is written unless the whole of r is
//     valid for this driver (validation runs first). r.Devices is enforced
//     exactly, starting from deny-all with later rules winning (v1:
//     devices.allow/deny; v2: an eBPF program on the cgroup); callers append
//     devices.DefaultAllowed as runc does. An empty r.Devices leaves device
//     access untouched. Limits for a v1 controller the host does not mount
//     fail with "cannot set X limit: the X controller is not mounted".
//   - Freeze/Thaw return once the kernel reports the cgroup FROZEN / THAWED.
//   - Pids lists every process of the cgroup and of its sub-cgroups.
//   - Stats returns runc's events "data" object for this cgroup.
//   - OOMCount returns how many processes the OOM killer killed in the cgroup;
//     OOMEvents delivers one value per OOM event until ctx ends or the cgroup
//     is removed, then closes the channel.
//   - Kill signals every process (freezing first, so none can fork away).
//   - Destroy waits (bounded) for the cgroup to empty and removes it and its
//     sub-cgroups; parents named in an absolute cgroupsPath are left, as runc
//     leaves them. Destroying a cgroup that is gone is not an error.
//   - Path(controller) is the directory for a v1 controller ("memory", ...) or,
//     with "", the v2 directory; "" when not managed. Paths is the whole map, the
//     value runtimes save in state.json (cgroup_paths) and give back to Load.
//   - CgroupFD opens the v2 directory for SysProcAttr.CgroupFD (clone3
//     CLONE_INTO_CGROUP); it fails with ErrNoCgroupFD unless the host is unified.
//   - Exists reports whether the cgroup directory is still there (events stops
//     streaming when it is gone).
//   - CheckEmpty refuses a cgroup that already exists with processes in it
//     (on any hierarchy, sub-cgroups included) or frozen, with runc's
//     errors: a create must never share another container's cgroup, whose
//     delete would then fail or take the other's processes with it. A
//     missing cgroup passes. Call it before Create.
type Manager interface {
	Create() error
	Apply(pid int) error
	Set(r *specs.LinuxResources) error
	Update(r *specs.LinuxResources) error
	Freeze() error
	Thaw() error
	Frozen() (bool, error)
	Pids() ([]int, error)
	Stats() (*Stats, error)
	OOMCount() (uint64, error)
	OOMEvents(ctx context.Context) (<-chan struct{}, error)
	Kill(sig unix.Signal) error
	Destroy() error
	Exists() bool
	CheckEmpty() error
	Path(controller string) string
	Paths() map[string]string
	Mode() Mode
	CgroupFD() (*os.File, error)
}

// Mode is how the host mounts cgroups.
type Mode int

const (
	// ModeLegacy: only v1 hierarchies.
	ModeLegacy Mode = iota + 1
	// ModeHybrid: v1 controllers plus an empty v2 tree at <root>/unified.
	ModeHybrid
	// ModeUnified: one v2 tree at <root>.
	ModeUnified
)

func (m Mode) String() string {
	switch m {
	case ModeLegacy:
		return "legacy"
	case ModeHybrid:
		return "hybrid"
	case ModeUnified:
		return "unified"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

var (
	// ErrNoCgroupFD: CLONE_INTO_CGROUP needs a v2-only host.
	ErrNoCgroupFD = errors.New("cgroup fd is only available on a cgroup v2 (unified) host")
	// ErrNotExist: the cgroup has been removed.
	ErrNotExist = errors.New("cgroup does not exist")
)

// DefaultRoot is where cgroupfs is mounted.
const DefaultRoot = "/sys/fs/cgroup"

type config struct {
	root       string
	mode       Mode
	selfCgroup string
	mountinfo  string
}

// Option changes how New and Load find the cgroup filesystem.
type Option func(*config)

// WithRoot sets the cgroupfs mount point (default /sys/fs/cgroup). Tests
// point it at a fake tree in a temporary directory.
func WithRoot(dir string) Option { return func(c *config) { c.root = dir } }

// WithMode forces the host mode (default: detected with statfs on the root).
func WithMode(m Mode) Option { return func(c *config) { c.mode = m } }

// WithSelfCgroup names the file listing the runtime's own cgroups, used to
// resolve relative cgroupsPath values (default /proc/self/cgroup).
func WithSelfCgroup(path string) Option { return func(c *config) { c.selfCgroup = path } }

// WithMountinfo names the mount table v1 hierarchies are found in (default
// /proc/self/mountinfo). Tests point it at a table listing their fake tree.
func WithMountinfo(path string) Option { return func(c *config) { c.mountinfo = path } }

func newConfig(opts []Option) (*config, error) {
	c := &config{root: DefaultRoot, selfCgroup: "/proc/self/cgroup", mountinfo: "/proc/self/mountinfo"}
	for _, o := range opts {
		o(c)
	}
	if c.mode == 0 {
		m, err := DetectMode(c.root)
		if err != nil {
			return nil, err
		}
		c.mode = m
	}
	return c, nil
}

// DetectMode tells legacy, hybrid and unified hosts apart by the filesystem
// types of root and root/unified.
func DetectMode(root string) (Mode, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return 0, fmt.Errorf("detect cgroup mode: %w", &os.PathError{Op: "statfs", Path: root, Err: err})
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return ModeUnified, nil
	}
	if err := unix.Statfs(filepath.Join(root, "unified"), &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return ModeHybrid, nil
	}
	return ModeLegacy, nil
}

// New returns the manager for a container's cgroup, as runc resolves it with
// --systemd-cgroup off:
//   - an absolute cgroupsPath is taken below each hierarchy's root;
//   - a relative one is taken below the runtime's own cgroup (v1: in each
//     hierarchy; v2: below the parent of the runtime's cgroup, because the
//     runtime's own cgroup holds processes and so cannot enable controllers
//     for children);
//   - an empty one means the relative path "<containerID>".
//
// ".." cannot climb out of either base. Nothing is created until Create/Apply.
func New(cgroupsPath, containerID string, opts ...Option) (Manager, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	inner, err := innerPath(cgroupsPath, containerID)
	if err != nil {
		return nil, err
	}
	if c.mode == ModeUnified {
		dir, err := c.v2Dir(inner)
		if err != nil {
			return nil, err
		}
		return &v2Manager{dir: dir}, nil
	}
	paths, err := c.v1Paths(inner)
	if err != nil {
		return nil, err
	}
	return &v1Manager{paths: paths, mode: c.mode}, nil
}

// Load rebuilds a manager from a Paths() map saved earlier (state.json's
// cgroup_paths), so later commands act on the very directories create used
// even if they run in another cgroup.
func Load(paths map[string]string, opts ...Option) (Manager, error) {
	if len(paths) == 0 {
		return nil, errors.New("load cgroup manager: no cgroup paths")
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	for k, p := range paths {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("load cgroup manager: path %q for %q is not clean and absolute", p, k)
		}
		// Destroy removes these trees: never accept one outside cgroupfs.
		if rel, err := filepath.Rel(c.root, p); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("load cgroup manager: path %q for %q is not below %s", p, k, c.root)
		}
	}
	var fs Manager
	if c.mode == ModeUnified {
		dir, ok := paths[""]
		if !ok || len(paths) != 1 {
			return nil, fmt.Errorf("load cgroup manager: unified host needs exactly the \"\" path, got %v", keys(paths))
		}
		fs = &v2Manager{dir: dir}
	} else {
		cp := make(map[string]string, len(paths))
		for k, v := range paths {
			cp[k] = v
		}
		fs = &v1Manager{paths: cp, mode: c.mode}
	}
	if UnitDriver != nil {
		return UnitDriver(paths, fs), nil
	}
	return fs, nil
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// innerPath cleans cgroupsPath the way runc does, so "../../x" stays inside
// the base it is resolved against: a relative path is cleaned as if rooted at
// "/" and then made relative again.
func innerPath(cgroupsPath, containerID string) (string, error) {
	p := cgroupsPath
	if p == "" {
		if containerID == "" {
			return "", errors.New("cgroup path: empty cgroupsPath needs a container id")
		}
		p = containerID
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("cgroup path %q: contains a NUL byte", p)
	}
	if filepath.IsAbs(p) {
		p = filepath.Clean(p)
		if p == "/" {
			return "", fmt.Errorf("cgroup path %q: refusing the root cgroup", cgroupsPath)
		}
		return p, nil
	}
	rel, err := filepath.Rel("/", filepath.Clean("/"+p))
	if err != nil || rel == "." {
		return "", fmt.Errorf("cgroup path %q: resolves to the runtime's own cgroup", cgroupsPath)
	}
	return rel, nil
}

// v1Controllers are the hierarchies a v1 container joins. "name=systemd" is the
// named hierarchy systemd-less hosts still mount; runc joins it too.
var v1Controllers = []string{
	"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
	"hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc", "name=systemd",
}

func (c *config) v1Paths(inner string) (map[string]string, error) {
	mounts, err := c.v1Mounts()
	if err != nil {
		return nil, err
	}
	own := map[string]string{}
	var ownV2 string
	if !filepath.IsAbs(inner) {
		own, ownV2, err = parseSelfCgroup(c.selfCgroup)
		if err != nil {
			return nil, err
		}
	}
	paths := map[string]string{}
	for _, ctrl := range v1Controllers {
		mnt, ok := mounts[ctrl]
		if !ok {
			// Without the devices controller the container would get every
			// device on the host: refuse instead of running unconfined.
			if ctrl == "devices" {
				return nil, fmt.Errorf("cgroup v1: the devices controller is not mounted below %s", c.root)
			}
			continue
		}
		if filepath.IsAbs(inner) {
			paths[ctrl] = filepath.Join(mnt.point, inner)
			continue
		}
		paths[ctrl] = filepath.Join(mnt.point, mnt.below(own[ctrl]), inner)
	}
	if c.mode == ModeHybrid {
		u := filepath.Join(c.root, "unified")
		if filepath.IsAbs(inner) {
			paths[""] = filepath.Join(u, inner)
		} else {
			paths[""] = filepath.Join(u, ownV2, inner)
		}
	}
	return paths, nil
}

// v1Mount is where one v1 hierarchy is mounted: point is the mount point,
// root the hierarchy's directory that appears there ("/" unless the mount is
// a bind of a sub-cgroup, as in a container without a cgroup namespace).
type v1Mount struct{ point, root string }

// below turns a cgroup path of this hierarchy (from /proc/self/cgroup) into
// one relative to the mount point.
func (m v1Mount) below(cg string) string {
	if cg == "" {
		return "/"
	}
	if m.root != "/" {
		if rel, err := filepath.Rel(m.root, cg); err == nil && !strings.HasPrefix(rel, "..") {
			return "/" + rel
		}
	}
	return cg
}

// v1Mounts finds the mounted v1 hierarchies below c.root in the mount table,
// as runc does: a directory at <root>/<controller> is not enough, because the
// tmpfs at /sys/fs/cgroup can hold empty directories nobody mounted anything
// on (runc 1.1 leaves /sys/fs/cgroup/<subsys> behind for controllers that
// live on v2, and runc's own test suite mkdirs one per /proc/cgroups line).
// The key is the controller ("cpu", "name=systemd"); a hierarchy with several
// controllers ("cpu,cpuacct") is the same mount under each of its keys. The
// first mount of a hierarchy wins.
func (c *config) v1Mounts() (map[string]v1Mount, error) {
	f, err := os.Open(c.mountinfo)
	if err != nil {
		return nil, fmt.Errorf("find cgroup v1 hierarchies: %w", err)
	}
	defer f.Close()
	known := map[string]bool{}
	for _, ctrl := range v1Controllers {
		known[ctrl] = true
	}
	out := map[string]v1Mount{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+4 || fields[sep+1] != "cgroup" {
			continue
		}
		point := rootfs.UnescapeMountinfo(fields[4])
		if rel, err := filepath.Rel(c.root, point); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		m := v1Mount{point: point, root: rootfs.UnescapeMountinfo(fields[3])}
		for _, opt := range strings.Split(fields[sep+3], ",") {
			if _, dup := out[opt]; known[opt] && !dup {
				out[opt] = m
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("find cgroup v1 hierarchies: %w", err)
	}
	return out, nil
}

func (c *config) v2Dir(inner string) (string, error) {
	if filepath.IsAbs(inner) {
		return filepath.Join(c.root, inner), nil
	}
	_, own, err := parseSelfCgroup(c.selfCgroup)
	if err != nil {
		return "", err
	}
	return filepath.Join(c.root, filepath.Dir(own), inner), nil
}

// parseSelfCgroup reads /proc/self/cgroup: "id:ctrl,ctrl:path" lines, the v2
// line being "0::path".
func parseSelfCgroup(file string) (map[string]string, string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, "", fmt.Errorf("find own cgroup: %w", err)
	}
	defer f.Close()
	v1 := map[string]string{}
	v2 := "/"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			v2 = parts[2]
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			v1[ctrl] = parts[2]
		}
	}
	return v1, v2, sc.Err()
}
