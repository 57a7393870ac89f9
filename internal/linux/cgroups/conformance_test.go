package cgroups

import (
	"errors"
	"math"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/linux/cgroups/devices"
)

// driverCase is one resource request and, per driver, exactly the writes it
// must cause (file relative to the fake root -> bytes written, in order), or
// the error it must give with nothing written at all.
type driverCase struct {
	name   string
	r      *specs.LinuxResources
	update bool
	v1     map[string]string
	v1Err  string
	v2     map[string]string
	v2Err  string
	// v2Probe checks the recorded device program (v2 writes no file for it).
	v2Probe func(t *testing.T, prog []devices.Insn)
}

func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }

var conformanceCases = []driverCase{
	{
		name: "memory",
		r: &specs.LinuxResources{Memory: &specs.LinuxMemory{
			Limit: p64(64 << 20), Reservation: p64(32 << 20), Swap: p64(128 << 20), Kernel: p64(1 << 20),
		}},
		v1: map[string]string{
			"memory/ct/memory.limit_in_bytes":       "67108864",
			"memory/ct/memory.memsw.limit_in_bytes": "134217728",
			"memory/ct/memory.soft_limit_in_bytes":  "33554432",
		},
		v2: map[string]string{"ct/memory.max": "67108864", "ct/memory.swap.max": "67108864", "ct/memory.low": "33554432"},
	},
	{
		name: "memory v1 only knobs",
		r: &specs.LinuxResources{Memory: &specs.LinuxMemory{
			Swappiness: pu64(30), DisableOOMKiller: pbool(true), KernelTCP: p64(1 << 20),
		}},
		v1: map[string]string{
			"memory/ct/memory.swappiness": "30", "memory/ct/memory.oom_control": "1",
			"memory/ct/memory.kmem.tcp.limit_in_bytes": "1048576",
		},
		v2Err: "swappiness is not supported on cgroup v2",
	},
	{
		name: "memory unlimited implies unlimited swap",
		r:    &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: p64(-1)}},
		v1:   map[string]string{"memory/ct/memory.limit_in_bytes": "-1", "memory/ct/memory.memsw.limit_in_bytes": "-1"},
		v2:   map[string]string{"ct/memory.max": "max", "ct/memory.swap.max": "max"},
	},
	{
		name: "memory equal to swap disables swap on v2",
		r:    &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: p64(1 << 20), Swap: p64(1 << 20)}},
		v1:   map[string]string{"memory/ct/memory.limit_in_bytes": "1048576", "memory/ct/memory.memsw.limit_in_bytes": "1048576"},
		v2:   map[string]string{"ct/memory.max": "1048576", "ct/memory.swap.max": "0"},
	},
	{
		name:  "swap below memory",
		r:     &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: p64(2 << 20), Swap: p64(1 << 20)}},
		v1Err: "should be >= memory limit",
		v2Err: "should be >= memory limit",
	},
	{
		name:  "checkBeforeUpdate below usage",
		r:     &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: p64(4096), CheckBeforeUpdate: pbool(true)}},
		v1Err: "below current usage 1048576",
		v2Err: "below current usage 1048576",
	},
	{
		name:  "swappiness out of range",
		r:     &specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: pu64(101)}},
		v1Err: "swappiness 101 is not in 0-100",
		v2Err: "swappiness is not supported",
	},
	// What real engines send for "not set" (see cpuSet and friends): no
	// write, no error, on either driver.
	{
		name: "docker run defaults",
		r: &specs.LinuxResources{
			Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			Memory:  &specs.LinuxMemory{DisableOOMKiller: pbool(false)},
			CPU:     &specs.LinuxCPU{Shares: pu64(0)},
			BlockIO: &specs.LinuxBlockIO{Weight: u16(0)},
		},
		update: true,
		v1:     map[string]string{},
		v2:     map[string]string{},
	},
	{
		name: "docker update zeros",
		r: &specs.LinuxResources{
			CPU:    &specs.LinuxCPU{Shares: pu64(0), Period: pu64(0), Quota: p64(0)},
			Memory: &specs.LinuxMemory{Limit: p64(0), Reservation: p64(0), Kernel: p64(0)},
		},
		update: true,
		v1:     map[string]string{},
		v2:     map[string]string{},
	},
	{
		name:   "swappiness -1 and zero realtime knobs are unset",
		r:      &specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: pu64(math.MaxUint64)}, CPU: &specs.LinuxCPU{RealtimePeriod: pu64(0), RealtimeRuntime: p64(0)}},
		update: true,
		v1:     map[string]string{},
		v2:     map[string]string{},
	},
	{
		name:   "docker --cpu-shares beside unset values",
		r:      &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: pu64(512)}, BlockIO: &specs.LinuxBlockIO{Weight: u16(0)}, Memory: &specs.LinuxMemory{Swappiness: pu64(math.MaxUint64)}},
		update: true,
		v1:     map[string]string{"cpu/ct/cpu.shares": "512"},
		v2:     map[string]string{"ct/cpu.weight": "59"},
	},
	{
		name: "cpu",
		r: &specs.LinuxResources{CPU: &specs.LinuxCPU{
			Shares: pu64(512), Quota: p64(50000), Period: pu64(100000), Burst: pu64(1000), Idle: p64(1), Cpus: "0-1", Mems: "0",
		}},
		v1: map[string]string{
			"cpu/ct/cpu.shares": "512", "cpu/ct/cpu.cfs_quota_us": "50000", "cpu/ct/cpu.cfs_period_us": "100000",
			"cpu/ct/cpu.cfs_burst_us": "1000", "cpu/ct/cpu.idle": "1", "cpuset/ct/cpuset.cpus": "0-1", "cpuset/ct/cpuset.mems": "0",
		},
		v2: map[string]string{
			"ct/cpu.weight": "59", "ct/cpu.max": "50000 100000", "ct/cpu.max.burst": "1000", "ct/cpu.idle": "1",
			"ct/cpuset.cpus": "0-1", "ct/cpuset.mems": "0",
		},
	},
	{
		name: "cpu quota unlimited",
		r:    &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: p64(-1)}},
		v1:   map[string]string{"cpu/ct/cpu.cfs_quota_us": "-1"},
		v2:   map[string]string{"ct/cpu.max": "max"},
	},
	{
		name:  "cpu realtime",
		r:     &specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimePeriod: pu64(1000000), RealtimeRuntime: p64(950000)}},
		v1:    map[string]string{"cpu/ct/cpu.rt_period_us": "1000000", "cpu/ct/cpu.rt_runtime_us": "950000"},
		v2Err: "realtime",
	},
	{
		name: "pids",
		r:    &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: p64(100)}},
		v1:   map[string]string{"pids/ct/pids.max": "100"},
		v2:   map[string]string{"ct/pids.max": "100"},
	},
	{
		name: "pids unlimited",
		r:    &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: p64(0)}},
		v1:   map[string]string{"pids/ct/pids.max": "max"},
		v2:   map[string]string{"ct/pids.max": "max"},
	},
	{
		name: "blockIO",
		r: &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
			Weight:                  u16(500),
			WeightDevice:            []specs.LinuxWeightDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Weight: u16(300)}},
			ThrottleReadBpsDevice:   []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 1000}},
			ThrottleWriteBpsDevice:  []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 2000}},
			ThrottleReadIOPSDevice:  []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 16}, Rate: 10}},
			ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 16}, Rate: 20}},
		}},
		v1: map[string]string{
			"blkio/ct/blkio.bfq.weight": "500", "blkio/ct/blkio.bfq.weight_device": "8:0 300",
			"blkio/ct/blkio.throttle.read_bps_device": "8:0 1000", "blkio/ct/blkio.throttle.write_bps_device": "8:0 2000",
			"blkio/ct/blkio.throttle.read_iops_device": "8:16 10", "blkio/ct/blkio.throttle.write_iops_device": "8:16 20",
		},
		v2: map[string]string{
			"ct/io.bfq.weight": "500" + "8:0 300",
			"ct/io.max":        "8:0 rbps=1000" + "8:0 wbps=2000" + "8:16 riops=10" + "8:16 wiops=20",
		},
	},
	{
		name:  "blockIO weight out of range",
		r:     &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: u16(5)}},
		v1Err: "weight 5 is not in 10-1000",
		v2Err: "weight 5 is not in 10-1000",
	},
	{
		name: "hugetlb",
		r:    &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 21}}},
		v1:   map[string]string{"hugetlb/ct/hugetlb.2MB.limit_in_bytes": "8388608", "hugetlb/ct/hugetlb.2MB.rsvd.limit_in_bytes": "8388608"},
		v2:   map[string]string{"ct/hugetlb.2MB.max": "8388608", "ct/hugetlb.2MB.rsvd.max": "8388608"},
	},
	{
		name:  "hugetlb bad size",
		r:     &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "../2MB", Limit: 1}}},
		v1Err: "hugepage size",
		v2Err: "hugepage size",
	},
	{
		name: "network",
		r: &specs.LinuxResources{Network: &specs.LinuxNetwork{
			ClassID: u32(0x100001), Priorities: []specs.LinuxInterfacePriority{{Name: "eth0", Priority: 5}, {Name: "lo", Priority: 1}},
		}},
		v1:    map[string]string{"net_cls/ct/net_cls.classid": "1048577", "net_prio/ct/net_prio.ifpriomap": "eth0 5" + "lo 1"},
		v2Err: "do not exist on cgroup v2",
	},
	{
		name: "rdma",
		r: &specs.LinuxResources{Rdma: map[string]specs.LinuxRdma{
			"mlx5_1": {HcaHandles: u32(3)}, "mlx5_0": {HcaHandles: u32(3), HcaObjects: u32(10)},
		}},
		v1: map[string]string{"rdma/ct/rdma.max": "mlx5_0 hca_handle=3 hca_object=10" + "mlx5_1 hca_handle=3"},
		v2: map[string]string{"ct/rdma.max": "mlx5_0 hca_handle=3 hca_object=10" + "mlx5_1 hca_handle=3"},
	},
	{
		name:  "unified",
		r:     &specs.LinuxResources{Unified: map[string]string{"memory.high": "1000000", "cpu.weight": "7"}},
		v1Err: "unified is only supported on a cgroup v2",
		v2:    map[string]string{"ct/memory.high": "1000000", "ct/cpu.weight": "7"},
	},
	{
		name:  "unified key escapes the cgroup",
		r:     &specs.LinuxResources{Unified: map[string]string{"../memory.max": "1"}},
		v1Err: "unified is only supported",
		v2Err: "is not a cgroup file name",
	},
	{
		name:  "unified key the runtime owns",
		r:     &specs.LinuxResources{Unified: map[string]string{"cgroup.procs": "1"}},
		v1Err: "unified is only supported",
		v2Err: "may not be set",
	},
	{
		name: "devices",
		r:    &specs.LinuxResources{Devices: append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, devices.DefaultAllowed[2:4]...)},
		v1:   map[string]string{"devices/ct/devices.deny": "a", "devices/ct/devices.allow": "c 1:3 rwm" + "c 1:8 rwm"},
		v2:   map[string]string{},
		v2Probe: func(t *testing.T, prog []devices.Insn) {
			for _, p := range []struct {
				minor uint32
				want  uint64
			}{{3, 1}, {8, 1}, {1, 0}} {
				if r, ok := devices.Run(prog, 'c', 1, p.minor, devices.AccRead); !ok || r != p.want {
					t.Errorf("device program on c 1:%d = %d, %v; want %d", p.minor, r, ok, p.want)
				}
			}
		},
	},
	{
		name:   "update never touches devices",
		update: true,
		r:      &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}, Pids: &specs.LinuxPids{Limit: p64(7)}},
		v1:     map[string]string{"pids/ct/pids.max": "7"},
		v2:     map[string]string{"ct/pids.max": "7"},
	},
	{
		name:  "invalid device rule",
		r:     &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "z"}}},
		v1Err: "invalid type",
		v2Err: "invalid type",
	},
	{
		name: "validation precedes writes",
		r: &specs.LinuxResources{
			Pids:    &specs.LinuxPids{Limit: p64(5)},
			BlockIO: &specs.LinuxBlockIO{Weight: u16(1)},
		},
		v1Err: "not in 10-1000",
		v2Err: "not in 10-1000",
	},
}

// TestConformance runs every case against both drivers on a fake cgroupfs.
func TestConformance(t *testing.T) {
	for _, tc := range conformanceCases {
		t.Run("v1/"+tc.name, func(t *testing.T) {
			f := newFakeV1(t, "ct")
			m, err := New("/ct", "x", WithRoot(f.root), WithMode(ModeHybrid), fakeMounts(t, f.root))
			if err != nil {
				t.Fatal(err)
			}
			runCase(t, f, m, tc, tc.v1, tc.v1Err, nil)
		})
		t.Run("v2/"+tc.name, func(t *testing.T) {
			f := newFakeV2(t, "ct")
			m, err := New("/ct", "x", WithRoot(f.root), WithMode(ModeUnified))
			if err != nil {
				t.Fatal(err)
			}
			var progs [][]devices.Insn
			orig := attachDevices
			attachDevices = func(dir string, p []devices.Insn) error {
				if dir != m.Path("") {
					t.Errorf("device program attached to %s", dir)
				}
				progs = append(progs, p)
				return nil
			}
			t.Cleanup(func() { attachDevices = orig })
			runCase(t, f, m, tc, tc.v2, tc.v2Err, &progs)
			if tc.v2Probe != nil {
				if len(progs) != 1 {
					t.Fatalf("%d device programs attached, want 1", len(progs))
				}
				tc.v2Probe(t, progs[0])
			} else if progs != nil {
				t.Errorf("unexpected device program attached")
			}
		})
	}
}

func runCase(t *testing.T, f *fakeFS, m Manager, tc driverCase, want map[string]string, wantErr string, _ *[][]devices.Insn) {
	t.Helper()
	if want == nil && wantErr == "" {
		t.Fatal("case has neither writes nor an error for this driver")
	}
	set := m.Set
	if tc.update {
		set = m.Update
	}
	err := set(tc.r)
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("err = %v, want one containing %q", err, wantErr)
		}
		compareWrites(t, f.diff(t), map[string]string{})
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	compareWrites(t, f.diff(t), want)
}

// TestConformancePlacement checks Create/Apply on both drivers: v1 joins every
// hierarchy (and the hybrid v2 tree) and fills an empty cpuset; v2 enables the
// parent's controllers for the child and joins once.
func TestConformancePlacement(t *testing.T) {
	t.Run("v1", func(t *testing.T) {
		f := newFakeV1(t, "ct")
		if err := mkdirFake(f.root + "/unified/ct"); err != nil {
			t.Fatal(err)
		}
		seed(t, f, f.root+"/unified/ct", map[string]string{"cgroup.procs": ""})
		m, err := New("/ct", "x", WithRoot(f.root), WithMode(ModeHybrid), fakeMounts(t, f.root))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Apply(42); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"cpuset/ct/cpuset.cpus": "0-1", "cpuset/ct/cpuset.mems": "0", "unified/ct/cgroup.procs": "42"}
		for ctrl := range fakeV1Files {
			want[ctrl+"/ct/cgroup.procs"] = "42"
		}
		want["systemd/ct/cgroup.procs"] = "42"
		compareWrites(t, f.diff(t), want)
		if _, err := m.CgroupFD(); !errors.Is(err, ErrNoCgroupFD) {
			t.Errorf("CgroupFD on v1 = %v", err)
		}
	})
	t.Run("v2", func(t *testing.T) {
		f := newFakeV2(t, "ct")
		m, err := New("/ct", "x", WithRoot(f.root), WithMode(ModeUnified))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Apply(42); err != nil {
			t.Fatal(err)
		}
		compareWrites(t, f.diff(t), map[string]string{
			"cgroup.subtree_control": "+cpuset +cpu +io +memory +hugetlb +pids +rdma",
			"ct/cgroup.procs":        "42",
		})
		fd, err := m.CgroupFD()
		if err != nil {
			t.Fatal(err)
		}
		fd.Close()
	})
}

func mkdirFake(p string) error {
	_, err := mkdirAll(p)
	return err
}
