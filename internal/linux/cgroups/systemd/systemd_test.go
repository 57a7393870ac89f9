package systemd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/cgroups"
)

// v2Files are the control files of a fake cgroup2 directory.
var v2Files = map[string]string{
	"cgroup.procs": "", "cgroup.controllers": "cpuset cpu io memory pids\n", "cgroup.subtree_control": "",
	"cgroup.freeze": "", "cgroup.events": "populated 0\nfrozen 0\n", "cpu.weight": "", "cpu.max": "",
	"cpuset.cpus": "", "cpuset.mems": "", "memory.max": "", "memory.low": "", "memory.high": "", "memory.swap.max": "",
	"pids.max": "", "io.bfq.weight": "", "io.max": "",
}

type fakeTree struct{ root string }

// newFakeV2 is a fake unified hierarchy with the directory inner in it.
func newFakeV2(t *testing.T, inner string) fakeTree {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{root, filepath.Join(root, inner)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for n, c := range v2Files {
			if err := os.WriteFile(filepath.Join(d, n), []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return fakeTree{root}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		path, id    string
		slice, name string
		cgroup      string
		err         string
	}{
		{"", "ct1", "system.slice", "runc-ct1.scope", "/system.slice/runc-ct1.scope", ""},
		{"system.slice:docker:1234", "x", "system.slice", "docker-1234.scope", "/system.slice/docker-1234.scope", ""},
		{":libpod:abc", "x", "system.slice", "libpod-abc.scope", "/system.slice/libpod-abc.scope", ""},
		{"kubepods-besteffort-pod1.slice:cri-containerd:f00", "x", "kubepods-besteffort-pod1.slice", "cri-containerd-f00.scope",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-f00.scope", ""},
		{"machine.slice::bare", "x", "machine.slice", "bare.scope", "/machine.slice/bare.scope", ""},
		{"system.slice:x:system-ct.slice", "x", "system.slice", "system-ct.slice", "/system.slice/system-ct.slice", ""},
		{"-.slice:p:n", "x", "-.slice", "p-n.scope", "/p-n.scope", ""},
		{"", "", "", "", "", "needs a container id"},
		{"system.slice:runc", "x", "", "", "", `format "slice:prefix:name"`},
		{"/sys/fs/cgroup/foo", "x", "", "", "", `format "slice:prefix:name"`},
		{"a:b:c:d", "x", "", "", "", `format "slice:prefix:name"`},
		{"system:runc:x", "x", "", "", "", "invalid slice name"},
		{"a--b.slice:runc:x", "x", "", "", "", "empty component"},
		{"system.slice:runc:", "x", "", "", "", "empty name"},
	} {
		u, err := ParsePath(tc.path, tc.id)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePath(%q) err = %v, want %q", tc.path, err, tc.err)
			}
			continue
		}
		if err != nil || u.Slice != tc.slice || u.Name != tc.name || u.CgroupPath() != tc.cgroup {
			t.Errorf("ParsePath(%q) = %+v (%s), %v; want %s %s (%s)", tc.path, u, u.CgroupPath(), err, tc.slice, tc.name, tc.cgroup)
		}
	}
}

func TestExpandSlice(t *testing.T) {
	for in, want := range map[string]string{
		"-.slice": "/", "system.slice": "/system.slice", "a-b-c.slice": "/a.slice/a-b.slice/a-b-c.slice",
		"user-1000.slice": "/user.slice/user-1000.slice",
	} {
		if got, err := ExpandSlice(in); err != nil || got != want {
			t.Errorf("ExpandSlice(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", ".slice", "system", "a/b.slice", "-a.slice", "a-.slice", "a--b.slice"} {
		if _, err := ExpandSlice(bad); err == nil {
			t.Errorf("ExpandSlice(%q) succeeded", bad)
		}
	}
}

// propMap renders properties as name -> Go value for comparisons.
func propMap(t *testing.T, props []sd.Property) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, p := range props {
		if _, dup := out[p.Name]; dup {
			t.Errorf("property %s given twice", p.Name)
		}
		out[p.Name] = p.Value.Value()
	}
	return out
}

func i64p(v int64) *int64                 { return &v }
func u64p(v uint64) *uint64               { return &v }
func u16p(v uint16) *uint16               { return &v }
func boolp(v bool) *bool                  { return &v }
func noIODev(int64, int64) (string, bool) { return "", false }
func ioDevAll(maj, min int64) (string, bool) {
	return fmt.Sprintf("/dev/block/%d:%d", maj, min), true
}

func TestResourcePropertiesV2(t *testing.T) {
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64p(64 << 20), Reservation: i64p(32 << 20), Swap: i64p(96 << 20)},
		CPU:    &specs.LinuxCPU{Shares: u64p(1024), Quota: i64p(25000), Period: u64p(100000), Cpus: "0-2,9", Mems: "0"},
		Pids:   &specs.LinuxPids{Limit: i64p(42)},
		BlockIO: &specs.LinuxBlockIO{
			Weight:                  u16p(500),
			WeightDevice:            []specs.LinuxWeightDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Weight: u16p(100)}},
			ThrottleReadBpsDevice:   []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 1 << 20}},
			ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 16}, Rate: 100}},
		},
		HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}},
		Unified:        map[string]string{"memory.high": "50000000", "memory.oom.group": "1", "cpu.max": "max 50000"},
	}
	props, err := resourceProperties(r, cgroups.ModeUnified, false, systemdFeatures{version: 252}, ioDevAll)
	if err != nil {
		t.Fatal(err)
	}
	got := propMap(t, props[:len(props)-3]) // the unified ones are checked below
	want := map[string]any{
		"MemoryMax": uint64(64 << 20), "MemoryLow": uint64(32 << 20), "MemorySwapMax": uint64(32 << 20),
		"CPUWeight": uint64(100), "CPUQuotaPeriodUSec": uint64(100000), "CPUQuotaPerSecUSec": uint64(250000),
		"AllowedCPUs": []byte{0x07, 0x02}, "AllowedMemoryNodes": []byte{0x01},
		"TasksMax":           uint64(42),
		"IOWeight":           cgroups.BlkioWeightToIOWeight(500),
		"IODeviceWeight":     []ioWeight{{"/dev/block/8:0", cgroups.BlkioWeightToIOWeight(100)}},
		"IOReadBandwidthMax": []ioLimit{{"/dev/block/8:0", 1 << 20}},
		"IOWriteIOPSMax":     []ioLimit{{"/dev/block/8:16", 100}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v2 properties:\n got %v\nwant %v", got, want)
	}
	// Unified keys with a property, sorted by key; memory.oom.group has none
	// (a file only), nor do the hugepage limits.
	tail := props[len(props)-3:]
	wantTail := []sd.Property{prop("CPUQuotaPeriodUSec", uint64(50000)), prop("CPUQuotaPerSecUSec", uint64(math.MaxUint64)), prop("MemoryHigh", uint64(50000000))}
	if !reflect.DeepEqual(tail, wantTail) {
		t.Errorf("unified properties = %v, want %v", tail, wantTail)
	}

	// No /dev/block link: the per-device IO settings are files only.
	props, err = resourceProperties(&specs.LinuxResources{BlockIO: r.BlockIO}, cgroups.ModeUnified, false, systemdFeatures{}, noIODev)
	if err != nil {
		t.Fatal(err)
	}
	if got := propMap(t, props); !reflect.DeepEqual(got, map[string]any{"IOWeight": cgroups.BlkioWeightToIOWeight(500)}) {
		t.Errorf("without device links: %v", got)
	}
	// An old systemd lacks AllowedCPUs and the quota period: files only.
	props, _ = resourceProperties(&specs.LinuxResources{CPU: r.CPU}, cgroups.ModeUnified, false, systemdFeatures{version: 239}, noIODev)
	if got := propMap(t, props); !reflect.DeepEqual(got, map[string]any{"CPUWeight": uint64(100), "CPUQuotaPerSecUSec": uint64(250000)}) {
		t.Errorf("systemd 239: %v", got)
	}
}

func TestResourcePropertiesV1(t *testing.T) {
	r := &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: i64p(-1), Swappiness: u64p(10)},
		CPU:     &specs.LinuxCPU{Shares: u64p(512), Quota: i64p(33333), Period: u64p(100000), Cpus: "0"},
		Pids:    &specs.LinuxPids{Limit: i64p(-1)},
		BlockIO: &specs.LinuxBlockIO{Weight: u16p(300), ThrottleReadIOPSDevice: []specs.LinuxThrottleDevice{{Rate: 5}}},
	}
	props, err := resourceProperties(r, cgroups.ModeHybrid, false, systemdFeatures{version: 252}, ioDevAll)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"MemoryLimit": uint64(math.MaxUint64), "CPUShares": uint64(512), "CPUQuotaPeriodUSec": uint64(100000),
		// 333330 µs per second rounds up to whole percent.
		"CPUQuotaPerSecUSec": uint64(340000), "TasksMax": uint64(math.MaxUint64), "BlockIOWeight": uint64(300),
	}
	if got := propMap(t, props); !reflect.DeepEqual(got, want) {
		t.Errorf("v1 properties:\n got %v\nwant %v", got, want)
	}
}

func TestDeviceProperties(t *testing.T) {
	procDevs := filepath.Join(t.TempDir(), "devices")
	os.WriteFile(procDevs, []byte("Character devices:\n  1 mem\n  5 /dev/tty\n  5 /dev/console\n136 pts\n\nBlock devices:\n  7 loop\n  8 sd\n"), 0o644)
	old := procDevicesFile
	procDevicesFile = procDevs
	t.Cleanup(func() { procDevicesFile = old })
	maj := func(v int64) *int64 { return &v }

	for _, tc := range []struct {
		name   string
		rules  []specs.LinuxDeviceCgroup
		policy string
		allow  []deviceAllow
	}{
		{"runc defaults", []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: maj(1), Minor: maj(3), Access: "rwm"},
			{Allow: true, Type: "c", Major: maj(136), Minor: maj(-1), Access: "rwm"},
			{Allow: true, Type: "c", Major: maj(5), Minor: maj(2), Access: "rw"},
			{Allow: true, Type: "b", Major: maj(8), Minor: maj(0), Access: "r"},
		}, "strict", []deviceAllow{{"/dev/char/1:3", "rwm"}, {"char-pts", "rwm"}, {"/dev/char/5:2", "rw"}, {"/dev/block/8:0", "r"}}},
		{"all char devices", []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Access: "rm"}},
			"strict", []deviceAllow{{"char-*", "rm"}}},
		{"everything", []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}, "auto", []deviceAllow{}},
		{"a deny list", []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}, {Allow: false, Type: "c", Major: maj(1), Minor: maj(1), Access: "rwm"}},
			"auto", []deviceAllow{}},
		{"nothing", []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, "strict", []deviceAllow{}},
		{"all of one access", []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "a", Access: "m"}},
			"strict", []deviceAllow{{"char-*", "m"}, {"block-*", "m"}}},
		{"a major systemd cannot name", []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Major: maj(250), Access: "rwm"}},
			"auto", []deviceAllow{}},
	} {
		props, err := deviceProperties(tc.rules)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		got := propMap(t, props)
		if got["DevicePolicy"] != tc.policy || !reflect.DeepEqual(got["DeviceAllow"], tc.allow) {
			t.Errorf("%s: DevicePolicy=%v DeviceAllow=%v; want %s %v", tc.name, got["DevicePolicy"], got["DeviceAllow"], tc.policy, tc.allow)
		}
	}
	if _, err := deviceProperties([]specs.LinuxDeviceCgroup{{Type: "x"}}); err == nil {
		t.Error("an invalid rule was accepted")
	}
}

func TestAnnotationProperties(t *testing.T) {
	props, err := AnnotationProperties(map[string]string{
		"org.systemd.property.TimeoutStopSec": "uint64 5",
		"org.systemd.property.CollectMode":    "'inactive-or-failed'",
		"org.systemd.property.RuntimeMaxUSec": "uint64 1000",
		"org.systemd.property.CPUWeight":      "uint64 7",
		"org.systemd.property.AccuracySec":    "1.5",
		"io.kubernetes.cri.container-type":    "container",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []sd.Property{
		prop("AccuracyUSec", uint64(1500000)), prop("CPUWeight", uint64(7)), prop("CollectMode", "inactive-or-failed"),
		prop("RuntimeMaxUSec", uint64(1000)), prop("TimeoutStopUSec", uint64(5000000)),
	}
	if !reflect.DeepEqual(props, want) {
		t.Errorf("got %v, want %v", props, want)
	}
	for ann, msg := range map[string]string{
		"org.systemd.property.lower":    "not a systemd property name",
		"org.systemd.property.A-B":      "not a systemd property name",
		"org.systemd.property.Delegate": "not a D-Bus value",
	} {
		v := "yes please"
		if _, err := AnnotationProperties(map[string]string{ann: v}); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s=%q: err = %v, want %q", ann, v, err, msg)
		}
	}
	if _, err := AnnotationProperties(map[string]string{"org.systemd.property.TimeoutSec": "'ten'"}); err == nil {
		t.Error("seconds given as text were accepted")
	}
}

func TestParseSystemdVersion(t *testing.T) {
	for in, want := range map[string]int{`"252.22-1~deb12u1"`: 252, `"v256.4"`: 256, `'249'`: 249, `""`: 0} {
		if got := parseSystemdVersion(in); got != want {
			t.Errorf("parseSystemdVersion(%s) = %d, want %d", in, got, want)
		}
	}
}

// fakeSystemd stands in for systemd on D-Bus: it records every call and, for
// a started scope, makes the unit's cgroup in the fake tree with the given
// pids in it, as systemd would.
type fakeSystemd struct {
	mu        sync.Mutex
	root      string // the fake cgroup2 root
	calls     []string
	started   map[string][]sd.Property
	set       map[string][]sd.Property
	existsErr int // StartTransientUnit answers UnitExists this many times
	active    bool
}

func (f *fakeSystemd) record(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
}

func (f *fakeSystemd) StartTransientUnitContext(_ context.Context, name, mode string, props []sd.Property, ch chan<- string) (int, error) {
	f.record("start " + name + " " + mode)
	if f.existsErr > 0 {
		f.existsErr--
		return 0, dbus.Error{Name: "org.freedesktop.systemd1.UnitExists", Body: []any{"Unit " + name + " already exists."}}
	}
	f.started[name] = props
	var slice string
	var pids []uint32
	for _, p := range props {
		switch p.Name {
		case "Slice":
			slice = p.Value.Value().(string)
		case "PIDs":
			pids = p.Value.Value().([]uint32)
		}
	}
	sp, _ := ExpandSlice(slice)
	dir := filepath.Join(f.root, sp, name)
	os.MkdirAll(dir, 0o755)
	for n, c := range v2Files {
		os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644)
	}
	var procs strings.Builder
	for _, p := range pids {
		fmt.Fprintln(&procs, p)
	}
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(procs.String()), 0o644)
	ch <- "done"
	return 1, nil
}

func (f *fakeSystemd) StopUnitContext(_ context.Context, name, mode string, ch chan<- string) (int, error) {
	f.record("stop " + name + " " + mode)
	if _, ok := f.started[name]; !ok {
		return 0, dbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit", Body: []any{"Unit " + name + " not loaded."}}
	}
	delete(f.started, name)
	ch <- "done"
	return 2, nil
}

func (f *fakeSystemd) SetUnitPropertiesContext(_ context.Context, name string, runtime bool, props ...sd.Property) error {
	f.record(fmt.Sprintf("set %s runtime=%v", name, runtime))
	if _, ok := f.started[name]; !ok {
		return dbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit", Body: []any{"Unit " + name + " not loaded."}}
	}
	f.set[name] = append(f.set[name], props...)
	return nil
}

func (f *fakeSystemd) ResetFailedUnitContext(_ context.Context, name string) error {
	f.record("reset-failed " + name)
	return nil
}

func (f *fakeSystemd) GetUnitPropertyContext(_ context.Context, unit, name string) (*sd.Property, error) {
	f.record("get " + unit + " " + name)
	if name == "ActiveState" {
		s := "failed"
		if f.active {
			s = "active"
		}
		return &sd.Property{Name: name, Value: dbus.MakeVariant(s)}, nil
	}
	return &sd.Property{Name: name, Value: dbus.MakeVariant("/system.slice/" + unit)}, nil
}

func (f *fakeSystemd) GetManagerProperty(name string) (string, error) {
	return `"252.22-1~deb12u1"`, nil
}

func (f *fakeSystemd) Close() { f.record("close") }

func withFakeSystemd(t *testing.T, root string) *fakeSystemd {
	f := &fakeSystemd{root: root, started: map[string][]sd.Property{}, set: map[string][]sd.Property{}}
	old := dialSystemd
	dialSystemd = func() (systemdConn, error) { return f, nil }
	t.Cleanup(func() { dialSystemd = old })
	return f
}

// alive: the process exists and is not a zombie (wait4 would also report
// the placeholder's trace stops, so /proc tells).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// TestSystemdManagerLifecycle drives the systemd driver against a fake
// systemd and a fake cgroup2 tree: the scope starts with the placeholder in
// it and runc's properties, limits go to systemd and then to the files, the
// first join releases the placeholder, Load recognises the unit, and
// Destroy stops and resets it.
func TestSystemdManagerLifecycle(t *testing.T) {
	f := newFakeV2(t, "system.slice")
	sys := withFakeSystemd(t, f.root)
	m, err := New("system.slice:berth:ct1", "ct1", []sd.Property{prop("CollectMode", "inactive-or-failed")}, cgroups.WithRoot(f.root), cgroups.WithMode(cgroups.ModeUnified))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.root, "system.slice", "berth-ct1.scope")
	if got := m.Paths(); !reflect.DeepEqual(got, map[string]string{"": dir}) {
		t.Fatalf("Paths = %v, want the scope's directory %s", got, dir)
	}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	props := propMap(t, sys.started["berth-ct1.scope"])
	pids, _ := props["PIDs"].([]uint32)
	if len(pids) != 1 {
		t.Fatalf("scope started with PIDs %v, want the placeholder", props["PIDs"])
	}
	hold := int(pids[0])
	t.Cleanup(func() { unix.Kill(hold, unix.SIGKILL) })
	for name, want := range map[string]any{
		"Slice": "system.slice", "Delegate": true, "DefaultDependencies": false, "MemoryAccounting": true,
		"CPUAccounting": true, "TasksAccounting": true, "IOAccounting": true, "CollectMode": "inactive-or-failed",
		"Description": "berth container ct1",
	} {
		if !reflect.DeepEqual(props[name], want) {
			t.Errorf("unit property %s = %v, want %v", name, props[name], want)
		}
	}
	var st []byte
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if st, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", hold)); err != nil || strings.Contains(string(st), ") t ") {
			break
		}
	}
	if err != nil || !strings.Contains(string(st), ") t ") {
		t.Errorf("placeholder %d is not stopped before running (stat %q, %v)", hold, st, err)
	}

	r := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64p(1 << 26)}, Pids: &specs.LinuxPids{Limit: i64p(10)},
		CPU: &specs.LinuxCPU{Quota: i64p(50000), Period: u64p(100000)}}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	set := propMap(t, sys.set["berth-ct1.scope"])
	if set["MemoryMax"] != uint64(1<<26) || set["TasksMax"] != uint64(10) || set["CPUQuotaPerSecUSec"] != uint64(500000) {
		t.Errorf("SetUnitProperties got %v", set)
	}
	for file, want := range map[string]string{"memory.max": "67108864", "pids.max": "10", "cpu.max": "50000 100000"} {
		if b, _ := os.ReadFile(filepath.Join(dir, file)); strings.TrimSpace(string(b)) != want {
			t.Errorf("%s = %q, want %q (files are written too)", file, b, want)
		}
	}
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: u64p(1)}}); err == nil {
		t.Error("a resource cgroup v2 lacks was accepted")
	}

	// The container's first process joins: the placeholder goes.
	j, err := cgroups.OpenJoin(m.Paths())
	if err != nil {
		t.Fatal(err)
	}
	if !alive(hold) {
		t.Fatal("placeholder gone before the join")
	}
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprintf("%d\n%d\n", hold, os.Getpid())), 0o644)
	start := time.Now()
	j.Close()
	if alive(hold) {
		t.Error("placeholder still there after the join")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("release took %v", d)
	}
	j.Close() // twice is fine

	// A later command loads the saved paths and updates through systemd.
	lm, err := cgroups.Load(m.Paths(), cgroups.WithRoot(f.root), cgroups.WithMode(cgroups.ModeUnified))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := lm.(*manager); !ok {
		t.Fatalf("Load of a scope's paths gave %T, want the systemd driver", lm)
	}
	sys.set = map[string][]sd.Property{}
	if err := lm.Update(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64p(20)}}); err != nil {
		t.Fatal(err)
	}
	if got := propMap(t, sys.set["berth-ct1.scope"]); !reflect.DeepEqual(got, map[string]any{"TasksMax": uint64(20)}) {
		t.Errorf("update sent %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "pids.max")); !strings.HasSuffix(string(b), "20") {
		t.Errorf("pids.max = %q after update", b)
	}

	os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644)
	sys.calls = nil
	if err := lm.Destroy(); err != nil {
		t.Fatal(err)
	}
	want := []string{"stop berth-ct1.scope replace", "reset-failed berth-ct1.scope", "close"}
	if !reflect.DeepEqual(sys.calls, want) {
		t.Errorf("destroy calls = %q, want %q", sys.calls, want)
	}
	if exists(dir) {
		t.Error("scope directory left behind")
	}
	// Destroying again (delete after a failed delete): the unit is gone.
	if err := lm.Destroy(); err != nil {
		t.Errorf("second destroy: %v", err)
	}
}

// TestSystemdCreateFailureKillsPlaceholder: a create that fails between the
// scope and the spawn destroys the manager, which must end the placeholder.
func TestSystemdCreateFailureKillsPlaceholder(t *testing.T) {
	f := newFakeV2(t, "system.slice")
	sys := withFakeSystemd(t, f.root)
	m, err := New("", "ct2", nil, cgroups.WithRoot(f.root), cgroups.WithMode(cgroups.ModeUnified))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	hold := int(propMap(t, sys.started["runc-ct2.scope"])["PIDs"].([]uint32)[0])
	t.Cleanup(func() { unix.Kill(hold, unix.SIGKILL) })
	os.WriteFile(filepath.Join(f.root, "system.slice", "runc-ct2.scope", "cgroup.procs"), nil, 0o644)
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	if alive(hold) {
		t.Error("placeholder survived Destroy")
	}
}

func TestUnitExists(t *testing.T) {
	f := newFakeV2(t, "system.slice")
	sys := withFakeSystemd(t, f.root)
	sys.existsErr = 1
	m, _ := New("", "ct3", nil, cgroups.WithRoot(f.root), cgroups.WithMode(cgroups.ModeUnified))
	if err := m.Create(); err != nil {
		t.Fatalf("a failed leftover unit was not reset: %v", err)
	}
	os.WriteFile(filepath.Join(f.root, "system.slice", "runc-ct3.scope", "cgroup.procs"), nil, 0o644)
	m.Destroy()
	if !reflect.DeepEqual(sys.calls[:3], []string{"start runc-ct3.scope replace", "get runc-ct3.scope ActiveState", "reset-failed runc-ct3.scope"}) {
		t.Errorf("calls = %q", sys.calls)
	}
	sys.existsErr, sys.active, sys.calls = 1, true, nil
	m, _ = New("", "ct3", nil, cgroups.WithRoot(f.root), cgroups.WithMode(cgroups.ModeUnified))
	if err := m.Create(); err == nil || !strings.Contains(err.Error(), "already exists and is active") {
		t.Errorf("an active unit of the same name: err = %v", err)
	}
}

func TestUnitOf(t *testing.T) {
	for _, tc := range []struct {
		paths map[string]string
		unit  string
	}{
		{map[string]string{"": "/sys/fs/cgroup/system.slice/runc-x.scope"}, "runc-x.scope"},
		{map[string]string{"": "/sys/fs/cgroup/a.slice/a-b.slice"}, "a-b.slice"},
		{map[string]string{"memory": "/sys/fs/cgroup/memory/machine.slice/libpod-1.scope", "name=systemd": "/sys/fs/cgroup/systemd/machine.slice/libpod-1.scope"}, "libpod-1.scope"},
		{map[string]string{"": "/sys/fs/cgroup/berth/ct"}, ""},
		{map[string]string{"": "/sys/fs/cgroup/x.scope"}, ""},
		{map[string]string{"": "/sys/fs/cgroup/system.slice/other.slice"}, ""},
		{map[string]string{"memory": "/sys/fs/cgroup/memory/system.slice/a.scope"}, ""},
	} {
		u, ok := unitOf(tc.paths)
		if (tc.unit != "") != ok || u.Name != tc.unit {
			t.Errorf("unitOf(%v) = %+v, %v; want %q", tc.paths, u, ok, tc.unit)
		}
	}
}

// TestSystemdLoadedWithoutSystemd: saved paths that look like a unit's, on a
// host where systemd cannot be reached, are still managed through the files.
func TestSystemdLoadedWithoutSystemd(t *testing.T) {
	f := newFakeV2(t, "system.slice/runc-x.scope")
	old := dialSystemd
	dialSystemd = func() (systemdConn, error) { return nil, errors.New("no bus") }
	t.Cleanup(func() { dialSystemd = old })
	dir := filepath.Join(f.root, "system.slice", "runc-x.scope")
	m, err := cgroups.Load(map[string]string{"": dir}, cgroups.WithRoot(f.root), cgroups.WithMode(cgroups.ModeUnified))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Update(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64p(7)}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "pids.max")); !strings.HasSuffix(string(b), "7") {
		t.Errorf("pids.max = %q", b)
	}
	os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644)
	if err := m.Destroy(); err != nil || exists(dir) {
		t.Errorf("destroy without systemd: %v (dir left: %v)", err, exists(dir))
	}
}

// TestSystemdApply: Apply(pid) is runc's order: the scope starts with pid
// in it, no placeholder.
func TestSystemdApply(t *testing.T) {
	f := newFakeV2(t, "system.slice")
	sys := withFakeSystemd(t, f.root)
	m, err := New("machine.slice:libpod:abc", "abc", nil, cgroups.WithRoot(f.root), cgroups.WithMode(cgroups.ModeUnified))
	if err != nil {
		t.Fatal(err)
	}
	// The fake makes the scope's directory in the slice's.
	os.MkdirAll(filepath.Join(f.root, "machine.slice"), 0o755)
	for n, c := range v2Files {
		os.WriteFile(filepath.Join(f.root, "machine.slice", n), []byte(c), 0o644)
	}
	if err := m.Apply(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	props := propMap(t, sys.started["libpod-abc.scope"])
	if pids := props["PIDs"].([]uint32); len(pids) != 1 || int(pids[0]) != os.Getpid() || props["Slice"] != "machine.slice" {
		t.Errorf("started with %v", props)
	}
	if b, _ := os.ReadFile(filepath.Join(f.root, "machine.slice", "libpod-abc.scope", "cgroup.procs")); !strings.Contains(string(b), fmt.Sprint(os.Getpid())) {
		t.Errorf("cgroup.procs = %q", b)
	}
}

// TestSystemdSliceUnit: a name ending in ".slice" makes a slice unit, which
// systemd starts empty: no placeholder, no Delegate, Wants on the parent.
func TestSystemdSliceUnit(t *testing.T) {
	f := newFakeV2(t, "system.slice")
	sys := withFakeSystemd(t, f.root)
	m, err := New("system.slice:x:system-ct.slice", "ct", nil, cgroups.WithRoot(f.root), cgroups.WithMode(cgroups.ModeUnified))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Paths()[""]; got != filepath.Join(f.root, "system.slice", "system-ct.slice") {
		t.Fatalf("path %s", got)
	}
	// The fake puts a unit without a Slice property at the root.
	os.MkdirAll(filepath.Join(f.root, "system.slice", "system-ct.slice"), 0o755)
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	props := propMap(t, sys.started["system-ct.slice"])
	if _, ok := props["PIDs"]; ok {
		t.Errorf("a slice started with PIDs: %v", props)
	}
	if _, ok := props["Delegate"]; ok {
		t.Errorf("a slice with Delegate: %v", props)
	}
	if w, _ := props["Wants"].([]string); len(w) != 1 || w[0] != "system.slice" {
		t.Errorf("Wants = %v", props["Wants"])
	}
}
