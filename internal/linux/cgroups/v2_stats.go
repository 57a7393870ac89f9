package cgroups

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// Stats reads the unified files into runc's v1-shaped Stats, with runc's
// mapping: usec counters become nanoseconds, "max" limits read as
// MaxUint64, swap is reported as memory+swap, io.stat becomes the
// Read/Write entries of ioServiceBytesRecursive and ioServicedRecursive.
func (m *v2Manager) Stats() (*Stats, error) {
	s := newStats()
	d := m.dir
	if !exists(d) {
		return nil, fmt.Errorf("stats: %w: %s", ErrNotExist, d)
	}
	opt := func(err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil // controller not enabled for this cgroup
		}
		return err
	}
	if kv, err := readKV(d, "cpu.stat"); err == nil {
		s.CPU.Usage.Total = kv["usage_usec"] * 1000
		s.CPU.Usage.User = kv["user_usec"] * 1000
		s.CPU.Usage.Kernel = kv["system_usec"] * 1000
		s.CPU.Throttling = Throttling{Periods: kv["nr_periods"], ThrottledPeriods: kv["nr_throttled"], ThrottledTime: kv["throttled_usec"] * 1000}
	} else if err := opt(err); err != nil {
		return nil, err
	}
	var err error
	if s.CPU.PSI, err = parsePSI(d, "cpu.pressure"); err != nil {
		return nil, err
	}
	if err := v2CPUSetStats(d, &s.CPUSet); opt(err) != nil {
		return nil, err
	}
	if err := v2MemoryStats(d, &s.Memory); opt(err) != nil {
		return nil, err
	}
	if cur, err := readUint(d, "pids.current"); err == nil {
		s.Pids.Current = cur
		max, err := readUint(d, "pids.max")
		if err != nil {
			return nil, err
		}
		if max != math.MaxUint64 {
			s.Pids.Limit = max
		}
	} else if err := opt(err); err != nil {
		return nil, err
	}
	if err := v2IOStats(d, &s.Blkio); opt(err) != nil {
		return nil, err
	}
	if s.Blkio.PSI, err = parsePSI(d, "io.pressure"); err != nil {
		return nil, err
	}
	if err := v2HugetlbStats(d, s.Hugetlb); err != nil {
		return nil, err
	}
	return s, nil
}

func v2CPUSetStats(d string, c *CPUSet) error {
	cpus, err := readFile(d, "cpuset.cpus.effective")
	if err != nil {
		return err
	}
	if c.CPUs, err = parseCPUList(cpus); err != nil {
		return err
	}
	mems, err := readFile(d, "cpuset.mems.effective")
	if err != nil {
		return err
	}
	c.Mems, err = parseCPUList(mems)
	return err
}

func v2MemoryStats(d string, m *Memory) error {
	raw, err := readKV(d, "memory.stat")
	if err != nil {
		return err
	}
	m.Raw = raw
	m.Cache = raw["file"]
	entry := func(prefix string) (MemoryEntry, error) {
		var e MemoryEntry
		var err error
		if e.Usage, err = readUint(d, prefix+".current"); err != nil {
			return e, err
		}
		if e.Limit, err = readUint(d, prefix+".max"); err != nil {
			return e, err
		}
		// memory.peak appeared in 5.19; older kernels report no max.
		if e.Max, err = readUint(d, prefix+".peak"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return e, err
		}
		ev, err := readKV(d, prefix+".events")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return e, err
		}
		e.Failcnt = ev["max"]
		return e, nil
	}
	if m.Usage, err = entry("memory"); err != nil {
		return err
	}
	swap, err := entry("memory.swap")
	if err == nil {
		// v1's memsw counters are memory+swap; report the same sum.
		swap.Usage += m.Usage.Usage
		if swap.Limit == math.MaxUint64 || m.Usage.Limit == math.MaxUint64 {
			swap.Limit = math.MaxUint64 // either unlimited makes the sum unlimited
		} else {
			swap.Limit += m.Usage.Limit
		}
		swap.Max = 0 // a peak of the sum cannot be derived
		m.Swap = swap
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if m.PSI, err = parsePSI(d, "memory.pressure"); err != nil {
		return err
	}
	return nil
}

func v2IOStats(d string, b *Blkio) error {
	s, err := readFile(d, "io.stat")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		maj, min, ok := strings.Cut(f[0], ":")
		if !ok {
			continue
		}
		major, err1 := strconv.ParseUint(maj, 10, 64)
		minor, err2 := strconv.ParseUint(min, 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("parse %s/io.stat: bad device %q", d, f[0])
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			val, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return fmt.Errorf("parse %s/io.stat: bad field %q", d, kv)
			}
			e := BlkioEntry{Major: major, Minor: minor, Value: val}
			switch k {
			case "rbytes":
				e.Op = "Read"
				b.IoServiceBytesRecursive = append(b.IoServiceBytesRecursive, e)
			case "wbytes":
				e.Op = "Write"
				b.IoServiceBytesRecursive = append(b.IoServiceBytesRecursive, e)
			case "rios":
				e.Op = "Read"
				b.IoServicedRecursive = append(b.IoServicedRecursive, e)
			case "wios":
				e.Op = "Write"
				b.IoServicedRecursive = append(b.IoServicedRecursive, e)
			}
		}
	}
	return nil
}

func v2HugetlbStats(d string, out map[string]Hugetlb) error {
	ents, err := os.ReadDir(d)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		size, ok := strings.CutSuffix(strings.TrimPrefix(n, "hugetlb."), ".current")
		if !ok || !strings.HasPrefix(n, "hugetlb.") || strings.Contains(size, ".") {
			continue
		}
		var h Hugetlb
		var err error
		if h.Usage, err = readUint(d, n); err != nil {
			return err
		}
		ev, err := readKV(d, "hugetlb."+size+".events")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		h.Failcnt = ev["max"]
		out[size] = h
	}
	return nil
}
