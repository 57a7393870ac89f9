package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// fakeFS is a cgroup tree in a temporary directory. Every control file a
// driver may touch is seeded (cgroupfs creates them with the directory; the
// drivers never create files), so a write to any other name fails with ENOENT
// like on a kernel without that knob, and diff reports exactly what was
// written after seeding.
type fakeFS struct {
	root  string
	seeds map[string]string // abs path -> seeded content
}

// v1 and v2 leaf files with their seeded content. Files that the drivers
// read back right after writing (cpu.shares) are seeded empty so the read
// sees the write.
var fakeV1Files = map[string]map[string]string{
	"memory": {
		"cgroup.procs": "", "memory.limit_in_bytes": "9223372036854771712\n", "memory.memsw.limit_in_bytes": "9223372036854771712\n",
		"memory.soft_limit_in_bytes": "", "memory.kmem.tcp.limit_in_bytes": "", "memory.oom_control": "", "memory.swappiness": "",
		"memory.usage_in_bytes": "1048576\n", "memory.max_usage_in_bytes": "2097152\n",
	},
	"cpu": {
		"cgroup.procs": "", "cpu.shares": "", "cpu.cfs_period_us": "", "cpu.cfs_quota_us": "", "cpu.cfs_burst_us": "",
		"cpu.rt_period_us": "", "cpu.rt_runtime_us": "", "cpu.idle": "",
	},
	"cpuacct": {"cgroup.procs": ""},
	"cpuset":  {"cgroup.procs": "", "cpuset.cpus": "", "cpuset.mems": ""},
	"devices": {"cgroup.procs": "", "devices.allow": "", "devices.deny": ""},
	"freezer": {"cgroup.procs": "", "freezer.state": ""},
	"blkio": {
		"cgroup.procs": "", "blkio.bfq.weight": "", "blkio.bfq.weight_device": "",
		"blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
		"blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": "",
	},
	"pids":     {"cgroup.procs": "", "pids.max": ""},
	"hugetlb":  {"cgroup.procs": "", "hugetlb.2MB.limit_in_bytes": "", "hugetlb.2MB.rsvd.limit_in_bytes": ""},
	"net_cls":  {"cgroup.procs": "", "net_cls.classid": ""},
	"net_prio": {"cgroup.procs": "", "net_prio.ifpriomap": ""},
	"rdma":     {"cgroup.procs": "", "rdma.max": ""},
}

var fakeV2Files = map[string]string{
	"cgroup.procs": "", "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma\n", "cgroup.subtree_control": "",
	"cgroup.freeze": "", "cpu.weight": "", "cpu.max": "", "cpu.max.burst": "", "cpu.idle": "",
	"cpuset.cpus": "", "cpuset.mems": "", "memory.max": "", "memory.low": "", "memory.high": "", "memory.swap.max": "",
	"memory.current": "1048576\n", "pids.max": "", "io.bfq.weight": "", "io.max": "",
	"hugetlb.2MB.max": "", "hugetlb.2MB.rsvd.max": "", "rdma.max": "",
}

func seed(t *testing.T, f *fakeFS, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		f.seeds[p] = content
	}
}

// newFakeV1 builds root/<controller>/ with parent files and a leaf at
// root/<controller>/<inner> for every controller, plus the hybrid unified dir.
func newFakeV1(t *testing.T, inner string) *fakeFS {
	f := &fakeFS{root: fakeRoot(t), seeds: map[string]string{}}
	for ctrl, files := range fakeV1Files {
		top := filepath.Join(f.root, ctrl)
		parent := map[string]string{"cgroup.procs": ""}
		if ctrl == "cpuset" {
			parent = map[string]string{"cpuset.cpus": "0-1\n", "cpuset.mems": "0\n"}
		}
		seed(t, f, top, parent)
		seed(t, f, filepath.Join(top, inner), files)
	}
	seed(t, f, filepath.Join(f.root, "systemd", inner), map[string]string{"cgroup.procs": ""})
	return f
}

// fakeMounts writes a mount table in which every top-level directory of
// root but "unified" is a mounted v1 hierarchy named after it ("systemd" as
// the named hierarchy name=systemd), and returns the option pointing New at
// it. Directories created after the call are not mounted hierarchies.
func fakeMounts(t *testing.T, root string) Option {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("25 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n")
	b.WriteString("30 25 0:27 / " + root + " rw,relatime - tmpfs tmpfs rw,mode=755\n")
	for i, e := range ents {
		if !e.IsDir() || e.Name() == "unified" {
			continue
		}
		opts := "rw," + e.Name()
		if e.Name() == "systemd" {
			opts = "rw,xattr,name=systemd"
		}
		fmt.Fprintf(&b, "%d 30 0:%d / %s rw,nosuid,nodev,noexec,relatime shared:%d - cgroup cgroup %s\n", 31+i, 28+i, filepath.Join(root, e.Name()), 9+i, opts)
	}
	p := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return WithMountinfo(p)
}

func newFakeV2(t *testing.T, inner string) *fakeFS {
	f := &fakeFS{root: fakeRoot(t), seeds: map[string]string{}}
	seed(t, f, f.root, map[string]string{"cgroup.controllers": fakeV2Files["cgroup.controllers"], "cgroup.subtree_control": "", "cgroup.procs": ""})
	seed(t, f, filepath.Join(f.root, inner), fakeV2Files)
	return f
}

// fakeRoot is a fresh directory for a fake tree, on /dev/shm when there is
// one: a tree is ~100 small files per case, and on a disk-backed /tmp the
// suite spends seconds creating and removing them.
func fakeRoot(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "berth-cgfake-"); err == nil {
			t.Cleanup(func() {
				if err := os.RemoveAll(d); err != nil {
					t.Error(err)
				}
			})
			return d
		}
	}
	return t.TempDir()
}

// diff returns what was written to each file since seeding, keyed by path
// relative to the root ("memory/ct/memory.limit_in_bytes", "ct/cpu.max").
func (f *fakeFS) diff(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(f.root, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s, ok := f.seeds[p]
		if !ok {
			t.Errorf("file %s was created by the driver", p)
			return nil
		}
		if !strings.HasPrefix(string(b), s) {
			t.Errorf("file %s lost its seeded content", p)
			return nil
		}
		if w := string(b)[len(s):]; w != "" {
			rel, _ := filepath.Rel(f.root, p)
			out[rel] = w
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fakeFS) selfCgroup(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "cgroup")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// compareWrites fails on missing and on unexpected writes.
func compareWrites(t *testing.T, got, want map[string]string) {
	t.Helper()
	var names []string
	for k := range got {
		names = append(names, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !wok:
			t.Errorf("unexpected write to %s: %q", k, g)
		case !gok:
			t.Errorf("missing write to %s: want %q", k, w)
		case g != w:
			t.Errorf("%s = %q, want %q", k, g, w)
		}
	}
}
