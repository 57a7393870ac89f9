package cgroups

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/linux/cgroups/devices"
)

// numToV2 renders a v1-style number for a v2 file: 0 is "unset" (""), -1 is "max".
func numToV2(v int64) string {
	switch {
	case v == 0:
		return ""
	case v == -1:
		return "max"
	}
	return itoa(v)
}

// SharesToWeight converts cpu.shares ([2, 262144], default 1024) to cpu.weight
// ([1, 10000], default 100) with runc's quadratic fit in log2 space, which
// maps the minimum, default and maximum exactly; 0 stays "unset".
func SharesToWeight(shares uint64) uint64 {
	switch {
	case shares == 0:
		return 0
	case shares <= 2:
		return 1
	case shares >= 262144:
		return 10000
	}
	l := math.Log2(float64(shares))
	exp := (l*l+125*l)/612.0 - 7.0/34.0
	return uint64(math.Ceil(math.Pow(10, exp)))
}

// BlkioWeightToIOWeight converts blkio.weight [10, 1000] to io.weight [1, 10000] linearly.
func BlkioWeightToIOWeight(w uint16) uint64 {
	if w == 0 {
		return 0
	}
	return 1 + (uint64(w)-10)*9999/990
}

// SwapToV2 converts the spec's memory+swap limit to memory.swap.max (swap
// only), as runc does: -1 stays unlimited, and unlimited memory with no swap
// given means unlimited swap too.
func SwapToV2(swap, mem int64) (int64, error) {
	if mem == -1 && swap == 0 {
		return -1, nil
	}
	if swap == -1 || swap == 0 {
		return swap, nil
	}
	if mem == 0 || mem == -1 {
		return 0, errors.New("invalid resources: unable to set swap limit without memory limit")
	}
	if swap < mem {
		return 0, fmt.Errorf("invalid resources: memory+swap limit %d should be >= memory limit %d", swap, mem)
	}
	return swap - mem, nil
}

func planV2(r *specs.LinuxResources, withDevices bool) ([]step, error) {
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
		prog := devices.Program(st)
		add("devices", func(dir string) error { return attachDevices(dir, prog) })
	}
	if c := r.CPU; c != nil {
		if ptrU64(c.RealtimePeriod) != 0 || ptrI64(c.RealtimeRuntime) != 0 {
			return nil, errors.New("invalid resources: cpu realtimePeriod/realtimeRuntime are not supported on cgroup v2")
		}
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
		if cpuSet(c) {
			add("cpu", func(dir string) error { return v2CPU(dir, c) })
		}
	}
	if m := r.Memory; m != nil {
		if err := validateMemory(m); err != nil {
			return nil, err
		}
		if swappinessSet(m) {
			return nil, errors.New("invalid resources: memory swappiness is not supported on cgroup v2")
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			return nil, errors.New("invalid resources: disableOOMKiller is not supported on cgroup v2")
		}
		swap, err := SwapToV2(ptrI64(m.Swap), ptrI64(m.Limit))
		if err != nil {
			return nil, err
		}
		if memorySet(m) {
			add("memory", func(dir string) error { return v2Memory(dir, m, swap) })
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
			add("io", func(dir string) error { return v2IO(dir, b) })
		}
	}
	if len(r.HugepageLimits) > 0 {
		if err := validateHugepages(r.HugepageLimits); err != nil {
			return nil, err
		}
		add("hugetlb", func(dir string) error {
			for _, h := range r.HugepageLimits {
				if err := writeFile(dir, "hugetlb."+h.Pagesize+".max", utoa(h.Limit)); err != nil {
					return err
				}
				if exists(filepath.Join(dir, "hugetlb."+h.Pagesize+".rsvd.max")) {
					if err := writeFile(dir, "hugetlb."+h.Pagesize+".rsvd.max", utoa(h.Limit)); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	if n := r.Network; n != nil && (n.ClassID != nil || len(n.Priorities) > 0) {
		return nil, errors.New("invalid resources: network classID/priorities (net_cls, net_prio) do not exist on cgroup v2")
	}
	if len(r.Rdma) > 0 {
		lines, err := rdmaLines(r.Rdma)
		if err != nil {
			return nil, err
		}
		add("rdma", func(dir string) error { return writeLines(dir, "rdma.max", lines) })
	}
	if len(r.Unified) > 0 {
		var ks []string
		for k := range r.Unified {
			// Keys are file names in the container's own cgroup, nothing else.
			if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." || !strings.Contains(k, ".") {
				return nil, fmt.Errorf("invalid resources: unified key %q is not a cgroup file name", k)
			}
			if strings.HasPrefix(k, "cgroup.") && k != "cgroup.freeze" && k != "cgroup.max.depth" && k != "cgroup.max.descendants" && k != "cgroup.pressure" {
				return nil, fmt.Errorf("invalid resources: unified key %q may not be set (the runtime manages it)", k)
			}
			ks = append(ks, k)
		}
		sort.Strings(ks)
		add("unified", func(dir string) error {
			for _, k := range ks {
				if err := writeFile(dir, k, r.Unified[k]); err != nil {
					if errors.Is(err, os.ErrNotExist) {
						ctrl, _, _ := strings.Cut(k, ".")
						return fmt.Errorf("unified key %q: no such file (is the %s controller enabled?)", k, ctrl)
					}
					return err
				}
			}
			return nil
		})
	}
	return plan, nil
}

func v2CPU(dir string, c *specs.LinuxCPU) error {
	if w := SharesToWeight(ptrU64(c.Shares)); w != 0 {
		if err := writeFile(dir, "cpu.weight", utoa(w)); err != nil {
			return err
		}
	}
	// cpu.max is "quota period" in one file; a write of only the quota
	// keeps the period, and "max" lifts the limit.
	quota, period := ptrI64(c.Quota), ptrU64(c.Period)
	if quota != 0 || period != 0 {
		s := "max"
		if quota > 0 {
			s = itoa(quota)
		}
		if period != 0 {
			s += " " + utoa(period)
		}
		if err := writeFile(dir, "cpu.max", s); err != nil {
			return err
		}
	}
	if c.Burst != nil {
		if err := writeFile(dir, "cpu.max.burst", utoa(*c.Burst)); err != nil {
			return err
		}
	}
	if c.Idle != nil {
		return writeFile(dir, "cpu.idle", itoa(*c.Idle))
	}
	return nil
}

func v2Memory(dir string, m *specs.LinuxMemory, swap int64) error {
	if err := checkUsage(dir, "memory.current", m); err != nil {
		return err
	}
	swapStr := numToV2(swap)
	if swapStr == "" && swap == 0 && ptrI64(m.Swap) > 0 {
		// memory == memory+swap: no swap at all.
		swapStr = "0"
	}
	// Swap first: memory.swap.max is independent of memory.max on v2, and
	// the order matches runc's.
	if swapStr != "" {
		if err := writeFile(dir, "memory.swap.max", swapStr); err != nil {
			// Without swap accounting the file is missing; "unlimited" or
			// "none" then already holds.
			if !(errors.Is(err, os.ErrNotExist) && (swapStr == "max" || swapStr == "0")) {
				return err
			}
		}
	}
	if s := numToV2(ptrI64(m.Limit)); s != "" {
		if err := writeFile(dir, "memory.max", s); err != nil {
			return err
		}
	}
	if s := numToV2(ptrI64(m.Reservation)); s != "" {
		if err := writeFile(dir, "memory.low", s); err != nil {
			return err
		}
	}
	// Kernel and KernelTCP have no v2 files (kernel memory is always part
	// of memory.max); like runc they are ignored.
	return nil
}

func v2IO(dir string, b *specs.LinuxBlockIO) error {
	bfq := exists(filepath.Join(dir, "io.bfq.weight"))
	if b.Weight != nil && *b.Weight != 0 {
		if bfq {
			// BFQ takes the v1 range as is.
			if err := writeFile(dir, "io.bfq.weight", strconv.Itoa(int(*b.Weight))); err != nil {
				return err
			}
		} else if err := writeFile(dir, "io.weight", utoa(BlkioWeightToIOWeight(*b.Weight))); err != nil {
			return err
		}
	}
	for _, d := range b.WeightDevice {
		if d.Weight == nil {
			continue
		}
		if !bfq {
			return fmt.Errorf("per-device weight for %d:%d needs the BFQ I/O scheduler (io.bfq.weight)", d.Major, d.Minor)
		}
		if err := writeFile(dir, "io.bfq.weight", fmt.Sprintf("%d:%d %d", d.Major, d.Minor, *d.Weight)); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		key  string
		list []specs.LinuxThrottleDevice
	}{
		{"rbps", b.ThrottleReadBpsDevice},
		{"wbps", b.ThrottleWriteBpsDevice},
		{"riops", b.ThrottleReadIOPSDevice},
		{"wiops", b.ThrottleWriteIOPSDevice},
	} {
		for _, d := range t.list {
			if err := writeFile(dir, "io.max", fmt.Sprintf("%d:%d %s=%d", d.Major, d.Minor, t.key, d.Rate)); err != nil {
				return err
			}
		}
	}
	return nil
}
