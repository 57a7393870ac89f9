// Limits: --ulimit, cgroup resources (memory, cpu, pids, block I/O) and
// --device rules, in docker's flag syntax.

package oneshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var rlimitNames = map[string]int{
	"as": unix.RLIMIT_AS, "core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU, "data": unix.RLIMIT_DATA,
	"fsize": unix.RLIMIT_FSIZE, "locks": unix.RLIMIT_LOCKS, "memlock": unix.RLIMIT_MEMLOCK,
	"msgqueue": unix.RLIMIT_MSGQUEUE, "nice": unix.RLIMIT_NICE, "nofile": unix.RLIMIT_NOFILE,
	"nproc": unix.RLIMIT_NPROC, "rss": unix.RLIMIT_RSS, "rtprio": unix.RLIMIT_RTPRIO,
	"rttime": unix.RLIMIT_RTTIME, "sigpending": unix.RLIMIT_SIGPENDING, "stack": unix.RLIMIT_STACK,
}

// ParseUlimit reads --ulimit NAME=SOFT[:HARD] (-1: unlimited).
func ParseUlimit(s string) (specs.POSIXRlimit, error) {
	name, val, ok := strings.Cut(s, "=")
	if _, known := rlimitNames[name]; !ok || !known {
		return specs.POSIXRlimit{}, fmt.Errorf("--ulimit %q: want NAME=SOFT[:HARD] with NAME one of %s", s, strings.Join(sortedKeys(rlimitNames), ", "))
	}
	num := func(x string) (uint64, error) {
		if x == "-1" || x == "unlimited" {
			return unix.RLIM_INFINITY, nil
		}
		return strconv.ParseUint(x, 10, 64)
	}
	softS, hardS, hasHard := strings.Cut(val, ":")
	soft, err := num(softS)
	if err != nil {
		return specs.POSIXRlimit{}, fmt.Errorf("--ulimit %q: %q is not a number", s, softS)
	}
	hard := soft
	if hasHard {
		if hard, err = num(hardS); err != nil {
			return specs.POSIXRlimit{}, fmt.Errorf("--ulimit %q: %q is not a number", s, hardS)
		}
	}
	if soft > hard {
		return specs.POSIXRlimit{}, fmt.Errorf("--ulimit %q: the soft limit is above the hard limit", s)
	}
	return specs.POSIXRlimit{Type: "RLIMIT_" + strings.ToUpper(name), Soft: soft, Hard: hard}, nil
}

// rlimits sets podman's NOFILE and NPROC defaults, then --ulimit. A hard
// limit above berth's own needs CAP_SYS_RESOURCE; without it that is
// refused here, clearly, rather than by the container's init.
func (o *Options) rlimits(s *specs.Spec) error {
	set := func(l specs.POSIXRlimit) {
		for i := range s.Process.Rlimits {
			if s.Process.Rlimits[i].Type == l.Type {
				s.Process.Rlimits[i] = l
				return
			}
		}
		s.Process.Rlimits = append(s.Process.Rlimits, l)
	}
	canRaise := hasCap(unix.CAP_SYS_RESOURCE)
	for _, r := range []struct {
		name string
		res  int
	}{{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE}, {"RLIMIT_NPROC", unix.RLIMIT_NPROC}} {
		v := uint64(defaultRlimit)
		var cur unix.Rlimit
		if unix.Getrlimit(r.res, &cur) == nil && !canRaise && cur.Max < v {
			v = cur.Max
		}
		set(specs.POSIXRlimit{Type: r.name, Soft: v, Hard: v})
	}
	for _, u := range o.Ulimits {
		l, err := ParseUlimit(u)
		if err != nil {
			return err
		}
		var cur unix.Rlimit
		res := rlimitNames[strings.ToLower(strings.TrimPrefix(l.Type, "RLIMIT_"))]
		if !canRaise && unix.Getrlimit(res, &cur) == nil && l.Hard > cur.Max {
			return fmt.Errorf("--ulimit %s: the hard limit is above berth's own (%d), and raising it needs CAP_SYS_RESOURCE, which this process lacks", u, cur.Max)
		}
		set(l)
	}
	return nil
}

func (o *Options) resources(s *specs.Spec) error {
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	r := s.Linux.Resources
	if o.Memory > 0 || o.MemorySwap != 0 || o.MemoryReservation > 0 || o.OOMKillDisable || o.MemorySwappiness != nil {
		r.Memory = &specs.LinuxMemory{}
		if o.MemorySwappiness != nil {
			if *o.MemorySwappiness > 100 {
				return errors.New("--memory-swappiness must be between 0 and 100")
			}
			r.Memory.Swappiness = o.MemorySwappiness
		}
		if o.Memory > 0 {
			r.Memory.Limit = &o.Memory
		}
		if o.MemoryReservation > 0 {
			r.Memory.Reservation = &o.MemoryReservation
		}
		if o.OOMKillDisable {
			t := true
			r.Memory.DisableOOMKiller = &t
		}
		if o.MemorySwap != 0 {
			if o.Memory <= 0 {
				return errors.New("--memory-swap needs --memory")
			}
			if o.MemorySwap > 0 && o.MemorySwap < o.Memory {
				return errors.New("--memory-swap must be at least --memory (it counts memory plus swap)")
			}
			r.Memory.Swap = &o.MemorySwap
		}
	}
	if o.PidsLimit > 0 {
		r.Pids = &specs.LinuxPids{Limit: &o.PidsLimit}
	}
	if o.CPUs > 0 && (o.CPUPeriod > 0 || o.CPUQuota != 0) {
		return errors.New("--cpus and --cpu-period/--cpu-quota cannot be combined")
	}
	if o.CPUs > 0 || o.CPUPeriod > 0 || o.CPUQuota != 0 || o.CPUShares > 0 || o.CpusetCpus != "" || o.CpusetMems != "" || o.CPURtPeriod > 0 || o.CPURtRuntime != 0 {
		r.CPU = &specs.LinuxCPU{}
		if o.CPURtPeriod > 0 {
			r.CPU.RealtimePeriod = &o.CPURtPeriod
		}
		if o.CPURtRuntime != 0 {
			r.CPU.RealtimeRuntime = &o.CPURtRuntime
		}
		if o.CPUs > 0 {
			period := uint64(100000)
			quota := int64(o.CPUs * float64(period))
			r.CPU.Period, r.CPU.Quota = &period, &quota
		}
		if o.CPUPeriod > 0 {
			r.CPU.Period = &o.CPUPeriod
		}
		if o.CPUQuota != 0 {
			r.CPU.Quota = &o.CPUQuota
		}
		if o.CPUShares > 0 {
			r.CPU.Shares = &o.CPUShares
		}
		r.CPU.Cpus, r.CPU.Mems = o.CpusetCpus, o.CpusetMems
	}
	if err := o.blockIO(r); err != nil {
		return err
	}
	for _, rule := range o.DeviceCgroupRules {
		d, err := parseDeviceRule(rule)
		if err != nil {
			return err
		}
		r.Devices = append(r.Devices, d)
	}
	if o.Privileged {
		r.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	return nil
}

// blockIO sets the block I/O weight and the per-device weights and
// throttles (DEVICE:VALUE, the device a host block device node).
func (o *Options) blockIO(r *specs.LinuxResources) error {
	b := &specs.LinuxBlockIO{}
	set := false
	if o.BlkioWeight > 0 {
		if o.BlkioWeight < 10 || o.BlkioWeight > 1000 {
			return errors.New("--blkio-weight must be between 10 and 1000")
		}
		b.Weight, set = &o.BlkioWeight, true
	}
	dev := func(flag, v string) (int64, int64, string, error) {
		p, val, ok := strings.Cut(v, ":")
		var st unix.Stat_t
		if !ok || val == "" {
			return 0, 0, "", fmt.Errorf("%s %q: want /dev/DEVICE:VALUE", flag, v)
		}
		if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
			return 0, 0, "", fmt.Errorf("%s %q: %s is not a block device", flag, v, p)
		}
		return int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev)), val, nil
	}
	for _, v := range o.BlkioWeightDevice {
		maj, mn, val, err := dev("--blkio-weight-device", v)
		if err != nil {
			return err
		}
		w, err := strconv.ParseUint(val, 10, 16)
		if err != nil || w < 10 || w > 1000 {
			return fmt.Errorf("--blkio-weight-device %q: the weight must be between 10 and 1000", v)
		}
		wt := uint16(w)
		wd := specs.LinuxWeightDevice{Weight: &wt}
		wd.Major, wd.Minor = maj, mn
		b.WeightDevice, set = append(b.WeightDevice, wd), true
	}
	for _, t := range []struct {
		flag  string
		vals  []string
		bytes bool
		dst   *[]specs.LinuxThrottleDevice
	}{
		{"--device-read-bps", o.DeviceReadBps, true, &b.ThrottleReadBpsDevice},
		{"--device-write-bps", o.DeviceWriteBps, true, &b.ThrottleWriteBpsDevice},
		{"--device-read-iops", o.DeviceReadIOps, false, &b.ThrottleReadIOPSDevice},
		{"--device-write-iops", o.DeviceWriteIOps, false, &b.ThrottleWriteIOPSDevice},
	} {
		for _, v := range t.vals {
			maj, mn, val, err := dev(t.flag, v)
			if err != nil {
				return err
			}
			rate, err := parseRate(val, t.bytes)
			if err != nil {
				return fmt.Errorf("%s %q: %w", t.flag, v, err)
			}
			td := specs.LinuxThrottleDevice{Rate: rate}
			td.Major, td.Minor = maj, mn
			*t.dst, set = append(*t.dst, td), true
		}
	}
	if set {
		r.BlockIO = b
	}
	return nil
}

// parseRate reads a throttle rate: a number, for bytes with an optional
// kb, mb or gb suffix (powers of 1024, as docker reads them).
func parseRate(v string, bytes bool) (uint64, error) {
	mult := uint64(1)
	l := strings.ToLower(v)
	if bytes {
		for suf, m := range map[string]uint64{"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "b": 1} {
			if strings.HasSuffix(l, suf) && len(l) > len(suf) {
				if _, err := strconv.ParseUint(strings.TrimSuffix(l, suf), 10, 64); err == nil {
					l, mult = strings.TrimSuffix(l, suf), m
					break
				}
			}
		}
	}
	n, err := strconv.ParseUint(l, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a positive rate", v)
	}
	return n * mult, nil
}

// parseDeviceRule reads --device-cgroup-rule "TYPE MAJOR:MINOR PERMS"
// (a, b or c; a number or *; r, w, m).
func parseDeviceRule(rule string) (specs.LinuxDeviceCgroup, error) {
	bad := fmt.Errorf("--device-cgroup-rule %q: want \"TYPE MAJOR:MINOR PERMISSIONS\", e.g. \"c 1:3 rwm\"", rule)
	f := strings.Fields(rule)
	if len(f) != 3 || (f[0] != "a" && f[0] != "b" && f[0] != "c") || f[2] == "" || strings.Trim(f[2], "rwm") != "" {
		return specs.LinuxDeviceCgroup{}, bad
	}
	majS, minS, ok := strings.Cut(f[1], ":")
	if !ok {
		return specs.LinuxDeviceCgroup{}, bad
	}
	num := func(x string) (*int64, error) {
		if x == "*" {
			return nil, nil
		}
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil || n < 0 {
			return nil, bad
		}
		return &n, nil
	}
	maj, err := num(majS)
	if err != nil {
		return specs.LinuxDeviceCgroup{}, err
	}
	mn, err := num(minS)
	if err != nil {
		return specs.LinuxDeviceCgroup{}, err
	}
	return specs.LinuxDeviceCgroup{Allow: true, Type: f[0], Major: maj, Minor: mn, Access: f[2]}, nil
}

// devices adds --device nodes, and with --privileged every device node of
// the host's /dev (docker's and podman's rule).
func (o *Options) devices(s *specs.Spec) error {
	have := map[string]bool{}
	// The node and, as docker does, the device cgroup rule with the
	// permissions asked (the runtime allows no configured node by itself).
	add := func(hostPath, ctrPath, perms string) error {
		var st unix.Stat_t
		if err := unix.Stat(hostPath, &st); err != nil {
			return &os.PathError{Op: "stat", Path: hostPath, Err: err}
		}
		typ := ""
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			typ = "c"
		case unix.S_IFBLK:
			typ = "b"
		default:
			return fmt.Errorf("%s is not a device node", hostPath)
		}
		if have[ctrPath] {
			return nil
		}
		have[ctrPath] = true
		mode := os.FileMode(st.Mode & 0o777)
		uid, gid := st.Uid, st.Gid
		maj, mn := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: ctrPath, Type: typ,
			Major: maj, Minor: mn, FileMode: &mode, UID: &uid, GID: &gid})
		if perms != "" {
			if s.Linux.Resources == nil {
				s.Linux.Resources = &specs.LinuxResources{}
			}
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &maj, Minor: &mn, Access: perms})
		}
		return nil
	}
	for _, d := range o.Devices {
		f := strings.Split(d, ":")
		host, ctr, perms := f[0], f[0], "rwm"
		switch len(f) {
		case 1:
		case 2:
			if strings.HasPrefix(f[1], "/") {
				ctr = f[1]
			} else {
				perms = f[1]
			}
		case 3:
			ctr, perms = f[1], f[2]
		default:
			return fmt.Errorf("--device %q: want /dev/HOST[:/dev/CONTAINER[:PERMISSIONS]]", d)
		}
		if !filepath.IsAbs(host) || !path.IsAbs(ctr) {
			return fmt.Errorf("--device %q: paths must be absolute", d)
		}
		if perms == "" || strings.Trim(perms, "rwm") != "" {
			return fmt.Errorf("--device %q: permissions %q: want a combination of r, w and m", d, perms)
		}
		fi, err := os.Stat(host)
		if err != nil {
			return fmt.Errorf("--device %q: %w", d, err)
		}
		if fi.IsDir() {
			err = filepath.WalkDir(host, func(p string, de fs.DirEntry, err error) error {
				if err != nil || de.IsDir() || de.Type()&(fs.ModeDevice|fs.ModeCharDevice) == 0 {
					return nil
				}
				rel, _ := filepath.Rel(host, p)
				return add(p, path.Join(ctr, filepath.ToSlash(rel)), perms)
			})
		} else {
			err = add(host, ctr, perms)
		}
		if err != nil {
			return fmt.Errorf("--device %q: %w", d, err)
		}
	}
	if !o.Privileged {
		return nil
	}
	return filepath.WalkDir("/dev", func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if de.IsDir() {
			switch p {
			case "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd", "/dev/.lxc", "/dev/.lxd-mounts", "/dev/.udev":
				return filepath.SkipDir
			}
			return nil
		}
		if de.Type()&fs.ModeDevice == 0 || p == "/dev/console" || p == "/dev/ptmx" {
			return nil
		}
		_ = add(p, p, "") // the allow-all rule covers them
		return nil
	})
}
