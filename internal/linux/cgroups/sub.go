package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// JoinSub moves pid into sub-cgroups of the container's cgroup, for exec
// --cgroup. Each value is "PATH" (every hierarchy) or "CTRL[,CTRL]:PATH"
// (those v1 controllers; other hierarchies get the container's own cgroup).
// PATH is relative to the container's cgroup, cannot climb out of it, and must
// already exist (the container creates its sub-cgroups), as in runc. On v2
// there is one hierarchy, so only the "PATH" form is accepted.
func JoinSub(m Manager, pid int, values []string) error {
	sub := map[string]string{}
	for _, v := range values {
		ctrls, p, hasCtrl := strings.Cut(v, ":")
		if !hasCtrl {
			p, ctrls = ctrls, ""
		}
		if p == "" {
			return fmt.Errorf("--cgroup %q: empty path", v)
		}
		rel, err := filepath.Rel("/", filepath.Clean("/"+p))
		if err != nil {
			return fmt.Errorf("--cgroup %q: %w", v, err)
		}
		if !hasCtrl {
			sub[""] = rel
			continue
		}
		if m.Mode() == ModeUnified {
			return fmt.Errorf("--cgroup %q: cgroup v2 has a single hierarchy, give only a path", v)
		}
		for _, c := range strings.Split(ctrls, ",") {
			if m.Path(c) == "" || c == "" {
				return fmt.Errorf("--cgroup %q: controller %q is not managed for this container", v, c)
			}
			sub[c] = rel
		}
	}
	paths := m.Paths()
	for c, base := range paths {
		rel, ok := sub[c]
		if !ok {
			rel = sub[""]
		}
		dir := filepath.Join(base, rel)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("join sub-cgroup %s: %w", dir, ErrNotExist)
		}
		if err := writeFile(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("join sub-cgroup: %w", err)
		}
	}
	return nil
}

// ErrDisabled is returned by a Disabled manager for operations that need a cgroup.
var ErrDisabled = errors.New("cgroups are disabled for this container")

// Disabled returns a manager that manages nothing: placement and limits are
// no-ops (a spec with limits is refused, so nothing is silently unenforced),
// and freeze, pids, stats and kill report ErrDisabled. It replaces scattered
// "if no cgroups" checks in the runtime (DESIGN.md §2).
func Disabled() Manager { return disabled{} }

type disabled struct{}

func (disabled) Create() error      { return nil }
func (disabled) Apply(int) error    { return nil }
func (disabled) Destroy() error     { return nil }
func (disabled) Exists() bool       { return false }
func (disabled) CheckEmpty() error  { return nil }
func (disabled) Mode() Mode         { return 0 }
func (disabled) Freeze() error      { return ErrDisabled }
func (disabled) Thaw() error        { return ErrDisabled }
func (disabled) Path(string) string { return "" }
func (disabled) Paths() map[string]string {
	return map[string]string{}
}
func (disabled) Frozen() (bool, error)                { return false, nil }
func (disabled) Pids() ([]int, error)                 { return nil, ErrDisabled }
func (disabled) Stats() (*Stats, error)               { return nil, ErrDisabled }
func (disabled) OOMCount() (uint64, error)            { return 0, ErrDisabled }
func (disabled) Kill(unix.Signal) error               { return ErrDisabled }
func (disabled) CgroupFD() (*os.File, error)          { return nil, ErrNoCgroupFD }
func (disabled) Set(r *specs.LinuxResources) error    { return refuseLimits(r) }
func (disabled) Update(r *specs.LinuxResources) error { return refuseLimits(r) }
func (disabled) OOMEvents(context.Context) (<-chan struct{}, error) {
	return nil, ErrDisabled
}

// refuseLimits accepts a spec whose only resources are device rules (every
// runc-style spec carries the default list; without cgroups the device nodes
// the runtime creates are the only ones, which is what the rules allow) and
// values that mean "not set" (Docker's cpu.shares 0, ...), and refuses any
// real limit.
func refuseLimits(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	set := len(r.HugepageLimits) > 0 || r.Network != nil || len(r.Rdma) > 0 || len(r.Unified) > 0 ||
		(r.Pids != nil && r.Pids.Limit != nil) ||
		(r.Memory != nil && (memorySet(r.Memory) || swappinessSet(r.Memory))) ||
		(r.CPU != nil && (cpuSet(r.CPU) || r.CPU.Cpus != "" || r.CPU.Mems != "" ||
			ptrU64(r.CPU.RealtimePeriod) != 0 || ptrI64(r.CPU.RealtimeRuntime) != 0)) ||
		(r.BlockIO != nil && blockIOSet(r.BlockIO))
	if !set {
		return nil
	}
	return fmt.Errorf("cannot set resource limits: %w", ErrDisabled)
}
