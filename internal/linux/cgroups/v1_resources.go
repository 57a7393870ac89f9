package cgroups

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/cgroups/devices"
)

// step is one controller's share of a Set: planning validates the whole
// request first, so a bad field fails before any file is written.
type step struct {
	controller string
	write      func(dir string) error
}

func planV1(r *specs.LinuxResources, withDevices bool) ([]step, error) {
	if len(r.Unified) > 0 {
		return nil, errors.New("invalid resources: unified is only supported on a cgroup v2 (unified) host")
	}
	var plan []step
	add := func(c string, f func(string) error) { plan = append(plan, step{c, f}) }

	if withDevices && len(r.Devices) > 0 {
		rules, err := devices.FromSpec(r.Devices)
		if err != nil {
			return nil, fmt.Errorf("invalid resources: %w", err)
		}
		st, err := devices.Reduce(rules)
		if err != nil {
			return nil, fmt.Errorf("invalid resources: %w", err)
		}
		add("devices", func(dir string) error { return v1Devices(dir, st) })
	}
	if c := r.CPU; c != nil {
		if c.Cpus != "" || c.Mems != "" {
			add("cpuset", func(dir string) error {
				if c.Cpus != "" {
					if err := writeFile(dir, "cpuset.cpus", c.Cpus); err != nil {
						return err
					}
				}
				if c.Mems != "" {
					return writeFile(dir, "cpuset.mems", c.Mems)
				}
				return nil
			})
		}
		if cpuSet(c) || ptrU64(c.RealtimePeriod) != 0 || ptrI64(c.RealtimeRuntime) != 0 {
			add("cpu", func(dir string) error { return v1CPU(dir, c) })
		}
	}
	if mem := r.Memory; mem != nil {
		if err := validateMemory(mem); err != nil {
			return nil, err
		}
		if swappinessSet(mem) && *mem.Swappiness > 100 {
			return nil, fmt.Errorf("invalid resources: memory swappiness %d is not in 0-100", *mem.Swappiness)
		}
		if memorySet(mem) || swappinessSet(mem) {
			add("memory", func(dir string) error { return v1Memory(dir, mem) })
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil {
		add("pids", func(dir string) error { return writeFile(dir, "pids.max", pidsMax(*p.Limit)) })
	}
	if b := r.BlockIO; b != nil {
		if err := validateBlockIO(b); err != nil {
			return nil, err
		}
		if blockIOSet(b) {
			add("blkio", func(dir string) error { return v1BlockIO(dir, b) })
		}
	}
	if len(r.HugepageLimits) > 0 {
		if err := validateHugepages(r.HugepageLimits); err != nil {
			return nil, err
		}
		add("hugetlb", func(dir string) error {
			for _, h := range r.HugepageLimits {
				if err := writeFile(dir, "hugetlb."+h.Pagesize+".limit_in_bytes", utoa(h.Limit)); err != nil {
					return err
				}
				// Reservations (5.7+) get the same limit so a mapping cannot
				// reserve more than it may fault in.
				if exists(dir + "/hugetlb." + h.Pagesize + ".rsvd.limit_in_bytes") {
					if err := writeFile(dir, "hugetlb."+h.Pagesize+".rsvd.limit_in_bytes", utoa(h.Limit)); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	if n := r.Network; n != nil {
		if n.ClassID != nil {
			add("net_cls", func(dir string) error {
				return writeFile(dir, "net_cls.classid", strconv.FormatUint(uint64(*n.ClassID), 10))
			})
		}
		if len(n.Priorities) > 0 {
			for _, p := range n.Priorities {
				if p.Name == "" || strings.ContainsAny(p.Name, " \n") {
					return nil, fmt.Errorf("invalid resources: network priority interface name %q", p.Name)
				}
			}
			add("net_prio", func(dir string) error {
				for _, p := range n.Priorities {
					if err := writeFile(dir, "net_prio.ifpriomap", fmt.Sprintf("%s %d", p.Name, p.Priority)); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	if len(r.Rdma) > 0 {
		lines, err := rdmaLines(r.Rdma)
		if err != nil {
			return nil, err
		}
		add("rdma", func(dir string) error { return writeLines(dir, "rdma.max", lines) })
	}
	return plan, nil
}

func writeLines(dir, name string, lines []string) error {
	for _, l := range lines {
		if err := writeFile(dir, name, l); err != nil {
			return err
		}
	}
	return nil
}

// v1Devices replaces the cgroup's device list with st: reset to the default,
// then add each exception. It only runs from Set (create time, the init is
// still blocked), never from Update, so the instant of deny-all is harmless.
func v1Devices(dir string, st devices.State) error {
	reset, exc := "devices.deny", "devices.allow"
	if st.DefaultAllow {
		reset, exc = exc, reset
	}
	if err := writeFile(dir, reset, "a"); err != nil {
		return err
	}
	for _, e := range st.Exceptions {
		if err := writeFile(dir, exc, e.String()); err != nil {
			return err
		}
	}
	return nil
}

func v1CPU(dir string, c *specs.LinuxCPU) error {
	// Realtime period before runtime: the runtime must fit in the period.
	if v := ptrU64(c.RealtimePeriod); v != 0 {
		if err := writeFile(dir, "cpu.rt_period_us", utoa(v)); err != nil {
			return err
		}
	}
	if v := ptrI64(c.RealtimeRuntime); v != 0 {
		if err := writeFile(dir, "cpu.rt_runtime_us", itoa(v)); err != nil {
			return err
		}
	}
	if ptrU64(c.Shares) != 0 {
		if err := writeFile(dir, "cpu.shares", utoa(*c.Shares)); err != nil {
			return err
		}
		// The kernel clamps shares silently to [2, 262144]: read back and
		// tell the user, as runc does.
		got, err := readUint(dir, "cpu.shares")
		if err != nil {
			return err
		}
		if got < *c.Shares {
			return fmt.Errorf("the maximum allowed cpu-shares is %d", got)
		} else if got > *c.Shares {
			return fmt.Errorf("the minimum allowed cpu-shares is %d", got)
		}
	}
	quota := ptrI64(c.Quota)
	// A smaller period can be rejected (EINVAL) while the old quota/new
	// period ratio exceeds the parent's; burst likewise. Retry both after the
	// quota is in place.
	var retryPeriod, retryBurst bool
	if c.Period != nil && *c.Period != 0 {
		if err := writeFile(dir, "cpu.cfs_period_us", utoa(*c.Period)); err != nil {
			if !errors.Is(err, unix.EINVAL) || quota == 0 {
				return err
			}
			retryPeriod = true
		}
	}
	if c.Burst != nil {
		if err := writeFile(dir, "cpu.cfs_burst_us", utoa(*c.Burst)); err != nil {
			if !errors.Is(err, unix.EINVAL) || quota == 0 {
				return err
			}
			retryBurst = true
		}
	}
	if quota != 0 {
		if err := writeFile(dir, "cpu.cfs_quota_us", itoa(quota)); err != nil {
			return err
		}
		if retryPeriod {
			if err := writeFile(dir, "cpu.cfs_period_us", utoa(*c.Period)); err != nil {
				return err
			}
		}
		if retryBurst {
			if err := writeFile(dir, "cpu.cfs_burst_us", utoa(*c.Burst)); err != nil {
				return err
			}
		}
	}
	if c.Idle != nil {
		return writeFile(dir, "cpu.idle", itoa(*c.Idle))
	}
	return nil
}

func validateMemory(m *specs.LinuxMemory) error {
	limit, swap, res := ptrI64(m.Limit), ptrI64(m.Swap), ptrI64(m.Reservation)
	for name, v := range map[string]int64{"limit": limit, "swap": swap, "reservation": res, "kernelTCP": ptrI64(m.KernelTCP)} {
		if v < -1 {
			return fmt.Errorf("invalid resources: memory %s %d (want -1, 0 or a byte count)", name, v)
		}
	}
	if limit > 0 && swap > 0 && swap < limit {
		return fmt.Errorf("invalid resources: memory+swap limit %d should be >= memory limit %d", swap, limit)
	}
	return nil
}

// checkUsage refuses a limit below what the cgroup already uses
// (memory.checkBeforeUpdate), instead of letting the kernel OOM-kill.
func checkUsage(dir, usageFile string, m *specs.LinuxMemory) error {
	if m.CheckBeforeUpdate == nil || !*m.CheckBeforeUpdate || ptrI64(m.Limit) <= 0 {
		return nil
	}
	usage, err := readUint(dir, usageFile)
	if err != nil {
		return err
	}
	if uint64(*m.Limit) < usage {
		return fmt.Errorf("rejecting memory limit %d below current usage %d", *m.Limit, usage)
	}
	return nil
}

func v1Memory(dir string, m *specs.LinuxMemory) error {
	if err := checkUsage(dir, "memory.usage_in_bytes", m); err != nil {
		return err
	}
	limit, swap := ptrI64(m.Limit), ptrI64(m.Swap)
	// Unlimited memory with no swap given means unlimited swap too, where
	// the kernel accounts swap at all.
	if limit == -1 && swap == 0 && exists(dir+"/memory.memsw.limit_in_bytes") {
		swap = -1
	}
	// The kernel keeps memory <= memory+swap at every instant, so raising
	// both must write swap first and lowering must write memory first.
	swapFirst := false
	if limit != 0 && swap != 0 {
		cur, err := readUint(dir, "memory.limit_in_bytes")
		if err != nil {
			return err
		}
		swapFirst = swap == -1 || cur < uint64(swap)
	}
	setLimit := func() error {
		if limit == 0 {
			return nil
		}
		if err := writeFile(dir, "memory.limit_in_bytes", itoa(limit)); err != nil {
			if errors.Is(err, unix.EBUSY) {
				usage, _ := readUint(dir, "memory.usage_in_bytes")
				peak, _ := readUint(dir, "memory.max_usage_in_bytes")
				return fmt.Errorf("unable to set memory limit to %d (current usage: %d, peak usage: %d)", limit, usage, peak)
			}
			return err
		}
		return nil
	}
	setSwap := func() error {
		if swap == 0 {
			return nil
		}
		return writeFile(dir, "memory.memsw.limit_in_bytes", itoa(swap))
	}
	first, second := setLimit, setSwap
	if swapFirst {
		first, second = setSwap, setLimit
	}
	if err := first(); err != nil {
		return err
	}
	if err := second(); err != nil {
		return err
	}
	if v := ptrI64(m.Reservation); v != 0 {
		if err := writeFile(dir, "memory.soft_limit_in_bytes", itoa(v)); err != nil {
			return err
		}
	}
	// memory.kmem.limit_in_bytes is gone from current kernels; like runc
	// 1.2+, the deprecated Kernel field is accepted and ignored. So is
	// UseHierarchy: hierarchy is always on since 5.x and the file refuses 0.
	if v := ptrI64(m.KernelTCP); v != 0 {
		if err := writeFile(dir, "memory.kmem.tcp.limit_in_bytes", itoa(v)); err != nil {
			return err
		}
	}
	if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
		if err := writeFile(dir, "memory.oom_control", "1"); err != nil {
			return err
		}
	}
	if swappinessSet(m) {
		return writeFile(dir, "memory.swappiness", utoa(*m.Swappiness))
	}
	return nil
}

// pidsMax maps the spec's limit to pids.max: 0 or less means unlimited.
func pidsMax(limit int64) string {
	if limit <= 0 {
		return "max"
	}
	return itoa(limit)
}

func validateBlockIO(b *specs.LinuxBlockIO) error {
	okWeight := func(w *uint16, what string) error {
		if w != nil && *w != 0 && (*w < 10 || *w > 1000) {
			return fmt.Errorf("invalid resources: blockIO %s %d is not in 10-1000", what, *w)
		}
		return nil
	}
	if err := okWeight(b.Weight, "weight"); err != nil {
		return err
	}
	if err := okWeight(b.LeafWeight, "leafWeight"); err != nil {
		return err
	}
	for _, d := range b.WeightDevice {
		if err := okWeight(d.Weight, fmt.Sprintf("weight of %d:%d", d.Major, d.Minor)); err != nil {
			return err
		}
		if err := okWeight(d.LeafWeight, fmt.Sprintf("leafWeight of %d:%d", d.Major, d.Minor)); err != nil {
			return err
		}
	}
	for _, list := range [][]specs.LinuxThrottleDevice{b.ThrottleReadBpsDevice, b.ThrottleWriteBpsDevice, b.ThrottleReadIOPSDevice, b.ThrottleWriteIOPSDevice} {
		for _, d := range list {
			if d.Major < 0 || d.Minor < 0 {
				return fmt.Errorf("invalid resources: blockIO throttle device %d:%d", d.Major, d.Minor)
			}
		}
	}
	return nil
}

func v1BlockIO(dir string, b *specs.LinuxBlockIO) error {
	// BFQ (the only proportional scheduler left in current kernels) has its
	// own files; CFQ-era kernels have blkio.weight.
	prefix := "blkio."
	if exists(dir + "/blkio.bfq.weight") {
		prefix = "blkio.bfq."
	}
	if b.Weight != nil && *b.Weight != 0 {
		if err := writeFile(dir, prefix+"weight", strconv.Itoa(int(*b.Weight))); err != nil {
			return err
		}
	}
	if b.LeafWeight != nil && *b.LeafWeight != 0 {
		if err := writeFile(dir, "blkio.leaf_weight", strconv.Itoa(int(*b.LeafWeight))); err != nil {
			return err
		}
	}
	for _, d := range b.WeightDevice {
		if d.Weight != nil {
			if err := writeFile(dir, prefix+"weight_device", fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.Weight)); err != nil {
				return err
			}
		}
		if d.LeafWeight != nil {
			if err := writeFile(dir, "blkio.leaf_weight_device", fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.LeafWeight)); err != nil {
				return err
			}
		}
	}
	for _, t := range []struct {
		file string
		list []specs.LinuxThrottleDevice
	}{
		{"blkio.throttle.read_bps_device", b.ThrottleReadBpsDevice},
		{"blkio.throttle.write_bps_device", b.ThrottleWriteBpsDevice},
		{"blkio.throttle.read_iops_device", b.ThrottleReadIOPSDevice},
		{"blkio.throttle.write_iops_device", b.ThrottleWriteIOPSDevice},
	} {
		for _, d := range t.list {
			if err := writeFile(dir, t.file, fmt.Sprintf("%d:%d %d", d.Major, d.Minor, d.Rate)); err != nil {
				return err
			}
		}
	}
	return nil
}

func validateHugepages(hs []specs.LinuxHugepageLimit) error {
	for _, h := range hs {
		// The size becomes part of a file name: keep it to "2MB", "1GB", "64KB".
		s := h.Pagesize
		if len(s) < 3 || !strings.HasSuffix(s, "B") || strings.Trim(s[:len(s)-2], "0123456789") != "" ||
			!strings.ContainsAny(s[len(s)-2:len(s)-1], "KMG") {
			return fmt.Errorf("invalid resources: hugepage size %q (want a size like 2MB or 1GB)", s)
		}
	}
	return nil
}

func rdmaLines(r map[string]specs.LinuxRdma) ([]string, error) {
	var names []string
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	var lines []string
	for _, n := range names {
		l := r[n]
		if n == "" || strings.ContainsAny(n, " \n") {
			return nil, fmt.Errorf("invalid resources: rdma device name %q", n)
		}
		if l.HcaHandles == nil && l.HcaObjects == nil {
			return nil, fmt.Errorf("invalid resources: rdma device %q sets neither hcaHandles nor hcaObjects", n)
		}
		line := n
		if l.HcaHandles != nil {
			line += " hca_handle=" + strconv.FormatUint(uint64(*l.HcaHandles), 10)
		}
		if l.HcaObjects != nil {
			line += " hca_object=" + strconv.FormatUint(uint64(*l.HcaObjects), 10)
		}
		lines = append(lines, line)
	}
	return lines, nil
}
