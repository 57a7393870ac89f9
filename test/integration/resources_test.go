package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/testutil"
)

func TestResourcesPauseResumePsUpdateEvents(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sh", "-c", "sleep 100 & exec sleep 100")
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	var pids []int
	deadline := time.Now().Add(5 * time.Second)
	for len(pids) < 2 && time.Now().Before(deadline) {
		json.Unmarshal([]byte(r.must("ps", "-f", "json", id)), &pids)
		time.Sleep(20 * time.Millisecond)
	}
	if len(pids) != 2 {
		t.Fatalf("ps -f json: %v", pids)
	}
	table := r.must("ps", id)
	if !strings.Contains(strings.SplitN(table, "\n", 2)[0], "PID") || strings.Count(table, "sleep 100") != 2 {
		t.Errorf("ps table:\n%s", table)
	}
	r.must("pause", id)
	if st := status(t, r, id); st != "paused" {
		t.Fatalf("after pause: %s", st)
	}
	for _, p := range pids {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/status")
		if !strings.Contains(string(b), "State:\tD") && !strings.Contains(string(b), "State:\tS") {
			t.Errorf("pid %d not frozen: %s", p, b)
		}
	}
	if res := r.run("exec", id, "true"); res.code != 255 || !strings.Contains(res.stderr, "paused") {
		t.Errorf("exec into paused: %+v", res)
	}
	r.must("resume", id)
	if st := status(t, r, id); st != "running" {
		t.Fatalf("after resume: %s", st)
	}
	if res := r.run("resume", id); res.code != 1 || !strings.Contains(res.stderr, "container not paused") {
		t.Errorf("resume running: %+v", res)
	}
	r.must("update", "--memory", "104857600", "--pids-limit", "50", id)
	memPath, pidsPath := cgroupDir(t, pids[0], "memory"), cgroupDir(t, pids[0], "pids")
	memFile := "memory.limit_in_bytes"
	if unified() {
		memFile = "memory.max"
	}
	if lim, _ := os.ReadFile(filepath.Join(memPath, memFile)); strings.TrimSpace(string(lim)) != "104857600" {
		t.Errorf("memory limit after update: %q (%s)", lim, memPath)
	}
	if lim, _ := os.ReadFile(filepath.Join(pidsPath, "pids.max")); strings.TrimSpace(string(lim)) != "50" {
		t.Errorf("pids limit after update: %q", lim)
	}
	ev := r.must("events", "--stats", id)
	var e struct {
		Type string
		ID   string
		Data map[string]json.RawMessage
	}
	if err := json.Unmarshal([]byte(ev), &e); err != nil || e.Type != "stats" || e.ID != id {
		t.Fatalf("events --stats: %v %s", err, ev)
	}
	for _, k := range []string{"cpu", "memory", "pids", "blkio"} {
		if _, ok := e.Data[k]; !ok {
			t.Errorf("stats lack %q: %s", k, ev)
		}
	}
	r.must("delete", "-f", id)
	if res := r.run("events", "--stats", id); res.code != 1 {
		t.Errorf("events of deleted container: %+v", res)
	}
}

func TestResourcesPidsLimitStopsForkBomb(t *testing.T) {
	r := newRT(t)
	limit := int64(10)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &limit}
	}, "sh", "-c", "i=0; while [ $i -lt 30 ]; do sleep 30 & i=$((i+1)); done; sleep 30")
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	// The shell may die of a failed fork at any moment: take the cgroup
	// from berth's state rather than from /proc/PID/cgroup.
	var st struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	sb, err := os.ReadFile(filepath.Join(r.root, id, "state.json"))
	if err != nil || json.Unmarshal(sb, &st) != nil {
		t.Fatalf("reading state: %v", err)
	}
	pidsDir := st.CgroupPaths["pids"]
	if unified() {
		pidsDir = st.CgroupPaths[""]
	}
	deadline := time.Now().Add(5 * time.Second)
	var events string
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(pidsDir, "pids.events"))
		events = string(b)
		if strings.TrimSpace(events) != "max 0" && events != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cur, _ := os.ReadFile(filepath.Join(pidsDir, "pids.current"))
	n, _ := strconv.Atoi(strings.TrimSpace(string(cur)))
	if n > int(limit) || !strings.HasPrefix(events, "max ") || strings.TrimSpace(events) == "max 0" {
		t.Errorf("pids.current=%d (limit %d), pids.events=%q: the limit did not stop the forks", n, limit, events)
	}
	r.must("delete", "-f", id)
}

func TestResourcesMemoryOOM(t *testing.T) {
	r := newRT(t)
	limit := int64(32 << 20)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	}, "sh", "-c", "sleep 1; cat /dev/zero | head -c 200m | tail > /dev/null; echo survived")
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	events := make(chan string, 1)
	go func() {
		res := r.run("events", "--interval", "100ms", id)
		events <- res.stdout
	}()
	var out string
	select {
	case out = <-events:
	case <-time.After(30 * time.Second):
		r.run("delete", "-f", id)
		out = <-events
	}
	if !strings.Contains(out, `{"type":"oom","id":"`+id+`"}`) {
		t.Errorf("events did not report the OOM kill:\n%s", out)
	}
}

// unified reports whether the host runs cgroup v2 only (the emulated-kernel
// proof in test/cgroupv2 runs these tests there).
func unified() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// cgroupDir is the host directory of pid's cgroup for a v1 controller, or
// its v2 cgroup on a unified host.
func cgroupDir(t *testing.T, pid int, ctrl string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if unified() && f[0] == "0" {
			return filepath.Join("/sys/fs/cgroup", f[2])
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == ctrl {
				return filepath.Join("/sys/fs/cgroup", ctrl, f[2])
			}
		}
	}
	t.Fatalf("no %s cgroup for pid %d in %s", ctrl, pid, b)
	return ""
}

// TestResourcesDeviceRuleDeniesMem: the device cgroup (v1 lists, v2 eBPF)
// lets the container create a /dev/mem node (mknod is allowed, as in runc)
// but not open it.
func TestResourcesDeviceRuleDeniesMem(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		for _, set := range []*[]string{&s.Process.Capabilities.Bounding, &s.Process.Capabilities.Effective, &s.Process.Capabilities.Permitted} {
			*set = append(*set, "CAP_MKNOD", "CAP_SYS_RAWIO")
		}
	}, "sh", "-c", "mknod /dev/mem2 c 1 1 && echo made; head -c1 /dev/mem2 2>&1 >/dev/null; head -c1 /dev/zero | wc -c")
	out := r.run("run", "-b", b, r.id()).stdout
	if !strings.Contains(out, "made") || !strings.Contains(out, "Operation not permitted") || !strings.Contains(out, "1\n") {
		t.Errorf("device rule: %q", out)
	}
}

// TestResourcesConfiguredDeviceNeedsARule: a linux.devices node is made in
// /dev but, as in runc, only the device rules decide access to it: without
// a rule it cannot be opened at all, with a read-only rule it opens for
// reading only. (The node is 1:250, a minor the mem driver does not have:
// an open the cgroup allows fails with ENXIO from the driver, one it denies
// with EPERM, before any driver is asked.)
func TestResourcesConfiguredDeviceNeedsARule(t *testing.T) {
	r := newRT(t)
	maj, mn := int64(1), int64(250)
	dev := specs.LinuxDevice{Path: "/dev/nodriver", Type: "c", Major: maj, Minor: mn}
	probe := "(: < /dev/nodriver) 2>&1; (: > /dev/nodriver) 2>&1"
	for _, tt := range []struct {
		rules []specs.LinuxDeviceCgroup
		want  string
	}{
		{nil, "Operation not permitted\n.*Operation not permitted"},
		{[]specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: &maj, Minor: &mn, Access: "r"}}, "No such device or address\n.*Operation not permitted"},
		{[]specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: &maj, Minor: &mn, Access: "rw"}}, "No such device or address\n.*No such device or address"},
	} {
		b := testutil.Bundle(t, func(s *specs.Spec) {
			s.Linux.Devices = append(s.Linux.Devices, dev)
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, tt.rules...)
		}, "sh", "-c", probe)
		out := r.run("run", "-b", b, r.id()).stdout
		if !regexp.MustCompile(tt.want).MatchString(out) {
			t.Errorf("rules %v: %q, want %q", tt.rules, out, tt.want)
		}
	}
}
