package plan

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ConfigError is a config the runtime refuses the way runc's spec
// conversion and validation refuse it, before anything of the container
// runs: the runtime reports it as it is, not as a failure of the init.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(format string, a ...any) error { return &ConfigError{fmt.Errorf(format, a...)} }

// MaxCPU bounds a CPU or NUMA node number in a set (runc's limit).
const MaxCPU = 8192

// CPUSet parses a list like "0-3,5,7-9" (spaces and empty elements
// allowed, as runc allows them) into a bit mask of u64 words.
func CPUSet(str string) ([]uint64, error) {
	var mask []uint64
	members := 0
	for r := range strings.SplitSeq(str, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(r, "-")
		start, err := cpuNumber(lo)
		if err != nil {
			return nil, err
		}
		end := start
		if isRange {
			if end, err = cpuNumber(hi); err != nil {
				return nil, err
			}
			if start > end {
				return nil, errors.New("invalid range: " + r)
			}
		}
		for len(mask) <= end/64 {
			mask = append(mask, 0)
		}
		for i := start; i <= end; i++ {
			mask[i/64] |= 1 << uint(i%64)
		}
		members++
	}
	if members == 0 {
		return nil, fmt.Errorf("no members found in set %q", str)
	}
	return mask, nil
}

func cpuNumber(v string) (int, error) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, err
	}
	if n > MaxCPU {
		return 0, fmt.Errorf("values larger than %d are not supported", MaxCPU)
	}
	return int(n), nil
}

func count(mask []uint64) int {
	n := 0
	for _, w := range mask {
		n += bits.OnesCount64(w)
	}
	return n
}

// allCPUs is the mask an inherited affinity is reset to: every possible
// CPU (the kernel clamps it to its own CPUs and to the cgroup's cpuset,
// and remembers the rest should the cpuset grow).
func allCPUs() []uint64 {
	m := make([]uint64, MaxCPU/64)
	for i := range m {
		m[i] = ^uint64(0)
	}
	return m
}

var schedPolicies = map[specs.LinuxSchedulerPolicy]uint32{
	specs.SchedOther: 0, specs.SchedFIFO: 1, specs.SchedRR: 2, specs.SchedBatch: 3,
	specs.SchedISO: 4, specs.SchedIdle: 5, specs.SchedDeadline: 6,
}

var schedFlags = map[specs.LinuxSchedulerFlag]uint64{
	specs.SchedFlagResetOnFork: 0x01, specs.SchedFlagReclaim: 0x02, specs.SchedFlagDLOverrun: 0x04,
	specs.SchedFlagKeepPolicy: 0x08, specs.SchedFlagKeepParams: 0x10, specs.SchedFlagUtilClampMin: 0x20,
	specs.SchedFlagUtilClampMax: 0x40,
}

// scheduler validates process.scheduler as runc does (sched_setattr(2)'s
// rules) and returns its step.
func scheduler(s *specs.Scheduler, cpuset string) (*Scheduler, error) {
	if s == nil {
		return nil, nil
	}
	if s.Policy == "" {
		return nil, configErr("scheduler policy is required")
	}
	policy, ok := schedPolicies[s.Policy]
	if !ok {
		return nil, configErr("invalid scheduler policy: %s", s.Policy)
	}
	if (s.Policy == specs.SchedOther || s.Policy == specs.SchedBatch) && (s.Nice < -20 || s.Nice > 19) {
		return nil, configErr("invalid scheduler.nice: %d when scheduler.policy is %s", s.Nice, s.Policy)
	}
	if s.Priority != 0 && s.Policy != specs.SchedFIFO && s.Policy != specs.SchedRR {
		return nil, configErr("scheduler.priority can only be specified for SchedFIFO or SchedRR policy")
	}
	if s.Policy != specs.SchedDeadline && (s.Runtime != 0 || s.Deadline != 0 || s.Period != 0) {
		return nil, configErr("scheduler runtime/deadline/period can only be specified for SchedDeadline policy")
	}
	st := &Scheduler{Policy: policy, Nice: s.Nice, Priority: uint32(s.Priority), Runtime: s.Runtime, Deadline: s.Deadline, Period: s.Period}
	for _, f := range s.Flags {
		v, ok := schedFlags[f]
		if !ok {
			return nil, configErr("invalid scheduler flag: %s", f)
		}
		st.Flags |= v
	}
	if cpuset != "" {
		st.CpusetErr = "process scheduler can't be used together with AllowedCPUs"
	}
	return st, nil
}

// ioPriority validates process.ioPriority as runc does; the value is
// ioprio_set(2)'s (class << 13 | level).
func ioPriority(p *specs.LinuxIOPriority) (*IOPriority, error) {
	if p == nil {
		return nil, nil
	}
	if p.Priority < 0 || p.Priority > 7 {
		return nil, configErr("invalid ioPriority.Priority: %d", p.Priority)
	}
	var class uint32
	switch p.Class {
	case specs.IOPRIO_CLASS_RT:
		class = 1
	case specs.IOPRIO_CLASS_BE:
		class = 2
	case specs.IOPRIO_CLASS_IDLE:
		class = 3
	default:
		return nil, configErr("invalid ioPriority.Class: %q", p.Class)
	}
	return &IOPriority{Value: class<<13 | uint32(p.Priority)}, nil
}

// personality converts linux.personality; flags are ignored with a
// warning, as runc ignores them (none is defined).
func personality(p *specs.LinuxPersonality) (*Personality, string, error) {
	if p == nil {
		return nil, "", nil
	}
	var warning string
	if len(p.Flags) > 0 {
		warning = fmt.Sprintf("ignoring unsupported personality flags: %+v because personality flag has not supported at this time", p.Flags)
	}
	switch p.Domain {
	case specs.PerLinux:
		return &Personality{Persona: 0}, warning, nil
	case specs.PerLinux32:
		return &Personality{Persona: 0x0008}, warning, nil
	}
	return nil, "", configErr("invalid personality domain %s", p.Domain)
}

var mpolModes = map[specs.MemoryPolicyModeType]uint32{
	specs.MpolDefault: unix.MPOL_DEFAULT, specs.MpolPreferred: unix.MPOL_PREFERRED, specs.MpolBind: unix.MPOL_BIND,
	specs.MpolInterleave: unix.MPOL_INTERLEAVE, specs.MpolLocal: unix.MPOL_LOCAL,
	specs.MpolPreferredMany: unix.MPOL_PREFERRED_MANY, specs.MpolWeightedInterleave: unix.MPOL_WEIGHTED_INTERLEAVE,
}

var mpolFlags = map[specs.MemoryPolicyFlagType]uint32{
	specs.MpolFStaticNodes: unix.MPOL_F_STATIC_NODES, specs.MpolFRelativeNodes: unix.MPOL_F_RELATIVE_NODES,
	specs.MpolFNumaBalancing: unix.MPOL_F_NUMA_BALANCING,
}

// memoryPolicy converts and validates linux.memoryPolicy as runc does.
func memoryPolicy(m *specs.LinuxMemoryPolicy) (*MemoryPolicy, error) {
	if m == nil {
		return nil, nil
	}
	mode, ok := mpolModes[m.Mode]
	if !ok {
		return nil, configErr("invalid memory policy mode %q", m.Mode)
	}
	var nodes []uint64
	if m.Nodes != "" {
		var err error
		if nodes, err = CPUSet(m.Nodes); err != nil {
			return nil, configErr("invalid memory policy nodes %q: %w", m.Nodes, err)
		}
	}
	st := &MemoryPolicy{Mode: mode, Nodes: nodes}
	for _, f := range m.Flags {
		v, ok := mpolFlags[f]
		if !ok {
			return nil, configErr("invalid memory policy flag %q", f)
		}
		st.Mode |= v
	}
	switch n := count(nodes); mode {
	case unix.MPOL_DEFAULT, unix.MPOL_LOCAL:
		if n != 0 {
			return nil, configErr("memory policy mode requires 0 nodes but got %d", n)
		}
	case unix.MPOL_BIND, unix.MPOL_INTERLEAVE, unix.MPOL_PREFERRED_MANY, unix.MPOL_WEIGHTED_INTERLEAVE:
		if n == 0 {
			return nil, configErr("memory policy mode requires at least one node but got 0")
		}
	}
	return st, nil
}

// Affinity is an exec process's CPU affinity: Initial the parent's
// spawning thread takes (the child inherits it, before it is placed in its
// cgroup), Final what the process gets once placed.
type AffinityMasks struct {
	Initial, Final []uint64
}

// ExecAffinity parses process.execCPUAffinity.
func ExecAffinity(a *specs.CPUAffinity) (AffinityMasks, error) {
	var m AffinityMasks
	if a == nil {
		return m, nil
	}
	var err error
	if a.Initial != "" {
		if m.Initial, err = CPUSet(a.Initial); err != nil {
			return m, configErr("bad CPUAffinity.Initial: %w", err)
		}
	}
	if a.Final != "" {
		if m.Final, err = CPUSet(a.Final); err != nil {
			return m, configErr("bad CPUAffinity.Final: %w", err)
		}
	}
	return m, nil
}
