// Package checks is the systemd guest's parity suite (see test/cgroupv2):
// every check drives an OCI runtime only through runc's command line, so the
// same checks run on berth and on runc, with and without the systemd cgroup
// driver, and the guest's table compares them. It runs in the guest only:
// CHECK_RUNTIME names the runtime (unset: every test skips).
//
//	CHECK_RUNTIME  the runtime binary (berth installed as "runc", or runc)
//	CHECK_NAME     berth or runc (a few checks are berth's own: PSI)
//	CHECK_SYSTEMD  1: --systemd-cgroup, cgroupsPath "system.slice:checks:<id>"
//	CHECK_IMAGE    a docker-archive for the containerd and podman checks
//	CHECK_SUITE    the runtime-tools tree (runtimetest, rootfs, validation/)
package checks

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/testutil"
)

var (
	runtimeBin = os.Getenv("CHECK_RUNTIME")
	runtimeID  = os.Getenv("CHECK_NAME")
	systemd    = os.Getenv("CHECK_SYSTEMD") == "1"
)

const cgroupRoot = "/sys/fs/cgroup"

func need(t *testing.T) {
	t.Helper()
	if runtimeBin == "" {
		t.Skip("CHECK_RUNTIME is not set: the checks run in the systemd guest (test/cgroupv2)")
	}
}

func needSystemd(t *testing.T) {
	t.Helper()
	need(t)
	if !systemd {
		t.Skip("a systemd driver check")
	}
}

// ct is one container of a check.
type ct struct {
	t      *testing.T
	id     string
	bundle string
	root   string
}

var seq int

// newCT makes a busybox bundle with the runtime's own `spec` defaults,
// mutated by mut, and a cgroupsPath for the driver under test.
func newCT(t *testing.T, mut func(*specs.Spec), args ...string) *ct {
	t.Helper()
	need(t)
	seq++
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	c := &ct{t: t, id: fmt.Sprintf("%s-%s-%d", runtimeID, name, seq), root: "/run/checks-" + runtimeID}
	if len(c.id) > 60 {
		c.id = c.id[:60]
	}
	c.bundle = t.TempDir()
	testutil.BusyboxRootfs(t, filepath.Join(c.bundle, "rootfs"))
	out, err := exec.Command(runtimeBin, "spec", "--bundle", c.bundle).CombinedOutput()
	if err != nil {
		t.Fatalf("%s spec: %v\n%s", runtimeBin, err, out)
	}
	var s specs.Spec
	b, _ := os.ReadFile(filepath.Join(c.bundle, "config.json"))
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	s.Process.Terminal = false
	s.Root.Readonly = false
	s.Process.Args = []string{"sleep", "1000"}
	if len(args) > 0 {
		s.Process.Args = args
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	if systemd {
		s.Linux.CgroupsPath = "system.slice:checks:" + c.id
	} else {
		s.Linux.CgroupsPath = "/checks/" + c.id
	}
	if mut != nil {
		mut(&s)
	}
	testutil.WriteSpec(t, c.bundle, &s)
	t.Cleanup(func() {
		c.rt("delete", "--force", c.id)
		if !systemd {
			os.Remove(filepath.Join(cgroupRoot, "checks", c.id))
		}
	})
	return c
}

// rt runs the runtime with the container's state root and the driver flag.
func (c *ct) rt(args ...string) (string, error) {
	return c.rtIn(nil, args...)
}

func (c *ct) rtIn(stdin *os.File, args ...string) (string, error) {
	global := []string{"--root", c.root}
	if systemd {
		global = append(global, "--systemd-cgroup")
	}
	cmd := exec.Command(runtimeBin, append(global, args...)...)
	cmd.Dir = c.bundle
	if stdin != nil {
		cmd.Stdin = stdin
	}
	return runCmd(c.t, cmd, 3*time.Minute)
}

// runCmd runs cmd with its output in a file, not a pipe: a container's init
// (create, run -d, exec -d) inherits the runtime's stdio, and a pipe would
// keep Wait waiting for as long as the container lives.
func runCmd(t *testing.T, cmd *exec.Cmd, limit time.Duration) (string, error) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		return "", err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(limit):
		cmd.Process.Kill()
		err = fmt.Errorf("%v timed out after %v", cmd.Args, limit)
		<-done
	}
	b, _ := os.ReadFile(f.Name())
	return string(b), err
}

func (c *ct) must(args ...string) string {
	c.t.Helper()
	out, err := c.rt(args...)
	if err != nil {
		c.t.Fatalf("%s %v: %v\n%s", runtimeID, args, err, out)
	}
	return out
}

// start creates and starts the container.
func (c *ct) start() {
	c.t.Helper()
	c.must("create", "--bundle", c.bundle, c.id)
	c.must("start", c.id)
}

type ociState struct {
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

func (c *ct) state() ociState {
	c.t.Helper()
	var s ociState
	if err := json.Unmarshal([]byte(c.must("state", c.id)), &s); err != nil {
		c.t.Fatal(err)
	}
	return s
}

// cgroup is the v2 path of pid ("/system.slice/checks-x.scope").
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p
		}
	}
	t.Fatalf("no v2 line in /proc/%d/cgroup: %q", pid, b)
	return ""
}

// wantCgroup is where the driver under test puts the container.
func (c *ct) wantCgroup() string {
	if systemd {
		return "/system.slice/" + c.unit()
	}
	return "/checks/" + c.id
}

func (c *ct) unit() string { return "checks-" + c.id + ".scope" }

// v1Host: the guest booted with systemd's hybrid hierarchy (v1
// controllers, systemd's own tree on cgroup2 at /sys/fs/cgroup/unified).
var v1Host = func() bool {
	var st syscall.Statfs_t
	return syscall.Statfs(cgroupRoot, &st) == nil && st.Type != 0x63677270 // CGROUP2_SUPER_MAGIC
}()

// needV2 skips a check of cgroup v2 only files on a v1 host.
func needV2(t *testing.T) {
	t.Helper()
	if v1Host {
		t.Skip("a cgroup v2 check")
	}
}

// dir is the container's cgroup, from its init: the v2 directory, or on a
// v1 host "v1:<path>", which read maps to the v1 controllers' files.
func (c *ct) dir() string {
	c.t.Helper()
	p := cgroupOf(c.t, c.state().Pid)
	if v1Host {
		return "v1:" + p
	}
	return filepath.Join(cgroupRoot, p)
}

// v1Files maps the v2 files the checks read to a v1 controller's file.
var v1Files = map[string][2]string{
	"memory.max": {"memory", "memory.limit_in_bytes"}, "memory.events": {"memory", "memory.oom_control"},
	"pids.max": {"pids", "pids.max"}, "pids.events": {"pids", "pids.events"}, "cgroup.procs": {"pids", "cgroup.procs"},
	"cpu.stat": {"cpu,cpuacct", "cpu.stat"},
}

func read(t *testing.T, dir, file string) string {
	t.Helper()
	if p, ok := strings.CutPrefix(dir, "v1:"); ok {
		switch file {
		case "cpu.max":
			q, per := read(t, dir, "cpu.cfs_quota_us"), read(t, dir, "cpu.cfs_period_us")
			if q == "-1" {
				q = "max"
			}
			return q + " " + per
		case "cpu.cfs_quota_us", "cpu.cfs_period_us":
			dir = filepath.Join(cgroupRoot, "cpu,cpuacct", p)
		case "cgroup.events":
			if read(t, filepath.Join(cgroupRoot, "freezer", p), "freezer.state") == "FROZEN" {
				return "frozen 1"
			}
			return "frozen 0"
		default:
			m, ok := v1Files[file]
			if !ok {
				t.Fatalf("no v1 file for %s", file)
			}
			dir, file = filepath.Join(cgroupRoot, m[0], p), m[1]
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func kv(t *testing.T, dir, file, key string) int64 {
	t.Helper()
	for _, l := range strings.Split(read(t, dir, file), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == key {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	t.Fatalf("%s has no %s", file, key)
	return 0
}

// unitProps is `systemctl show` of the container's unit.
func unitProps(t *testing.T, unit string, props ...string) map[string]string {
	t.Helper()
	args := []string{"show", unit}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl %v: %v\n%s", args, err, out)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func waitFor(d time.Duration, f func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if f() {
			return true
		}
	}
	return f()
}

// cgDir names a cgroup path as dir does.
func cgDir(path string) string {
	if v1Host {
		return "v1:" + path
	}
	return filepath.Join(cgroupRoot, path)
}

func gone(dir string) bool {
	if p, ok := strings.CutPrefix(dir, "v1:"); ok {
		dir = filepath.Join(cgroupRoot, "memory", p)
	}
	_, err := os.Stat(dir)
	return os.IsNotExist(err)
}

// TestLifecycle: create, start, kill, delete, each state as runc reports it,
// and nothing left: the cgroup (and the unit) go with delete.
func TestLifecycle(t *testing.T) {
	c := newCT(t, nil)
	c.must("create", "--bundle", c.bundle, c.id)
	if s := c.state(); s.Status != "created" || s.Pid <= 0 {
		t.Fatalf("after create: %+v", s)
	}
	dir := c.dir()
	c.must("start", c.id)
	if s := c.state(); s.Status != "running" {
		t.Fatalf("after start: %+v", s)
	}
	c.must("kill", c.id, "KILL")
	if !waitFor(10*time.Second, func() bool { return c.state().Status == "stopped" }) {
		t.Fatalf("not stopped after kill: %+v", c.state())
	}
	c.must("delete", c.id)
	if !waitFor(5*time.Second, func() bool { return gone(dir) }) {
		t.Errorf("cgroup %s left after delete", dir)
	}
	if systemd {
		if p := unitProps(t, c.unit(), "LoadState")["LoadState"]; p != "not-found" {
			t.Errorf("unit %s is %q after delete, want not-found", c.unit(), p)
		}
	}
}

// TestCgroupPlacement: init is in the cgroup the driver names; with systemd,
// in an active scope with Delegate=yes in system.slice.
func TestCgroupPlacement(t *testing.T) {
	c := newCT(t, nil)
	c.start()
	if got := cgroupOf(t, c.state().Pid); got != c.wantCgroup() {
		t.Fatalf("init's cgroup = %s, want %s", got, c.wantCgroup())
	}
	if systemd {
		p := unitProps(t, c.unit(), "ActiveState", "Delegate", "ControlGroup", "Slice")
		if p["ActiveState"] != "active" || p["Delegate"] != "yes" || p["ControlGroup"] != c.wantCgroup() || p["Slice"] != "system.slice" {
			t.Errorf("unit %s: %v", c.unit(), p)
		}
	}
}

// TestDefaultCgroupsPath: an empty cgroupsPath takes runc's default.
func TestDefaultCgroupsPath(t *testing.T) {
	c := newCT(t, func(s *specs.Spec) { s.Linux.CgroupsPath = "" })
	c.start()
	got := cgroupOf(t, c.state().Pid)
	if systemd {
		if want := "/system.slice/runc-" + c.id + ".scope"; got != want {
			t.Errorf("cgroup = %s, want %s", got, want)
		}
	} else if !strings.HasSuffix(got, "/"+c.id) {
		t.Errorf("cgroup = %s, want one named %s", got, c.id)
	}
}

// TestMemoryOOM: a process over memory.max is OOM-killed, memory.events
// counts it and `events` reports it.
func TestMemoryOOM(t *testing.T) {
	c := newCT(t, func(s *specs.Spec) {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: i64(24 << 20)}
	})
	c.start()
	dir := c.dir()
	if v := read(t, dir, "memory.max"); v != strconv.Itoa(24<<20) {
		t.Fatalf("memory.max = %s", v)
	}
	ev := exec.Command(runtimeBin, append(c.globals(), "events", c.id)...)
	var evOut syncBuffer
	ev.Stdout = &evOut
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { ev.Process.Kill(); ev.Wait() }()
	time.Sleep(time.Second)
	out, err := c.rt("exec", c.id, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	if err == nil {
		t.Fatalf("dd of 64M under a 24M limit succeeded: %s", out)
	}
	if n := kv(t, dir, "memory.events", "oom_kill"); n < 1 {
		t.Errorf("memory.events oom_kill = %d", n)
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(evOut.String(), `"type":"oom"`) }) {
		t.Errorf("events printed no oom event: %q", evOut.String())
	}
}

func (c *ct) globals() []string {
	g := []string{"--root", c.root}
	if systemd {
		g = append(g, "--systemd-cgroup")
	}
	return g
}

// TestPidsLimit: pids.max stops a fork bomb.
func TestPidsLimit(t *testing.T) {
	c := newCT(t, func(s *specs.Spec) { s.Linux.Resources.Pids = &specs.LinuxPids{Limit: i64(8)} })
	c.start()
	dir := c.dir()
	out, _ := c.rt("exec", c.id, "sh", "-c", "for i in $(seq 20); do sleep 3 & done; wait; echo done")
	if !strings.Contains(out, "can't fork") && !strings.Contains(out, "Resource temporarily unavailable") {
		t.Errorf("20 forks under pids.max 8 all succeeded: %q", out)
	}
	if n := kv(t, dir, "pids.events", "max"); n < 1 {
		t.Errorf("pids.events max = %d", n)
	}
}

// TestCPUThrottle: a spinning process under a 10% quota is throttled.
func TestCPUThrottle(t *testing.T) {
	c := newCT(t, func(s *specs.Spec) {
		s.Linux.Resources.CPU = &specs.LinuxCPU{Quota: i64(10000), Period: u64(100000)}
	})
	c.start()
	dir := c.dir()
	if v := read(t, dir, "cpu.max"); v != "10000 100000" {
		t.Errorf("cpu.max = %q", v)
	}
	c.rt("exec", c.id, "timeout", "2", "sh", "-c", "while :; do :; done")
	if n := kv(t, dir, "cpu.stat", "nr_throttled"); n < 1 {
		t.Errorf("cpu.stat nr_throttled = %d after spinning", n)
	}
}

// TestUpdate: update changes the files (and, with systemd, the unit).
func TestUpdate(t *testing.T) {
	c := newCT(t, func(s *specs.Spec) { s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: i64(64 << 20)} })
	c.start()
	c.must("update", "--memory", "100M", "--pids-limit", "50", "--cpu-quota", "30000", "--cpu-period", "100000", c.id)
	dir := c.dir()
	for f, want := range map[string]string{"memory.max": "104857600", "pids.max": "50", "cpu.max": "30000 100000"} {
		if got := read(t, dir, f); got != want {
			t.Errorf("%s = %q after update, want %q", f, got, want)
		}
	}
	if systemd {
		mem := "MemoryMax"
		if v1Host {
			mem = "MemoryLimit"
		}
		p := unitProps(t, c.unit(), mem, "TasksMax", "CPUQuotaPerSecUSec")
		if p[mem] != "104857600" || p["TasksMax"] != "50" || p["CPUQuotaPerSecUSec"] != "300ms" {
			t.Errorf("unit after update: %v", p)
		}
	}
	// A JSON resources file, as containerd sends it.
	res := filepath.Join(t.TempDir(), "r.json")
	os.WriteFile(res, []byte(`{"pids":{"limit":60}}`), 0o644)
	c.must("update", "--resources", res, c.id)
	if got := read(t, dir, "pids.max"); got != "60" {
		t.Errorf("pids.max = %q after update -r", got)
	}
}

type statsEvent struct {
	Type string `json:"type"`
	Data struct {
		CPU struct {
			Usage struct {
				Total uint64 `json:"total"`
			} `json:"usage"`
			PSI *json.RawMessage `json:"psi"`
		} `json:"cpu"`
		Memory struct {
			Usage struct {
				Usage uint64 `json:"usage"`
			} `json:"usage"`
			PSI *json.RawMessage `json:"psi"`
		} `json:"memory"`
		Pids struct {
			Current uint64 `json:"current"`
		} `json:"pids"`
	} `json:"data"`
}

func (c *ct) stats() statsEvent {
	c.t.Helper()
	var e statsEvent
	out := c.must("events", "--stats", c.id)
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		c.t.Fatalf("events --stats: %v\n%s", err, out)
	}
	return e
}

// TestEventsStats: events --stats reports cpu, memory and pids.
func TestEventsStats(t *testing.T) {
	c := newCT(t, nil)
	c.start()
	e := c.stats()
	if e.Type != "stats" || e.Data.CPU.Usage.Total == 0 || e.Data.Memory.Usage.Usage == 0 || e.Data.Pids.Current < 1 {
		t.Errorf("stats: %+v", e)
	}
}

// TestPSI: pressure stall information in the stats (berth; runc 1.1 has
// none).
func TestPSI(t *testing.T) {
	need(t)
	needV2(t)
	if runtimeID == "runc" {
		t.Skip("runc 1.1 reports no PSI")
	}
	c := newCT(t, nil)
	c.start()
	if e := c.stats(); e.Data.CPU.PSI == nil || e.Data.Memory.PSI == nil {
		t.Errorf("no PSI in stats: %+v", e)
	}
}

// TestPauseResume: the freezer.
func TestPauseResume(t *testing.T) {
	c := newCT(t, nil)
	c.start()
	dir := c.dir()
	c.must("pause", c.id)
	if s := c.state().Status; s != "paused" {
		t.Errorf("state after pause = %s", s)
	}
	if n := kv(t, dir, "cgroup.events", "frozen"); n != 1 {
		t.Errorf("cgroup.events frozen = %d after pause", n)
	}
	c.must("resume", c.id)
	if s := c.state().Status; s != "running" {
		t.Errorf("state after resume = %s", s)
	}
	if n := kv(t, dir, "cgroup.events", "frozen"); n != 0 {
		t.Errorf("cgroup.events frozen = %d after resume", n)
	}
}

// TestPs: ps lists the container's processes.
func TestPs(t *testing.T) {
	c := newCT(t, nil)
	c.start()
	if out := c.must("ps", c.id); !strings.Contains(out, "sleep") {
		t.Errorf("ps: %q", out)
	}
	var pids []int
	if err := json.Unmarshal([]byte(c.must("ps", "--format", "json", c.id)), &pids); err != nil || len(pids) != 1 || pids[0] != c.state().Pid {
		t.Errorf("ps --format json = %v (%v), want [%d]", pids, err, c.state().Pid)
	}
}

// TestExecCgroup: an exec'd process joins init's cgroup.
func TestExecCgroup(t *testing.T) {
	c := newCT(t, nil)
	c.start()
	pidFile := filepath.Join(t.TempDir(), "exec.pid")
	c.must("exec", "--detach", "--pid-file", pidFile, c.id, "sleep", "100")
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		t.Fatalf("exec pid file: %q", b)
	}
	if got, want := cgroupOf(t, pid), cgroupOf(t, c.state().Pid); got != want {
		t.Errorf("exec'd process in %s, init in %s", got, want)
	}
}

// TestDeviceRule: the device filter (eBPF on v2) allows exactly what the
// rules allow: an "m" rule for /dev/fuse's numbers lets the container make
// the node but not open it (the cgroup answers EPERM before any driver is
// asked); the default devices still work.
func TestDeviceRule(t *testing.T) {
	c := newCT(t, func(s *specs.Spec) {
		s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_MKNOD")
		s.Process.Capabilities.Effective = append(s.Process.Capabilities.Effective, "CAP_MKNOD")
		s.Process.Capabilities.Permitted = append(s.Process.Capabilities.Permitted, "CAP_MKNOD")
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(10), Minor: i64(229), Access: "m"})
	}, "sh", "-c", "mknod /tmp/fuse c 10 229 && echo made; (exec 3</tmp/fuse) && echo opened; head -c1 /dev/zero | wc -c")
	out, _ := c.rt("run", "--bundle", c.bundle, c.id)
	if !strings.Contains(out, "made") || strings.Contains(out, "opened") || !strings.Contains(out, "Operation not permitted") || !strings.Contains(out, "1") {
		t.Errorf("device rules not enforced as given: %q", out)
	}
}

// TestUnifiedKeys: linux.resources.unified is written as given.
func TestUnifiedKeys(t *testing.T) {
	needV2(t)
	c := newCT(t, func(s *specs.Spec) {
		s.Linux.Resources.Unified = map[string]string{"memory.high": "52428800", "pids.max": "33", "memory.oom.group": "1"}
	})
	c.start()
	dir := c.dir()
	for f, want := range map[string]string{"memory.high": "52428800", "pids.max": "33", "memory.oom.group": "1"} {
		if got := read(t, dir, f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	if systemd {
		if p := unitProps(t, c.unit(), "MemoryHigh", "TasksMax"); p["MemoryHigh"] != "52428800" || p["TasksMax"] != "33" {
			t.Errorf("unit: %v", p)
		}
	}
}

// TestAllResources: memory (limit, reservation, swap), cpu (weight, quota,
// cpuset), pids, hugetlb, io weight, all at once.
func TestAllResources(t *testing.T) {
	needV2(t)
	c := newCT(t, func(s *specs.Spec) {
		r := s.Linux.Resources
		r.Memory = &specs.LinuxMemory{Limit: i64(64 << 20), Reservation: i64(32 << 20), Swap: i64(96 << 20)}
		r.CPU = &specs.LinuxCPU{Shares: u64(512), Quota: i64(50000), Period: u64(100000), Cpus: "0", Mems: "0"}
		r.Pids = &specs.LinuxPids{Limit: i64(100)}
		r.HugepageLimits = []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}}
		w := uint16(500)
		r.BlockIO = &specs.LinuxBlockIO{Weight: &w}
	})
	c.start()
	dir := c.dir()
	for f, want := range map[string]string{
		"memory.max": "67108864", "memory.low": "33554432", "memory.swap.max": "33554432", "cpu.max": "50000 100000",
		"cpuset.cpus": "0", "cpuset.mems": "0", "pids.max": "100", "hugetlb.2MB.max": "4194304",
	} {
		if got := read(t, dir, f); got != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}
	// runc 1.1 and berth convert shares differently; both lower the weight.
	if w, _ := strconv.Atoi(read(t, dir, "cpu.weight")); w < 1 || w >= 100 {
		t.Errorf("cpu.weight = %d for shares 512", w)
	}
}

// TestKillAll: kill --all signals every process (cgroup.kill on berth).
func TestKillAll(t *testing.T) {
	c := newCT(t, nil, "sh", "-c", "sleep 1000 & sleep 1000 & wait")
	c.start()
	dir := c.dir()
	if !waitFor(5*time.Second, func() bool { return strings.Count(read(t, dir, "cgroup.procs"), "\n") >= 2 }) {
		t.Fatalf("procs: %q", read(t, dir, "cgroup.procs"))
	}
	c.must("kill", "--all", c.id, "KILL")
	if !waitFor(10*time.Second, func() bool { return c.state().Status == "stopped" }) {
		t.Errorf("still %s after kill --all", c.state().Status)
	}
}

// TestNestedDelegation: a container with its own cgroup namespace and a
// writable cgroupfs makes a child cgroup, moves itself there and delegates
// a controller to it.
func TestNestedDelegation(t *testing.T) {
	needV2(t)
	c := newCT(t, func(s *specs.Spec) {
		has := false
		for _, n := range s.Linux.Namespaces {
			has = has || n.Type == specs.CgroupNamespace
		}
		if !has {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
		}
		for i, m := range s.Mounts {
			if m.Destination == "/sys/fs/cgroup" {
				s.Mounts[i].Options = []string{"nosuid", "noexec", "nodev", "relatime", "rw"}
			}
			if m.Destination == "/sys" {
				s.Mounts[i].Options = []string{"nosuid", "noexec", "nodev"}
			}
		}
	}, "sh", "-c", "cat /proc/self/cgroup; mkdir /sys/fs/cgroup/inner && echo $$ > /sys/fs/cgroup/inner/cgroup.procs && echo +pids > /sys/fs/cgroup/cgroup.subtree_control && echo 5 > /sys/fs/cgroup/inner/pids.max && echo max=$(cat /sys/fs/cgroup/inner/pids.max); cat /proc/self/cgroup")
	out, err := c.rt("run", "--bundle", c.bundle, c.id)
	if err != nil || !strings.Contains(out, "0::/\n") || !strings.Contains(out, "max=5") || !strings.Contains(out, "0::/inner") {
		t.Errorf("nested delegation: %v\n%s", err, out)
	}
}

// TestUnitProperties: org.systemd.property.* annotations reach the unit.
func TestUnitProperties(t *testing.T) {
	needSystemd(t)
	c := newCT(t, func(s *specs.Spec) {
		s.Annotations = map[string]string{
			"org.systemd.property.TimeoutStopUSec": "uint64 123000000",
			"org.systemd.property.CollectMode":     "'inactive-or-failed'",
		}
	})
	c.start()
	if p := unitProps(t, c.unit(), "TimeoutStopUSec", "CollectMode"); p["TimeoutStopUSec"] != "2min 3s" || p["CollectMode"] != "inactive-or-failed" {
		t.Errorf("unit: %v", p)
	}
}

// TestKillMidCreate: a create SIGKILLed half-way (in a createRuntime hook,
// after the unit exists) leaves nothing once delete --force has run.
func TestKillMidCreate(t *testing.T) {
	needSystemd(t)
	c := newCT(t, func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sleep", Args: []string{"sleep", "60"}}}}
	})
	cmd := exec.Command(runtimeBin, append(c.globals(), "create", "--bundle", c.bundle, c.id)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	active := waitFor(30*time.Second, func() bool {
		out, _ := exec.Command("systemctl", "is-active", c.unit()).Output()
		return strings.TrimSpace(string(out)) == "active"
	})
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !active {
		t.Fatal("the unit never became active during create")
	}
	out, err := c.rt("delete", "--force", c.id)
	t.Logf("delete --force after the kill: %v %s", err, out)
	if !waitFor(10*time.Second, func() bool {
		return unitProps(t, c.unit(), "LoadState")["LoadState"] == "not-found"
	}) {
		t.Errorf("unit %s left: %v", c.unit(), unitProps(t, c.unit(), "LoadState", "ActiveState", "ControlGroup"))
	}
	if dir := cgDir(c.wantCgroup()); !gone(dir) {
		t.Errorf("cgroup %s left", dir)
	}
}

// TestValidation runs runtime-tools' validation suite on this cgroup v2 host
// (cgroupfs paths: it does not speak the systemd driver) and prints each
// assertion as VALIDATION <test> <n> ok|not-ok, for the host to compare the
// runtimes. A test that hangs is cut off after two minutes.
func TestValidation(t *testing.T) {
	need(t)
	needV2(t)
	suite := os.Getenv("CHECK_SUITE")
	if suite == "" || systemd {
		t.Skip("runtime-tools runs with the cgroupfs driver, CHECK_SUITE set")
	}
	tests, _ := filepath.Glob(filepath.Join(suite, "validation", "*", "*.t"))
	if len(tests) == 0 {
		t.Fatalf("no validation tests under %s", suite)
	}
	state := t.TempDir()
	wrapper := filepath.Join(t.TempDir(), "runtime")
	os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\nexec %s --root %s \"$@\"\n", runtimeBin, state)), 0o755)
	for _, tb := range tests {
		name := strings.TrimSuffix(filepath.Base(tb), ".t")
		cmd := exec.Command(tb)
		cmd.Dir = suite
		// Not t.TempDir: a runtime may leave a mount in a bundle (runc
		// does, in a propagation test), which cleanup must unmount first.
		tmp, err := os.MkdirTemp("", "validation-")
		if err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(os.Environ(), "RUNTIME="+wrapper, "TMPDIR="+tmp)
		out, _ := runCmd(t, cmd, 2*time.Minute)
		exec.Command("umount", "-R", "-l", tmp).Run()
		for _, m := range mountsUnder(tmp) {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
		if err := os.RemoveAll(tmp); err != nil {
			t.Logf("%s: %v", name, err)
		}
		n := 0
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			l := sc.Text()
			res := ""
			switch {
			case strings.HasPrefix(l, "ok "):
				res = "ok"
			case strings.HasPrefix(l, "not ok "):
				res = "not-ok"
			default:
				continue
			}
			n++
			desc := l
			if i := strings.Index(l, " - "); i >= 0 {
				desc = l[i+3:]
			}
			fmt.Printf("VALIDATION %s %d %s %s\n", name, n, res, desc)
		}
		if n == 0 {
			fmt.Printf("VALIDATION %s 0 not-ok no TAP output: %q\n", name, lastLines(out, 5))
		}
	}
}

// mountsUnder lists the mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var ms []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			ms = append([]string{f[4]}, ms...)
		}
	}
	return ms
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " | ")
}

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }
