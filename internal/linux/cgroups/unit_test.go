package cgroups

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestInnerPath(t *testing.T) {
	for _, tc := range []struct {
		path, id, want, err string
	}{
		{"", "ct1", "ct1", ""},
		{"", "", "", "needs a container id"},
		{"/a/b/c", "x", "/a/b/c", ""},
		{"/a/../b/", "x", "/b", ""},
		{"rel/ct", "x", "rel/ct", ""},
		{"../../escape", "x", "escape", ""},
		{"a/../..", "x", "", "own cgroup"},
		{"/", "x", "", "root cgroup"},
		{"/a\x00b", "x", "", "NUL"},
	} {
		got, err := innerPath(tc.path, tc.id)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("innerPath(%q) err = %v, want %q", tc.path, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("innerPath(%q, %q) = %q, %v; want %q", tc.path, tc.id, got, err, tc.want)
		}
	}
}

const selfCgroupV1 = `12:pids:/
11:cpu,cpuacct:/user.slice
4:memory:/process_api/abc
3:devices:/
1:name=systemd:/init.scope
0::/init.scope
`

func TestNewPathsV1(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cpu", "cpuacct", "memory", "devices", "pids", "systemd", "unified"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self := filepath.Join(t.TempDir(), "cgroup")
	if err := os.WriteFile(self, []byte(selfCgroupV1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want map[string]string
	}{
		{"/abs/ct", map[string]string{
			"cpu": "/cpu/abs/ct", "cpuacct": "/cpuacct/abs/ct", "memory": "/memory/abs/ct", "devices": "/devices/abs/ct",
			"pids": "/pids/abs/ct", "name=systemd": "/systemd/abs/ct", "": "/unified/abs/ct",
		}},
		// Relative: below the runtime's own cgroup in each hierarchy.
		{"", map[string]string{
			"cpu": "/cpu/user.slice/ct1", "cpuacct": "/cpuacct/user.slice/ct1", "memory": "/memory/process_api/abc/ct1",
			"devices": "/devices/ct1", "pids": "/pids/ct1", "name=systemd": "/systemd/init.scope/ct1", "": "/unified/init.scope/ct1",
		}},
	} {
		m, err := New(tc.path, "ct1", WithRoot(root), WithMode(ModeHybrid), fakeMounts(t, root), WithSelfCgroup(self))
		if err != nil {
			t.Fatal(err)
		}
		got := m.Paths()
		if len(got) != len(tc.want) {
			t.Errorf("New(%q) paths = %v, want %v", tc.path, got, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != root+v {
				t.Errorf("New(%q) %q = %q, want %q", tc.path, k, got[k], root+v)
			}
		}
	}
	// Without a devices hierarchy a v1 manager refuses to exist.
	if err := os.Remove(filepath.Join(root, "devices")); err != nil {
		t.Fatal(err)
	}
	if _, err := New("/x", "x", WithRoot(root), WithMode(ModeLegacy), fakeMounts(t, root), WithSelfCgroup(self)); err == nil || !strings.Contains(err.Error(), "devices controller") {
		t.Errorf("New without devices: %v", err)
	}
}

// TestV1HierarchiesFromMountinfo: v1 hierarchies are what the mount table
// says, not what directories exist at the root (issue 15: a stray empty
// /sys/fs/cgroup/hugetlb on the tmpfs is not a hierarchy; runc 1.1 leaves
// such directories behind). Co-mounted controllers share one directory, a
// mount of a sub-cgroup (a container without a cgroup namespace) is
// resolved against its root, and mounts outside the cgroup root or of
// another filesystem type do not count.
func TestV1HierarchiesFromMountinfo(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cpu,cpuacct", "memory", "devices", "pids", "hugetlb", "net_cls", "systemd", "unified", "freezer"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, alias := range []string{"cpu", "cpuacct"} {
		if err := os.Symlink("cpu,cpuacct", filepath.Join(root, alias)); err != nil {
			t.Fatal(err)
		}
	}
	mi := strings.Join([]string{
		"30 22 0:27 / " + root + " rw,relatime - tmpfs tmpfs rw,mode=755",
		"31 30 0:28 / " + root + "/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct",
		"32 30 0:29 /docker/abc " + root + "/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory",
		"33 30 0:30 / " + root + "/devices rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,devices",
		"34 30 0:31 / " + root + "/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids",
		// The named hierarchy, with an optional field list of two.
		"35 30 0:32 / " + root + "/systemd rw,nosuid,nodev,noexec,relatime shared:13 master:1 - cgroup cgroup rw,xattr,name=systemd",
		"36 30 0:33 / " + root + "/unified rw,nosuid,nodev,noexec,relatime shared:14 - cgroup2 cgroup2 rw",
		// A second mount of the pids hierarchy: the first one wins.
		"37 22 0:31 / " + root + "/pids-again rw - cgroup cgroup rw,pids",
		// freezer mounted outside the root: not a hierarchy of this root.
		"38 22 0:34 / /elsewhere/freezer rw - cgroup cgroup rw,freezer",
		// A tmpfs on the net_cls directory is not a cgroup mount.
		"39 30 0:35 / " + root + "/net_cls rw - tmpfs tmpfs rw",
	}, "\n") + "\n"
	mip := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(mip, []byte(mi), 0o644); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(t.TempDir(), "cgroup")
	if err := os.WriteFile(self, []byte("4:memory:/docker/abc\n3:pids:/\n2:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want map[string]string
	}{
		{"/abs/ct", map[string]string{
			"cpu": "/cpu,cpuacct/abs/ct", "cpuacct": "/cpu,cpuacct/abs/ct", "memory": "/memory/abs/ct",
			"devices": "/devices/abs/ct", "pids": "/pids/abs/ct", "name=systemd": "/systemd/abs/ct", "": "/unified/abs/ct",
		}},
		// Relative: the runtime's memory cgroup /docker/abc is the root of
		// the memory mount, so the container goes right below it.
		{"", map[string]string{
			"cpu": "/cpu,cpuacct/ct1", "cpuacct": "/cpu,cpuacct/ct1", "memory": "/memory/ct1",
			"devices": "/devices/ct1", "pids": "/pids/ct1", "name=systemd": "/systemd/ct1", "": "/unified/ct1",
		}},
	} {
		m, err := New(tc.path, "ct1", WithRoot(root), WithMode(ModeHybrid), WithMountinfo(mip), WithSelfCgroup(self))
		if err != nil {
			t.Fatal(err)
		}
		got := m.Paths()
		for k, v := range got {
			if tc.want[k] == "" {
				t.Errorf("New(%q): unexpected hierarchy %q at %s", tc.path, k, v)
			}
		}
		for k, v := range tc.want {
			if got[k] != root+v {
				t.Errorf("New(%q) %q = %q, want %q", tc.path, k, got[k], root+v)
			}
		}
	}
	if _, err := New("/x", "x", WithRoot(root), WithMode(ModeLegacy), WithMountinfo(filepath.Join(root, "missing"))); err == nil || !strings.Contains(err.Error(), "find cgroup v1 hierarchies") {
		t.Errorf("New without a mount table: %v", err)
	}
}

func TestNewPathsV2(t *testing.T) {
	root := t.TempDir()
	self := filepath.Join(t.TempDir(), "cgroup")
	if err := os.WriteFile(self, []byte("0::/user.slice/session-1.scope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/machine/ct": "/machine/ct",
		// Relative: below the parent of the runtime's (populated) cgroup.
		"":        "/user.slice/ct1",
		"sub/ct1": "/user.slice/sub/ct1",
	} {
		m, err := New(path, "ct1", WithRoot(root), WithMode(ModeUnified), WithSelfCgroup(self))
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Path(""); got != root+want {
			t.Errorf("New(%q) = %q, want %q", path, got, root+want)
		}
		if m.Path("memory") != "" || len(m.Paths()) != 1 || m.Mode() != ModeUnified {
			t.Errorf("New(%q): v2 manager paths %v mode %v", path, m.Paths(), m.Mode())
		}
	}
}

func TestLoad(t *testing.T) {
	m, err := Load(map[string]string{"": "/sys/fs/cgroup/ct"}, WithMode(ModeUnified))
	if err != nil || m.Path("") != "/sys/fs/cgroup/ct" {
		t.Fatalf("Load v2 = %v, %v", m, err)
	}
	m, err = Load(map[string]string{"memory": "/sys/fs/cgroup/memory/ct", "devices": "/sys/fs/cgroup/devices/ct"}, WithMode(ModeLegacy))
	if err != nil || m.Path("memory") != "/sys/fs/cgroup/memory/ct" {
		t.Fatalf("Load v1 = %v, %v", m, err)
	}
	for _, bad := range []map[string]string{
		nil,
		{"memory": "relative/ct"},
		{"memory": "/a/../b"},
		{"memory": "/etc"},
		{"memory": "/sys/fs/cgroup"},
	} {
		if _, err := Load(bad, WithMode(ModeLegacy)); err == nil {
			t.Errorf("Load(%v) succeeded", bad)
		}
	}
	if _, err := Load(map[string]string{"memory": "/x"}, WithMode(ModeUnified)); err == nil {
		t.Error("Load of v1 paths on a unified host succeeded")
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 0, 1: 1, 2: 1, 512: 59, 1024: 100, 2048: 174, 262144: 10000, 1 << 20: 10000} {
		if got := SharesToWeight(shares); got != want {
			t.Errorf("SharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestBlkioWeightToIOWeight(t *testing.T) {
	for w, want := range map[uint16]uint64{0: 0, 10: 1, 500: 4950, 1000: 10000} {
		if got := BlkioWeightToIOWeight(w); got != want {
			t.Errorf("BlkioWeightToIOWeight(%d) = %d, want %d", w, got, want)
		}
	}
}

func TestSwapToV2(t *testing.T) {
	for _, tc := range []struct {
		swap, mem, want int64
		err             string
	}{
		{0, 0, 0, ""},
		{0, -1, -1, ""},
		{-1, 100, -1, ""},
		{300, 100, 200, ""},
		{100, 100, 0, ""},
		{100, 0, 0, "without memory limit"},
		{100, -1, 0, "without memory limit"},
		{50, 100, 0, "should be >= memory limit"},
	} {
		got, err := SwapToV2(tc.swap, tc.mem)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("SwapToV2(%d, %d) err = %v, want %q", tc.swap, tc.mem, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("SwapToV2(%d, %d) = %d, %v; want %d", tc.swap, tc.mem, got, err, tc.want)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	got, err := parseCPUList("0-2,5,7-8\n")
	if err != nil || len(got) != 6 || got[3] != 5 || got[5] != 8 {
		t.Errorf("parseCPUList = %v, %v", got, err)
	}
	for _, bad := range []string{"a", "3-1", "1,,2", "1-"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) succeeded", bad)
		}
	}
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStatsV1Fake reads a seeded v1 tree and checks the exact JSON, which must
// use runc's keys and omissions (compare runc-samples/events-stats-sample.json).
func TestStatsV1Fake(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root+"/cpu/ct", map[string]string{"cpu.stat": "nr_periods 10\nnr_throttled 2\nthrottled_time 3000\n"})
	writeTree(t, root+"/cpuacct/ct", map[string]string{
		"cpuacct.usage": "79262011\n", "cpuacct.usage_percpu": "74422584 4839427 \n",
		"cpuacct.stat": "user 2\nsystem 5\n", "cpuacct.usage_all": "cpu user system\n0 24000000 48000000\n1 0 4000000\n",
	})
	writeTree(t, root+"/cpuset/ct", map[string]string{
		"cpuset.cpus": "0-1\n", "cpuset.mems": "0\n", "cpuset.sched_load_balance": "1\n", "cpuset.sched_relax_domain_level": "-1\n",
	})
	writeTree(t, root+"/memory/ct", map[string]string{
		"memory.stat":           "cache 8192\nrss 61440\n",
		"memory.limit_in_bytes": "9223372036854771712\n", "memory.usage_in_bytes": "454656\n", "memory.max_usage_in_bytes": "3047424\n", "memory.failcnt": "0\n",
		"memory.kmem.tcp.limit_in_bytes": "9223372036854771712\n", "memory.kmem.tcp.usage_in_bytes": "0\n", "memory.kmem.tcp.max_usage_in_bytes": "0\n", "memory.kmem.tcp.failcnt": "0\n",
	})
	writeTree(t, root+"/pids/ct", map[string]string{"pids.current": "3\n", "pids.max": "max\n"})
	writeTree(t, root+"/blkio/ct", map[string]string{
		"blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
		"blkio.throttle.io_serviced_recursive":      "8:0 Read 1\nTotal 1\n",
	})
	writeTree(t, root+"/devices/ct", nil)
	m, err := New("/ct", "x", WithRoot(root), WithMode(ModeLegacy), fakeMounts(t, root))
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cpu":{"usage":{"total":79262011,"percpu":[74422584,4839427],"percpu_kernel":[48000000,4000000],"percpu_user":[24000000,0],"kernel":50000000,"user":20000000},"throttling":{"periods":10,"throttledPeriods":2,"throttledTime":3000}},` +
		`"cpuset":{"cpus":[0,1],"cpu_exclusive":0,"mems":[0],"mem_hardwall":0,"mem_exclusive":0,"memory_migrate":0,"memory_spread_page":0,"memory_spread_slab":0,"memory_pressure":0,"sched_load_balance":1,"sched_relax_domain_level":-1},` +
		`"memory":{"cache":8192,"usage":{"limit":9223372036854771712,"usage":454656,"max":3047424,"failcnt":0},"swap":{"limit":0,"failcnt":0},"kernel":{"limit":0,"failcnt":0},"kernelTCP":{"limit":9223372036854771712,"failcnt":0},"raw":{"cache":8192,"rss":61440}},` +
		`"pids":{"current":3},` +
		`"blkio":{"ioServiceBytesRecursive":[{"major":8,"op":"Read","value":4096},{"major":8,"op":"Write"}],"ioServicedRecursive":[{"major":8,"op":"Read","value":1}]},` +
		`"hugetlb":{},"intel_rdt":{},"network_interfaces":null}`
	if string(b) != want {
		t.Errorf("stats JSON:\n%s\nwant:\n%s", b, want)
	}
}

func TestStatsV2Fake(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"cgroup.controllers": "cpu memory pids io\n"})
	writeTree(t, root+"/ct", map[string]string{
		"cgroup.controllers": "cpu memory pids io\n",
		"cpu.stat":           "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 20\n",
		"cpu.pressure":       "some avg10=1.50 avg60=0.00 avg300=0.00 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000\n",
		"memory.stat":        "anon 4096\nfile 8192\n",
		"memory.current":     "12288\n", "memory.max": "max\n", "memory.peak": "20480\n", "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
		"memory.swap.current": "4096\n", "memory.swap.max": "1048576\n", "memory.swap.events": "max 0\n",
		"pids.current": "2\n", "pids.max": "20\n",
		"io.stat":             "8:16 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
		"hugetlb.2MB.current": "0\n", "hugetlb.2MB.events": "max 0\n",
	})
	m, err := New("/ct", "x", WithRoot(root), WithMode(ModeUnified))
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Memory.Usage.Limit != math.MaxUint64 || st.Memory.Swap.Limit != math.MaxUint64 {
		t.Errorf("unlimited memory should read as MaxUint64: %+v", st.Memory)
	}
	b, _ := json.Marshal(st)
	want := `{"cpu":{"usage":{"total":1500000,"kernel":500000,"user":1000000},"throttling":{"periods":4,"throttledPeriods":1,"throttledTime":20000},` +
		`"psi":{"some":{"avg10":1.5,"avg60":0,"avg300":0,"total":1234},"full":{"avg10":0,"avg60":0,"avg300":0,"total":1000}}},` +
		`"cpuset":{"cpu_exclusive":0,"mem_hardwall":0,"mem_exclusive":0,"memory_migrate":0,"memory_spread_page":0,"memory_spread_slab":0,"memory_pressure":0,"sched_load_balance":0,"sched_relax_domain_level":0},` +
		`"memory":{"cache":8192,"usage":{"limit":18446744073709551615,"usage":12288,"max":20480,"failcnt":3},"swap":{"limit":18446744073709551615,"usage":16384,"failcnt":0},"kernel":{"limit":0,"failcnt":0},"kernelTCP":{"limit":0,"failcnt":0},"raw":{"anon":4096,"file":8192}},` +
		`"pids":{"current":2,"limit":20},` +
		`"blkio":{"ioServiceBytesRecursive":[{"major":8,"minor":16,"op":"Read","value":4096},{"major":8,"minor":16,"op":"Write","value":8192}],"ioServicedRecursive":[{"major":8,"minor":16,"op":"Read","value":1},{"major":8,"minor":16,"op":"Write","value":2}]},` +
		`"hugetlb":{"2MB":{"failcnt":0}},"intel_rdt":{},"network_interfaces":null}`
	if string(b) != want {
		t.Errorf("stats JSON:\n%s\nwant:\n%s", b, want)
	}
	n, err := m.OOMCount()
	if err != nil || n != 1 {
		t.Errorf("OOMCount = %d, %v", n, err)
	}
}

func TestEventJSON(t *testing.T) {
	b, _ := json.Marshal(Event{Type: "oom", ID: "ct1"})
	if string(b) != `{"type":"oom","id":"ct1"}` {
		t.Errorf("oom event = %s", b)
	}
}

func TestDisabled(t *testing.T) {
	m := Disabled()
	if err := m.Apply(1); err != nil {
		t.Error(err)
	}
	if err := m.Set(&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}); err != nil {
		t.Errorf("Set(devices only) = %v", err)
	}
	// Docker's config for a container without limits sets nothing.
	docker := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{DisableOOMKiller: pbool(false)}, CPU: &specs.LinuxCPU{Shares: pu64(0)}, BlockIO: &specs.LinuxBlockIO{Weight: u16(0)},
	}
	if err := m.Set(docker); err != nil {
		t.Errorf("Set(docker's unset values) = %v", err)
	}
	for name, r := range map[string]*specs.LinuxResources{
		"pids":    {Pids: &specs.LinuxPids{Limit: p64(3)}},
		"shares":  {CPU: &specs.LinuxCPU{Shares: pu64(2)}},
		"cpuset":  {CPU: &specs.LinuxCPU{Cpus: "0"}},
		"memory":  {Memory: &specs.LinuxMemory{Limit: p64(-1)}},
		"weight":  {BlockIO: &specs.LinuxBlockIO{Weight: u16(100)}},
		"unified": {Unified: map[string]string{"memory.high": "1"}},
	} {
		if err := m.Set(r); !errors.Is(err, ErrDisabled) {
			t.Errorf("Set(%s limit) = %v, want ErrDisabled", name, err)
		}
	}
	if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: p64(3)}}); !errors.Is(err, ErrDisabled) {
		t.Errorf("Set(limits) = %v, want ErrDisabled", err)
	}
	if _, err := m.Pids(); !errors.Is(err, ErrDisabled) {
		t.Errorf("Pids = %v", err)
	}
	if err := m.Freeze(); !errors.Is(err, ErrDisabled) {
		t.Errorf("Freeze = %v", err)
	}
}

func TestJoinSub(t *testing.T) {
	f := newFakeV1(t, "ct")
	for _, d := range []string{"memory/ct/sub", "cpu/ct/sub", "cpu/ct/other"} {
		seed(t, f, filepath.Join(f.root, d), map[string]string{"cgroup.procs": ""})
	}
	m, err := New("/ct", "x", WithRoot(f.root), WithMode(ModeLegacy), fakeMounts(t, f.root))
	if err != nil {
		t.Fatal(err)
	}
	if err := JoinSub(m, 7, []string{"memory:sub", "cpu:../../other"}); err != nil {
		t.Fatal(err)
	}
	got := f.diff(t)
	for _, want := range []string{"memory/ct/sub/cgroup.procs", "cpu/ct/other/cgroup.procs", "pids/ct/cgroup.procs", "devices/ct/cgroup.procs"} {
		if got[want] != "7" {
			t.Errorf("%s = %q, want 7 (all writes: %v)", want, got[want], got)
		}
	}
	if err := JoinSub(m, 7, []string{"missing"}); !errors.Is(err, ErrNotExist) {
		t.Errorf("JoinSub(missing) = %v, want ErrNotExist", err)
	}
	if err := JoinSub(m, 7, []string{"nosuchctrl:sub"}); err == nil || !strings.Contains(err.Error(), "not managed") {
		t.Errorf("JoinSub(bad controller) = %v", err)
	}
	v2, err := New("/ct", "x", WithRoot(t.TempDir()), WithMode(ModeUnified))
	if err != nil {
		t.Fatal(err)
	}
	if err := JoinSub(v2, 7, []string{"memory:sub"}); err == nil || !strings.Contains(err.Error(), "single hierarchy") {
		t.Errorf("JoinSub(v2 with controller) = %v", err)
	}
}

// TestOOMEventsV2Fake drives the v2 watcher through inotify on a fake tree:
// one event per oom_kill increase, and the channel closes when the cgroup
// empties after having had processes.
func TestOOMEventsV2Fake(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"cgroup.controllers": "memory\n"})
	dir := root + "/ct"
	writeTree(t, dir, map[string]string{"cgroup.controllers": "memory\n", "memory.events": "oom 0\noom_kill 0\n", "cgroup.events": "populated 1\nfrozen 0\n"})
	m, err := New("/ct", "x", WithRoot(root), WithMode(ModeUnified))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := m.OOMEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/memory.events", []byte("oom 2\noom_kill 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case _, ok := <-ev:
			if !ok {
				t.Fatalf("closed after %d events, want 2", i)
			}
		case <-ctx.Done():
			t.Fatalf("got %d events, want 2", i)
		}
	}
	if err := os.WriteFile(dir+"/cgroup.events", []byte("populated 0\nfrozen 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ev:
		if ok {
			t.Fatal("extra OOM event")
		}
	case <-ctx.Done():
		t.Fatal("channel not closed after the cgroup emptied")
	}

	// Cancelling the context closes the channel too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	if err := os.WriteFile(dir+"/cgroup.events", []byte("populated 1\nfrozen 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ev2, err := m.OOMEvents(ctx2)
	if err != nil {
		t.Fatal(err)
	}
	cancel2()
	select {
	case _, ok := <-ev2:
		if ok {
			t.Fatal("event after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

// TestV1UnsetValuesNeedNoController: Docker sends cpu.shares 0, blockIO
// weight 0 and memory.disableOOMKiller false for every container; on a
// host without those hierarchies they must not fail the container (runc
// writes nothing for them), while a real limit still names the missing
// controller.
func TestV1UnsetValuesNeedNoController(t *testing.T) {
	f := newFakeV1(t, "ct")
	for _, c := range []string{"cpu", "blkio", "memory"} {
		if err := os.RemoveAll(filepath.Join(f.root, c)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := New("/ct", "x", WithRoot(f.root), WithMode(ModeLegacy), fakeMounts(t, f.root))
	if err != nil {
		t.Fatal(err)
	}
	docker := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{DisableOOMKiller: pbool(false), Swappiness: pu64(math.MaxUint64)},
		CPU:    &specs.LinuxCPU{Shares: pu64(0)}, BlockIO: &specs.LinuxBlockIO{Weight: u16(0)},
	}
	if err := m.Set(docker); err != nil {
		t.Fatalf("Set(docker's unset values) without cpu, blkio, memory hierarchies: %v", err)
	}
	if err := m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: pu64(512)}}); err == nil || !strings.Contains(err.Error(), "the cpu controller is not mounted") {
		t.Errorf("Set(shares 512) without cpu: %v", err)
	}
}

// TestCheckEmpty: a create must refuse a cgroup that already holds
// processes (on any v1 hierarchy, sub-cgroups included, each pid counted
// once) or is frozen, with runc's messages; a missing or empty one passes.
func TestCheckEmpty(t *testing.T) {
	t.Run("v1", func(t *testing.T) {
		root := t.TempDir()
		for _, c := range []string{"cpu", "memory", "devices", "freezer", "pids"} {
			writeTree(t, filepath.Join(root, c), nil)
		}
		m, err := New("/shared", "x", WithRoot(root), WithMode(ModeLegacy), fakeMounts(t, root))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.CheckEmpty(); err != nil {
			t.Fatalf("missing cgroup: %v", err)
		}
		for _, c := range []string{"cpu", "memory", "devices", "freezer", "pids"} {
			writeTree(t, filepath.Join(root, c, "shared"), map[string]string{"cgroup.procs": "", "freezer.state": "THAWED\n"})
		}
		if err := m.CheckEmpty(); err != nil {
			t.Fatalf("empty cgroup: %v", err)
		}
		// Pid 42 in two hierarchies, 43 only in a sub-cgroup of memory.
		writeTree(t, filepath.Join(root, "cpu", "shared"), map[string]string{"cgroup.procs": "42\n"})
		writeTree(t, filepath.Join(root, "pids", "shared"), map[string]string{"cgroup.procs": "42\n"})
		writeTree(t, filepath.Join(root, "memory", "shared", "sub"), map[string]string{"cgroup.procs": "43\n"})
		if err := m.CheckEmpty(); err == nil || err.Error() != "container's cgroup is not empty: 2 process(es) found" {
			t.Fatalf("busy cgroup: %v", err)
		}
		for _, c := range []string{"cpu", "pids"} {
			writeTree(t, filepath.Join(root, c, "shared"), map[string]string{"cgroup.procs": ""})
		}
		os.RemoveAll(filepath.Join(root, "memory", "shared", "sub"))
		writeTree(t, filepath.Join(root, "freezer", "shared"), map[string]string{"freezer.state": "FROZEN\n"})
		if err := m.CheckEmpty(); err == nil || err.Error() != "container's cgroup unexpectedly frozen" {
			t.Fatalf("frozen cgroup: %v", err)
		}
	})
	t.Run("v2", func(t *testing.T) {
		root := t.TempDir()
		m, err := New("/shared", "x", WithRoot(root), WithMode(ModeUnified))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.CheckEmpty(); err != nil {
			t.Fatalf("missing cgroup: %v", err)
		}
		dir := filepath.Join(root, "shared")
		writeTree(t, dir, map[string]string{"cgroup.procs": "", "cgroup.freeze": "0\n", "cgroup.events": "populated 0\nfrozen 0\n"})
		if err := m.CheckEmpty(); err != nil {
			t.Fatalf("empty cgroup: %v", err)
		}
		writeTree(t, filepath.Join(dir, "leaf"), map[string]string{"cgroup.procs": "7\n8\n"})
		if err := m.CheckEmpty(); err == nil || err.Error() != "container's cgroup is not empty: 2 process(es) found" {
			t.Fatalf("busy cgroup: %v", err)
		}
		os.RemoveAll(filepath.Join(dir, "leaf"))
		writeTree(t, dir, map[string]string{"cgroup.freeze": "1\n", "cgroup.events": "populated 0\nfrozen 1\n"})
		if err := m.CheckEmpty(); err == nil || err.Error() != "container's cgroup unexpectedly frozen" {
			t.Fatalf("frozen cgroup: %v", err)
		}
	})
	if err := Disabled().CheckEmpty(); err != nil {
		t.Errorf("disabled manager: %v", err)
	}
}
