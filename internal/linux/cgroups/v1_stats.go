package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of cpuacct.stat; it is 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// Stats reads what runc's v1 driver reads. Missing controllers and missing
// optional files (kernel features) leave their part zero, as in runc.
func (m *v1Manager) Stats() (*Stats, error) {
	s := newStats()
	if d := m.paths["cpu"]; d != "" {
		if kv, err := readKV(d, "cpu.stat"); err == nil {
			s.CPU.Throttling = Throttling{Periods: kv["nr_periods"], ThrottledPeriods: kv["nr_throttled"], ThrottledTime: kv["throttled_time"]}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		psi, err := parsePSI(d, "cpu.pressure")
		if err != nil {
			return nil, err
		}
		s.CPU.PSI = psi
	}
	if d := m.paths["cpuacct"]; d != "" {
		if err := v1CPUAcct(d, &s.CPU.Usage); err != nil {
			return nil, err
		}
	}
	if d := m.paths["cpuset"]; d != "" {
		if err := v1CPUSetStats(d, &s.CPUSet); err != nil {
			return nil, err
		}
	}
	if d := m.paths["memory"]; d != "" {
		if err := v1MemoryStats(d, &s.Memory); err != nil {
			return nil, err
		}
	}
	if d := m.paths["pids"]; d != "" {
		cur, err := readUint(d, "pids.current")
		if err != nil {
			return nil, err
		}
		max, err := readUint(d, "pids.max")
		if err != nil {
			return nil, err
		}
		s.Pids.Current = cur
		if max != ^uint64(0) {
			s.Pids.Limit = max
		}
	}
	if d := m.paths["blkio"]; d != "" {
		if err := v1BlkioStats(d, &s.Blkio); err != nil {
			return nil, err
		}
	}
	if d := m.paths["hugetlb"]; d != "" {
		if err := v1HugetlbStats(d, s.Hugetlb); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func readUintList(dir, name string) ([]uint64, error) {
	s, err := readFile(dir, name)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, f := range strings.Fields(s) {
		v, err := parseUint(f, filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func v1CPUAcct(d string, u *CPUUsage) error {
	total, err := readUint(d, "cpuacct.usage")
	if err != nil {
		return err
	}
	u.Total = total
	if u.Percpu, err = readUintList(d, "cpuacct.usage_percpu"); err != nil {
		return err
	}
	kv, err := readKV(d, "cpuacct.stat")
	if err != nil {
		return err
	}
	const nsPerTick = 1e9 / clockTicks
	u.User = kv["user"] * nsPerTick
	u.Kernel = kv["system"] * nsPerTick
	// cpuacct.usage_all: "cpu user system" header then one line per cpu.
	all, err := readFile(d, "cpuacct.usage_all")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	sc := bufio.NewScanner(strings.NewReader(all))
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first || len(f) != 3 {
			continue
		}
		user, err1 := strconv.ParseUint(f[1], 10, 64)
		sys, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("parse %s/cpuacct.usage_all: bad line %q", d, sc.Text())
		}
		u.PercpuUser = append(u.PercpuUser, user)
		u.PercpuKernel = append(u.PercpuKernel, sys)
	}
	return nil
}

func v1CPUSetStats(d string, c *CPUSet) error {
	cpus, err := readFile(d, "cpuset.cpus")
	if err != nil {
		return err
	}
	if c.CPUs, err = parseCPUList(cpus); err != nil {
		return err
	}
	mems, err := readFile(d, "cpuset.mems")
	if err != nil {
		return err
	}
	if c.Mems, err = parseCPUList(mems); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		dst  *uint64
	}{
		{"cpuset.cpu_exclusive", &c.CPUExclusive},
		{"cpuset.mem_hardwall", &c.MemHardwall},
		{"cpuset.mem_exclusive", &c.MemExclusive},
		{"cpuset.memory_migrate", &c.MemoryMigrate},
		{"cpuset.memory_spread_page", &c.MemorySpreadPage},
		{"cpuset.memory_spread_slab", &c.MemorySpreadSlab},
		{"cpuset.memory_pressure", &c.MemoryPressure},
		{"cpuset.sched_load_balance", &c.SchedLoadBalance},
	} {
		v, err := readUint(d, f.name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		*f.dst = v
	}
	s, err := readFile(d, "cpuset.sched_relax_domain_level")
	if err == nil {
		if c.SchedRelaxDomainLevel, err = strconv.ParseInt(strings.TrimSpace(s), 10, 64); err != nil {
			return fmt.Errorf("parse %s/cpuset.sched_relax_domain_level: %w", d, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// v1MemEntry reads memory.<prefix>{limit_in_bytes,usage_in_bytes,...}; a
// family the kernel lacks (memsw without swap accounting) stays zero.
func v1MemEntry(d, prefix string) (MemoryEntry, error) {
	var e MemoryEntry
	for _, f := range []struct {
		name string
		dst  *uint64
	}{
		{"limit_in_bytes", &e.Limit},
		{"usage_in_bytes", &e.Usage},
		{"max_usage_in_bytes", &e.Max},
		{"failcnt", &e.Failcnt},
	} {
		v, err := readUint(d, prefix+f.name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return MemoryEntry{}, nil
			}
			return e, err
		}
		*f.dst = v
	}
	return e, nil
}

func v1MemoryStats(d string, m *Memory) error {
	raw, err := readKV(d, "memory.stat")
	if err != nil {
		return err
	}
	m.Raw = raw
	m.Cache = raw["cache"]
	for _, f := range []struct {
		prefix string
		dst    *MemoryEntry
	}{
		{"memory.", &m.Usage},
		{"memory.memsw.", &m.Swap},
		{"memory.kmem.", &m.Kernel},
		{"memory.kmem.tcp.", &m.KernelTCP},
	} {
		e, err := v1MemEntry(d, f.prefix)
		if err != nil {
			return err
		}
		*f.dst = e
	}
	psi, err := parsePSI(d, "memory.pressure")
	if err != nil {
		return err
	}
	m.PSI = psi
	return nil
}

// v1BlkioStats prefers BFQ's recursive counters, then CFQ's, then the
// throttling layer's (always present), as runc does.
func v1BlkioStats(d string, b *Blkio) error {
	type src struct {
		file string
		dst  *[]BlkioEntry
	}
	sets := [][]src{
		{{"blkio.bfq.io_service_bytes_recursive", &b.IoServiceBytesRecursive}, {"blkio.bfq.io_serviced_recursive", &b.IoServicedRecursive}},
		{
			{"blkio.io_service_bytes_recursive", &b.IoServiceBytesRecursive}, {"blkio.io_serviced_recursive", &b.IoServicedRecursive},
			{"blkio.io_queued_recursive", &b.IoQueuedRecursive}, {"blkio.io_service_time_recursive", &b.IoServiceTimeRecursive},
			{"blkio.io_wait_time_recursive", &b.IoWaitTimeRecursive}, {"blkio.io_merged_recursive", &b.IoMergedRecursive},
			{"blkio.time_recursive", &b.IoTimeRecursive}, {"blkio.sectors_recursive", &b.SectorsRecursive},
		},
		{{"blkio.throttle.io_service_bytes_recursive", &b.IoServiceBytesRecursive}, {"blkio.throttle.io_serviced_recursive", &b.IoServicedRecursive}},
	}
	for _, set := range sets {
		if !exists(filepath.Join(d, set[0].file)) {
			continue
		}
		for _, s := range set {
			e, err := parseBlkioFile(d, s.file)
			if err != nil {
				return err
			}
			*s.dst = e
		}
		return nil
	}
	return nil
}

// parseBlkioFile reads "major:minor [op] value" lines; "Total N" lines are
// summaries and skipped.
func parseBlkioFile(d, name string) ([]BlkioEntry, error) {
	s, err := readFile(d, name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []BlkioEntry
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 || !strings.Contains(f[0], ":") {
			continue
		}
		maj, min, _ := strings.Cut(f[0], ":")
		var e BlkioEntry
		var err1, err2, err3 error
		e.Major, err1 = strconv.ParseUint(maj, 10, 64)
		e.Minor, err2 = strconv.ParseUint(min, 10, 64)
		if len(f) == 3 {
			e.Op = f[1]
		}
		e.Value, err3 = strconv.ParseUint(f[len(f)-1], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("parse %s/%s: bad line %q", d, name, line)
		}
		out = append(out, e)
	}
	return out, nil
}

func v1HugetlbStats(d string, out map[string]Hugetlb) error {
	ents, err := os.ReadDir(d)
	if err != nil {
		return err
	}
	for _, e := range ents {
		n := e.Name()
		size, ok := strings.CutSuffix(strings.TrimPrefix(n, "hugetlb."), ".usage_in_bytes")
		if !ok || !strings.HasPrefix(n, "hugetlb.") || strings.Contains(size, ".") {
			continue
		}
		var h Hugetlb
		var err error
		if h.Usage, err = readUint(d, "hugetlb."+size+".usage_in_bytes"); err != nil {
			return err
		}
		if h.Max, err = readUint(d, "hugetlb."+size+".max_usage_in_bytes"); err != nil {
			return err
		}
		if h.Failcnt, err = readUint(d, "hugetlb."+size+".failcnt"); err != nil {
			return err
		}
		out[size] = h
	}
	return nil
}
