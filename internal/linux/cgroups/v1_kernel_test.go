package cgroups

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/cgroups/devices"
	"berth/internal/testutil"
)

// requireV1Host gates the real-kernel v1 tests: root on a legacy or hybrid
// host. A unified host runs the v2 tests instead (and CI's v2 proof boots a
// unified kernel under qemu), so there it is a skip, not a failure.
func requireV1Host(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	m, err := DetectMode(DefaultRoot)
	if err != nil {
		t.Fatal(err)
	}
	if m == ModeUnified {
		t.Skip("cgroup v1 kernel test: host is unified (v2)")
	}
}

// testCgroup makes a manager for a test-unique absolute path with a nested
// parent, and removes everything it created at the end, even on failure.
func testCgroup(t *testing.T, leaf string) Manager {
	t.Helper()
	top := fmt.Sprintf("/berth-cgtest-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	m, err := New(top+"/nested/"+leaf, "ignored")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = m.Kill(unix.SIGKILL)
		if err := m.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
		for c, p := range m.Paths() {
			// The parents of an absolute path are left by Destroy (as by
			// runc); the test owns them.
			for d := filepath.Dir(p); strings.Contains(d, "berth-cgtest-"); d = filepath.Dir(d) {
				if err := unix.Rmdir(d); err != nil && err != unix.ENOENT {
					t.Errorf("cleanup %s %s: %v", c, d, err)
				}
			}
		}
	})
	return m
}

// startWaiting starts sh reading one line from stdin before running script,
// so the test can place it in a cgroup and set limits first.
func startWaiting(t *testing.T, script string) (*exec.Cmd, io.WriteCloser, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "read go; "+script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, in, bufio.NewReader(out)
}

func p64(v int64) *int64    { return &v }
func pu64(v uint64) *uint64 { return &v }
func pbool(v bool) *bool    { return &v }

func readTrim(t *testing.T, dir, name string) string {
	t.Helper()
	s, err := readFile(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(s)
}

func TestV1KernelLifecycle(t *testing.T) {
	requireV1Host(t)
	m := testCgroup(t, "ct")
	cmd, in, out := startWaiting(t, "echo started; exec sleep 60")
	pid := cmd.Process.Pid
	if err := m.Apply(pid); err != nil {
		t.Fatal(err)
	}
	r := &specs.LinuxResources{
		Devices: append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, devices.DefaultAllowed...),
		Memory:  &specs.LinuxMemory{Limit: p64(64 << 20), Reservation: p64(32 << 20), Swappiness: pu64(30)},
		CPU:     &specs.LinuxCPU{Shares: pu64(512), Quota: p64(50000), Period: pu64(100000), Cpus: "0", Mems: "0"},
		Pids:    &specs.LinuxPids{Limit: p64(20)},
	}
	if exists(filepath.Join(m.Path("memory"), "memory.memsw.limit_in_bytes")) {
		r.Memory.Swap = p64(128 << 20)
	}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ ctrl, file, want string }{
		{"memory", "memory.limit_in_bytes", "67108864"},
		{"memory", "memory.soft_limit_in_bytes", "33554432"},
		{"memory", "memory.swappiness", "30"},
		{"cpu", "cpu.shares", "512"},
		{"cpu", "cpu.cfs_quota_us", "50000"},
		{"cpu", "cpu.cfs_period_us", "100000"},
		{"cpuset", "cpuset.cpus", "0"},
		{"pids", "pids.max", "20"},
	} {
		if got := readTrim(t, m.Path(c.ctrl), c.file); got != c.want {
			t.Errorf("%s = %q, want %q", c.file, got, c.want)
		}
	}
	if r.Memory.Swap != nil {
		if got := readTrim(t, m.Path("memory"), "memory.memsw.limit_in_bytes"); got != "134217728" {
			t.Errorf("memsw = %q", got)
		}
	}
	if got := readTrim(t, m.Path("devices"), "devices.list"); !strings.Contains(got, "c 1:3 rwm") || strings.Contains(got, "a *:* rwm") {
		t.Errorf("devices.list = %q", got)
	}
	// Every line of /proc/pid/cgroup names the container's cgroup.
	pc, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(pc)), "\n") {
		if !strings.HasSuffix(line, "/nested/ct") {
			t.Errorf("/proc/%d/cgroup line %q is not in the container cgroup", pid, line)
		}
	}

	// Update changes limits but never devices, even when given.
	// Raising memory and memory+swap must write memsw first (the kernel
	// keeps memory <= memsw at every instant); lowering, memory first.
	swapOn := r.Memory.Swap != nil
	for _, lim := range [][2]int64{{192 << 20, 256 << 20}, {96 << 20, 112 << 20}} {
		mem := &specs.LinuxMemory{Limit: p64(lim[0])}
		if swapOn {
			mem.Swap = p64(lim[1])
		}
		if err := m.Update(&specs.LinuxResources{
			Devices: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}},
			Memory:  mem,
			Pids:    &specs.LinuxPids{Limit: p64(-1)},
		}); err != nil {
			t.Fatal(err)
		}
		if swapOn {
			if got := readTrim(t, m.Path("memory"), "memory.memsw.limit_in_bytes"); got != fmt.Sprint(lim[1]) {
				t.Errorf("updated memsw = %q, want %d", got, lim[1])
			}
		}
	}
	if got := readTrim(t, m.Path("memory"), "memory.limit_in_bytes"); got != "100663296" {
		t.Errorf("updated memory limit = %q", got)
	}
	if got := readTrim(t, m.Path("pids"), "pids.max"); got != "max" {
		t.Errorf("updated pids.max = %q", got)
	}
	if got := readTrim(t, m.Path("devices"), "devices.list"); strings.Contains(got, "a *:* rwm") {
		t.Errorf("Update touched devices: %q", got)
	}
	fmt.Fprintln(in, "go")
	if line, _ := out.ReadString('\n'); line != "started\n" {
		t.Fatalf("child said %q", line)
	}
	// checkBeforeUpdate refuses a limit below usage (sleep's pages are
	// charged here now).
	usage, err := readUint(m.Path("memory"), "memory.usage_in_bytes")
	if err != nil || usage < 2 {
		t.Fatalf("usage = %d, %v", usage, err)
	}
	err = m.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: p64(int64(usage / 2)), CheckBeforeUpdate: pbool(true)}})
	if err == nil || !strings.Contains(err.Error(), "below current usage") {
		t.Errorf("checkBeforeUpdate: %v", err)
	}
	pids, err := m.Pids()
	if err != nil || !slices.Contains(pids, pid) {
		t.Fatalf("Pids = %v, %v; want %d in it", pids, err, pid)
	}

	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	if f, err := m.Frozen(); err != nil || !f {
		t.Fatalf("Frozen = %v, %v", f, err)
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if f, err := m.Frozen(); err != nil || f {
		t.Fatalf("Frozen after thaw = %v, %v", f, err)
	}

	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pids.Current < 1 || st.Memory.Usage.Limit != 96<<20 || st.Memory.Usage.Usage == 0 || len(st.CPUSet.CPUs) != 1 {
		t.Errorf("stats: %+v", st)
	}
	b, _ := json.Marshal(st)
	for _, key := range []string{`"cpu":{"usage":{`, `"cpuset":{"cpus":[0]`, `"memory":{`, `"pids":{"current":`, `"blkio":{`, `"hugetlb":{}`, `"intel_rdt":{}`, `"network_interfaces":null`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("stats JSON lacks %s: %s", key, b)
		}
	}

	if err := m.Kill(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	for c, p := range m.Paths() {
		if exists(p) {
			t.Errorf("%s cgroup %s still exists after Destroy", c, p)
		}
	}
	if m.Exists() {
		t.Error("Exists after Destroy")
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func TestV1KernelDeviceFilter(t *testing.T) {
	requireV1Host(t)
	m := testCgroup(t, "dev")
	cmd, in, out := startWaiting(t, `
for d in /dev/null /dev/zero /dev/mem; do
	if head -c 1 $d >/dev/null 2>&1; then echo "$d ok"; else echo "$d denied"; fi
done`)
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	// runc's default whitelist without /dev/zero; /dev/mem is not in it.
	rules := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, d := range devices.DefaultAllowed {
		if d.Major != nil && d.Minor != nil && *d.Major == 1 && *d.Minor == 5 {
			continue
		}
		rules = append(rules, d)
	}
	if err := m.Set(&specs.LinuxResources{Devices: rules}); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(in, "go")
	got, _ := io.ReadAll(out)
	want := "/dev/null ok\n/dev/zero denied\n/dev/mem denied\n"
	if string(got) != want {
		t.Errorf("device access:\n%s\nwant:\n%s", got, want)
	}
}

func TestV1KernelOOM(t *testing.T) {
	requireV1Host(t)
	m := testCgroup(t, "oom")
	// tail keeps the whole "last line" of /dev/zero, which has no newline.
	cmd, in, _ := startWaiting(t, "exec tail /dev/zero")
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	mem := &specs.LinuxMemory{Limit: p64(16 << 20)}
	if exists(filepath.Join(m.Path("memory"), "memory.memsw.limit_in_bytes")) {
		mem.Swap = p64(16 << 20)
	}
	if err := m.Set(&specs.LinuxResources{Memory: mem}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev, err := m.OOMEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(in, "go")
	select {
	case _, ok := <-ev:
		if !ok {
			t.Fatal("OOM channel closed before an event")
		}
	case <-ctx.Done():
		t.Fatal("no OOM event within 30s")
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(interface{ Signal() unix.Signal }); !ok || ws.Signal() != unix.SIGKILL {
		t.Errorf("tail ended with %v, want killed by SIGKILL", err)
	}
	n, err := m.OOMCount()
	if err != nil || n < 1 {
		t.Errorf("OOMCount = %d, %v", n, err)
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	// The channel closes once the cgroup is removed.
	select {
	case <-ev:
	case <-time.After(5 * time.Second):
		t.Error("OOM channel not closed after Destroy")
	}
}

func TestV1KernelRelativePath(t *testing.T) {
	requireV1Host(t)
	id := fmt.Sprintf("berth-cgtest-rel-%d", os.Getpid())
	m, err := New("", id)
	if err != nil {
		t.Fatal(err)
	}
	own, _, err := parseSelfCgroup("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(DefaultRoot, "memory", own["memory"], id)
	if got := m.Path("memory"); got != want {
		t.Errorf("relative memory path = %q, want %q", got, want)
	}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Destroy(); err != nil {
			t.Error(err)
		}
	})
	if !exists(want) {
		t.Errorf("%s not created", want)
	}
}

// TestV1KernelNestedKillDestroy: a process in a sub-cgroup the container made
// itself is listed, signalled while the container is paused, and its
// directory is removed with the container's.
func TestV1KernelNestedKillDestroy(t *testing.T) {
	requireV1Host(t)
	m := testCgroup(t, "ct")
	a, _, _ := startWaiting(t, "exec sleep 60")
	b, _, _ := startWaiting(t, "exec sleep 60")
	if err := m.Apply(a.Process.Pid); err != nil {
		t.Fatal(err)
	}
	sub, err := New(strings.TrimPrefix(m.Path("freezer"), filepath.Join(DefaultRoot, "freezer"))+"/inner/deeper", "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Apply(b.Process.Pid); err != nil {
		t.Fatal(err)
	}
	pids, err := m.Pids()
	if err != nil || !slices.Contains(pids, a.Process.Pid) || !slices.Contains(pids, b.Process.Pid) {
		t.Fatalf("Pids = %v, %v; want both %d and %d", pids, err, a.Process.Pid, b.Process.Pid)
	}
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	// A non-fatal signal leaves a paused container paused.
	if err := m.Kill(unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if f, _ := m.Frozen(); !f {
		t.Error("Kill(SIGCONT) thawed a paused container")
	}
	if err := m.Kill(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*exec.Cmd{a, b} {
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("pid %d survived Kill(SIGKILL) of a paused container", c.Process.Pid)
		}
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	for c, p := range sub.Paths() {
		if exists(p) || exists(m.Path(c)) {
			t.Errorf("%s: nested cgroup %s survived Destroy", c, p)
		}
	}
}

// TestV1KernelCheckEmpty: on real cgroupfs, a cgroup holding a process (in
// any hierarchy) is refused with runc's message, and passes once it is gone.
func TestV1KernelCheckEmpty(t *testing.T) {
	requireV1Host(t)
	m := testCgroup(t, "ct")
	if err := m.CheckEmpty(); err != nil {
		t.Fatalf("before create: %v", err)
	}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	if err := m.CheckEmpty(); err != nil {
		t.Fatalf("created, empty: %v", err)
	}
	cmd, _, _ := startWaiting(t, "exec sleep 60")
	// Only the memory hierarchy: the check looks at every one.
	if err := writeFile(m.Path("memory"), "cgroup.procs", fmt.Sprint(cmd.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	if err := m.CheckEmpty(); err == nil || err.Error() != "container's cgroup is not empty: 1 process(es) found" {
		t.Fatalf("with a process in memory only: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if err := m.CheckEmpty(); err != nil {
		t.Fatalf("after the process exited: %v", err)
	}
}
