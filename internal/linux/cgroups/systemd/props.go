package systemd

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/linux/cgroups"
	"berth/internal/linux/cgroups/devices"
)

// This file translates OCI resources into systemd unit properties (the
// systemd driver's half of Set and Update); systemd.go talks to systemd.
// Properties exist for what systemd manages; everything else (hugetlb, rdma,
// net_cls/net_prio, swappiness, kernel TCP memory, cpu burst/idle, realtime,
// unified keys without a property) is written to the cgroup files only. The
// files are always written after the properties, with the exact values, so
// the two never disagree on what the kernel enforces.

// AnnotationPropertyPrefix marks annotations that become unit properties, as
// in runc: "org.systemd.property.TimeoutStopUSec": "uint64 123456789".
const AnnotationPropertyPrefix = "org.systemd.property."

var propertyNameRE = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// AnnotationProperties turns org.systemd.property.* annotations into unit
// properties. A value is a D-Bus variant in GVariant text ("true",
// "uint64 100", "'text'", "[...]"); a name ending in "Sec" but not "USec"
// (TimeoutStopSec) takes seconds and is sent as the USec property, as runc
// does. Properties are sorted by annotation name so a unit is built the same
// way every time.
func AnnotationProperties(annotations map[string]string) ([]sd.Property, error) {
	var names []string
	for k := range annotations {
		if strings.HasPrefix(k, AnnotationPropertyPrefix) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var out []sd.Property
	for _, k := range names {
		name := strings.TrimPrefix(k, AnnotationPropertyPrefix)
		if !propertyNameRE.MatchString(name) {
			return nil, fmt.Errorf("annotation %s: %q is not a systemd property name", k, name)
		}
		v, err := dbus.ParseVariant(annotations[k], dbus.Signature{})
		if err != nil {
			return nil, fmt.Errorf("annotation %s=%q: not a D-Bus value: %w", k, annotations[k], err)
		}
		if strings.HasSuffix(name, "Sec") && !strings.HasSuffix(name, "USec") {
			usec, err := secToUSec(v)
			if err != nil {
				return nil, fmt.Errorf("annotation %s=%q: %w", k, annotations[k], err)
			}
			name = strings.TrimSuffix(name, "Sec") + "USec"
			v = dbus.MakeVariant(usec)
		}
		out = append(out, sd.Property{Name: name, Value: v})
	}
	return out, nil
}

func secToUSec(v dbus.Variant) (uint64, error) {
	const usec = 1e6
	switch n := v.Value().(type) {
	case float64:
		if n < 0 || n > math.MaxUint64/usec {
			return 0, fmt.Errorf("%v seconds out of range", n)
		}
		return uint64(math.Round(n * usec)), nil
	case float32:
		return secToUSec(dbus.MakeVariant(float64(n)))
	}
	rv := big.NewInt(0)
	switch n := v.Value().(type) {
	case uint8:
		rv.SetUint64(uint64(n))
	case uint16:
		rv.SetUint64(uint64(n))
	case uint32:
		rv.SetUint64(uint64(n))
	case uint64:
		rv.SetUint64(n)
	case int16:
		rv.SetInt64(int64(n))
	case int32:
		rv.SetInt64(int64(n))
	case int64:
		rv.SetInt64(n)
	default:
		return 0, fmt.Errorf("seconds must be a number, not %s", v.Signature())
	}
	rv.Mul(rv, big.NewInt(usec))
	if rv.Sign() < 0 || !rv.IsUint64() {
		return 0, errors.New("seconds out of range")
	}
	return rv.Uint64(), nil
}

func ptrI64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func ptrU64(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

func ptrU16(p *uint16) uint16 {
	if p == nil {
		return 0
	}
	return *p
}

func prop(name string, v any) sd.Property { return sd.Property{Name: name, Value: dbus.MakeVariant(v)} }

// limit renders a v1-style limit for systemd: -1 is "infinity".
func limit(v int64) uint64 {
	if v == -1 {
		return math.MaxUint64
	}
	return uint64(v)
}

// quotaPerSec converts an OCI cpu quota/period (µs) to CPUQuotaPerSecUSec,
// rounded up to whole percent as runc does: systemd keeps the quota as a
// percentage, and rounding down would give the container less than asked.
// The exact quota is written to the cgroup file afterwards.
func quotaPerSec(quota int64, period uint64) uint64 {
	if quota <= 0 {
		return math.MaxUint64 // "infinity": no quota
	}
	if period == 0 {
		period = 100000
	}
	q := uint64(quota) * 1000000 / period
	if q%10000 != 0 {
		q = (q/10000 + 1) * 10000
	}
	return q
}

// cpuMask turns a cpuset list ("0-3,8") into systemd's AllowedCPUs /
// AllowedMemoryNodes byte mask (bit n of byte n/8 is cpu n).
func cpuMask(list string) ([]byte, error) {
	ids, err := cgroups.ParseCPUList(list)
	if err != nil {
		return nil, err
	}
	var mask []byte
	for _, id := range ids {
		for int(id/8) >= len(mask) {
			mask = append(mask, 0)
		}
		mask[id/8] |= 1 << (id % 8)
	}
	return mask, nil
}

// systemdFeatures says which properties the running systemd knows (by
// version; 0 means unknown and assumes a current systemd).
type systemdFeatures struct{ version int }

func (f systemdFeatures) atLeast(v int) bool { return f.version == 0 || f.version >= v }

// parseSystemdVersion reads the cgroups.Manager's Version property ("252.22-1~deb12u1"
// or "v256", quoted as GVariant text).
func parseSystemdVersion(s string) int {
	s = strings.Trim(s, `"' `)
	s = strings.TrimPrefix(s, "v")
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	v, _ := strconv.Atoi(s[:end])
	return v
}

// ioDevice is the path systemd needs for a per-device IO property: it
// resolves a path, not major:minor, and /dev/block/MAJ:MIN is udev's link.
// Devices without the link are left to the cgroup files.
func ioDevice(major, minor int64) (string, bool) {
	p := fmt.Sprintf("/dev/block/%d:%d", major, minor)
	_, err := os.Stat(p)
	return p, err == nil
}

type ioLimit struct {
	Path  string
	Limit uint64
}

type ioWeight struct {
	Path   string
	Weight uint64
}

// resourceProperties maps r to unit properties for a host in mode m.
// withDevices adds the device policy (Set; Update never changes devices).
// Validation is the cgroupfs driver's (cgroups.Validate runs first in Set), so
// this only translates.
func resourceProperties(r *specs.LinuxResources, m cgroups.Mode, withDevices bool, f systemdFeatures, ioDev func(major, minor int64) (string, bool)) ([]sd.Property, error) {
	if r == nil {
		return nil, nil
	}
	v2 := m == cgroups.ModeUnified
	var props []sd.Property
	add := func(name string, v any) { props = append(props, prop(name, v)) }

	if withDevices && len(r.Devices) > 0 {
		dp, err := deviceProperties(r.Devices)
		if err != nil {
			return nil, err
		}
		props = append(props, dp...)
	}
	if mem := r.Memory; mem != nil {
		if l := ptrI64(mem.Limit); l != 0 {
			if v2 {
				add("MemoryMax", limit(l))
			} else {
				add("MemoryLimit", limit(l))
			}
		}
		if v2 {
			if res := ptrI64(mem.Reservation); res != 0 {
				add("MemoryLow", limit(res))
			}
			swap, err := cgroups.SwapToV2(ptrI64(mem.Swap), ptrI64(mem.Limit))
			if err != nil {
				return nil, err
			}
			if swap != 0 && f.atLeast(232) {
				add("MemorySwapMax", limit(swap))
			}
		}
	}
	if c := r.CPU; c != nil {
		if s := ptrU64(c.Shares); s != 0 {
			if v2 {
				add("CPUWeight", cgroups.SharesToWeight(s))
			} else {
				add("CPUShares", s)
			}
		}
		quota, period := ptrI64(c.Quota), ptrU64(c.Period)
		if period != 0 && f.atLeast(242) {
			add("CPUQuotaPeriodUSec", period)
		}
		if quota != 0 || period != 0 {
			add("CPUQuotaPerSecUSec", quotaPerSec(quota, period))
		}
		// systemd manages cpuset on the unified hierarchy only.
		if v2 && f.atLeast(244) {
			if c.Cpus != "" {
				mask, err := cpuMask(c.Cpus)
				if err != nil {
					return nil, fmt.Errorf("invalid resources: cpus %q: %w", c.Cpus, err)
				}
				add("AllowedCPUs", mask)
			}
			if c.Mems != "" {
				mask, err := cpuMask(c.Mems)
				if err != nil {
					return nil, fmt.Errorf("invalid resources: mems %q: %w", c.Mems, err)
				}
				add("AllowedMemoryNodes", mask)
			}
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil && *p.Limit != 0 {
		tasks := uint64(math.MaxUint64)
		if *p.Limit > 0 {
			tasks = uint64(*p.Limit)
		}
		add("TasksMax", tasks)
	}
	if b := r.BlockIO; b != nil {
		props = append(props, ioProperties(b, v2, ioDev)...)
	}
	if v2 && len(r.Unified) > 0 {
		up, err := unifiedProperties(r.Unified, f)
		if err != nil {
			return nil, err
		}
		props = append(props, up...)
	}
	return props, nil
}

func ioProperties(b *specs.LinuxBlockIO, v2 bool, ioDev func(major, minor int64) (string, bool)) []sd.Property {
	var props []sd.Property
	name := func(v2name, v1name string) string {
		if v2 {
			return v2name
		}
		return v1name
	}
	weight := func(w uint16) uint64 {
		if v2 {
			return cgroups.BlkioWeightToIOWeight(w)
		}
		return uint64(w)
	}
	if w := ptrU16(b.Weight); w != 0 {
		props = append(props, prop(name("IOWeight", "BlockIOWeight"), weight(w)))
	}
	var weights []ioWeight
	for _, d := range b.WeightDevice {
		if d.Weight == nil || *d.Weight == 0 {
			continue
		}
		if p, ok := ioDev(d.Major, d.Minor); ok {
			weights = append(weights, ioWeight{p, weight(*d.Weight)})
		}
	}
	if len(weights) > 0 {
		props = append(props, prop(name("IODeviceWeight", "BlockIODeviceWeight"), weights))
	}
	throttle := func(v2name, v1name string, ds []specs.LinuxThrottleDevice) {
		if !v2 && v1name == "" {
			return
		}
		var ls []ioLimit
		for _, d := range ds {
			if p, ok := ioDev(d.Major, d.Minor); ok {
				l := d.Rate
				if l == 0 {
					l = math.MaxUint64 // 0 removes the limit
				}
				ls = append(ls, ioLimit{p, l})
			}
		}
		if len(ls) > 0 {
			props = append(props, prop(name(v2name, v1name), ls))
		}
	}
	throttle("IOReadBandwidthMax", "BlockIOReadBandwidth", b.ThrottleReadBpsDevice)
	throttle("IOWriteBandwidthMax", "BlockIOWriteBandwidth", b.ThrottleWriteBpsDevice)
	throttle("IOReadIOPSMax", "", b.ThrottleReadIOPSDevice)
	throttle("IOWriteIOPSMax", "", b.ThrottleWriteIOPSDevice)
	return props
}

// unifiedProperties maps the unified keys systemd has a property for, as
// runc does; the key is also written to its file afterwards.
func unifiedProperties(u map[string]string, f systemdFeatures) ([]sd.Property, error) {
	var ks []string
	for k := range u {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var props []sd.Property
	bytesProp := func(name, k, v string) error {
		n := uint64(math.MaxUint64)
		if v != "max" {
			x, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return fmt.Errorf("invalid resources: unified %s=%q: %w", k, v, err)
			}
			n = x
		}
		props = append(props, prop(name, n))
		return nil
	}
	for _, k := range ks {
		v := strings.TrimSpace(u[k])
		var err error
		switch k {
		case "memory.max":
			err = bytesProp("MemoryMax", k, v)
		case "memory.high":
			err = bytesProp("MemoryHigh", k, v)
		case "memory.low":
			err = bytesProp("MemoryLow", k, v)
		case "memory.min":
			err = bytesProp("MemoryMin", k, v)
		case "memory.swap.max":
			err = bytesProp("MemorySwapMax", k, v)
		case "pids.max":
			err = bytesProp("TasksMax", k, v)
		case "cpu.weight":
			w, perr := strconv.ParseUint(v, 10, 64)
			if perr != nil || w < 1 || w > 10000 {
				return nil, fmt.Errorf("invalid resources: unified cpu.weight=%q: want 1..10000", v)
			}
			props = append(props, prop("CPUWeight", w))
		case "cpu.max":
			fs := strings.Fields(v)
			if len(fs) == 0 || len(fs) > 2 {
				return nil, fmt.Errorf("invalid resources: unified cpu.max=%q: want \"quota [period]\"", v)
			}
			period := uint64(100000)
			if len(fs) == 2 {
				if period, err = strconv.ParseUint(fs[1], 10, 64); err != nil || period == 0 {
					return nil, fmt.Errorf("invalid resources: unified cpu.max=%q: bad period", v)
				}
				if f.atLeast(242) {
					props = append(props, prop("CPUQuotaPeriodUSec", period))
				}
			}
			quota := int64(-1)
			if fs[0] != "max" {
				if quota, err = strconv.ParseInt(fs[0], 10, 64); err != nil || quota <= 0 {
					return nil, fmt.Errorf("invalid resources: unified cpu.max=%q: bad quota", v)
				}
			}
			props = append(props, prop("CPUQuotaPerSecUSec", quotaPerSec(quota, period)))
		case "cpuset.cpus", "cpuset.mems":
			if !f.atLeast(244) {
				continue
			}
			mask, merr := cpuMask(v)
			if merr != nil {
				return nil, fmt.Errorf("invalid resources: unified %s=%q: %w", k, v, merr)
			}
			name := "AllowedCPUs"
			if k == "cpuset.mems" {
				name = "AllowedMemoryNodes"
			}
			props = append(props, prop(name, mask))
		}
		if err != nil {
			return nil, err
		}
	}
	return props, nil
}

// deviceAllow is one DeviceAllow entry: a device node or class and "rwm".
type deviceAllow struct {
	Path   string
	Access string
}

// deviceProperties expresses the rules as DevicePolicy/DeviceAllow, from the
// same reduction the cgroupfs drivers enforce. systemd can only allow-list:
// a rule set that ends default-allow with exceptions (a deny list) cannot be
// said to systemd, so it gets DevicePolicy=auto with no entries (no systemd
// filter) and the runtime's own filter, attached to the same cgroup, does
// the whole job, as runc does. In a default-deny set, a wildcard minor is
// the kernel's driver name for that major ("char-pts"), as systemd wants it;
// majors /proc/devices does not name cannot be said to systemd either and
// are left to the runtime's filter (which allows them: the intersection of
// the two filters must not be narrower than the rules).
func deviceProperties(rules []specs.LinuxDeviceCgroup) ([]sd.Property, error) {
	rs, err := devices.FromSpec(rules)
	if err != nil {
		return nil, fmt.Errorf("invalid resources: %w", err)
	}
	st, err := devices.Reduce(rs)
	if err != nil {
		return nil, fmt.Errorf("invalid resources: %w", err)
	}
	if st.DefaultAllow {
		return []sd.Property{prop("DevicePolicy", "auto"), prop("DeviceAllow", []deviceAllow{})}, nil
	}
	names := procDevices()
	allows := []deviceAllow{}
	for _, e := range st.Exceptions {
		acc := accessString(e.Access)
		switch {
		case e.Type == 'a':
			// Every device: say it per class (systemd has no "all" entry).
			allows = append(allows, deviceAllow{"char-*", acc}, deviceAllow{"block-*", acc})
		case e.Major == devices.Wildcard:
			allows = append(allows, deviceAllow{classPrefix(e.Type) + "*", acc})
		case e.Minor == devices.Wildcard:
			name, ok := names[string(e.Type)+strconv.FormatInt(e.Major, 10)]
			if !ok {
				// systemd cannot name this major: no systemd filter at all
				// rather than one that denies what the rules allow.
				return []sd.Property{prop("DevicePolicy", "auto"), prop("DeviceAllow", []deviceAllow{})}, nil
			}
			allows = append(allows, deviceAllow{classPrefix(e.Type) + name, acc})
		default:
			dir := "/dev/char/"
			if e.Type == 'b' {
				dir = "/dev/block/"
			}
			allows = append(allows, deviceAllow{fmt.Sprintf("%s%d:%d", dir, e.Major, e.Minor), acc})
		}
	}
	return []sd.Property{prop("DevicePolicy", "strict"), prop("DeviceAllow", allows)}, nil
}

func classPrefix(t byte) string {
	if t == 'b' {
		return "block-"
	}
	return "char-"
}

func accessString(a uint32) string {
	var b strings.Builder
	if a&devices.AccRead != 0 {
		b.WriteByte('r')
	}
	if a&devices.AccWrite != 0 {
		b.WriteByte('w')
	}
	if a&devices.AccMknod != 0 {
		b.WriteByte('m')
	}
	return b.String()
}

// procDevicesFile is read for driver names (a variable for tests).
var procDevicesFile = "/proc/devices"

// procDevices maps "c136" / "b8" to the driver name /proc/devices gives it.
func procDevices() map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile(procDevicesFile)
	if err != nil {
		return out
	}
	class := ""
	for _, line := range strings.Split(string(b), "\n") {
		switch strings.TrimSpace(line) {
		case "Character devices:":
			class = "c"
			continue
		case "Block devices:":
			class = "b"
			continue
		}
		fs := strings.Fields(line)
		if class == "" || len(fs) != 2 {
			continue
		}
		if _, dup := out[class+fs[0]]; !dup {
			out[class+fs[0]] = fs[1]
		}
	}
	return out
}
