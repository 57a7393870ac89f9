package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// v1Manager drives one directory per v1 hierarchy (and, on hybrid hosts, the
// empty v2 tree under "" so /proc/<pid>/cgroup agrees on every line).
type v1Manager struct {
	paths map[string]string
	mode  Mode
}

func (m *v1Manager) Mode() Mode { return m.mode }

func (m *v1Manager) Path(c string) string { return m.paths[c] }

func (m *v1Manager) Paths() map[string]string {
	out := make(map[string]string, len(m.paths))
	for k, v := range m.paths {
		out[k] = v
	}
	return out
}

func (m *v1Manager) CgroupFD() (*os.File, error) { return nil, ErrNoCgroupFD }

func (m *v1Manager) sortedControllers() []string {
	var cs []string
	for c := range m.paths {
		cs = append(cs, c)
	}
	sort.Strings(cs)
	return cs
}

func (m *v1Manager) Create() error {
	for _, c := range m.sortedControllers() {
		made, err := mkdirAll(m.paths[c])
		if err != nil {
			return err
		}
		if c == "cpuset" {
			// A new cpuset cgroup starts with empty cpus/mems and refuses
			// tasks until they are filled: copy each new level's from its parent.
			for _, d := range made {
				if err := cpusetInherit(d); err != nil {
					return err
				}
			}
			// Also fix a level left empty by an earlier, interrupted Create.
			if err := cpusetInherit(m.paths[c]); err != nil {
				return err
			}
		}
	}
	return nil
}

func cpusetInherit(dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		cur, err := readFile(dir, f)
		if err != nil {
			return fmt.Errorf("cpuset: %w", err)
		}
		if strings.TrimSpace(cur) != "" {
			continue
		}
		parent, err := readFile(filepath.Dir(dir), f)
		if err != nil {
			return fmt.Errorf("cpuset: %w", err)
		}
		if err := writeFile(dir, f, strings.TrimSpace(parent)); err != nil {
			return fmt.Errorf("cpuset: %w", err)
		}
	}
	return nil
}

func (m *v1Manager) Apply(pid int) error {
	if err := m.Create(); err != nil {
		return err
	}
	for _, c := range m.sortedControllers() {
		if err := writeFile(m.paths[c], "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("join %s cgroup: %w", controllerName(c), err)
		}
	}
	return nil
}

func controllerName(c string) string {
	if c == "" {
		return "unified"
	}
	return c
}

func (m *v1Manager) Set(r *specs.LinuxResources) error    { return m.set(r, true) }
func (m *v1Manager) Update(r *specs.LinuxResources) error { return m.set(r, false) }

func (m *v1Manager) set(r *specs.LinuxResources, devices bool) error {
	if r == nil {
		return nil
	}
	plan, err := planV1(r, devices)
	if err != nil {
		return err
	}
	for _, step := range plan {
		dir := m.paths[step.controller]
		if dir == "" {
			return fmt.Errorf("cannot set %s limit: the %s controller is not mounted", step.controller, step.controller)
		}
		if err := step.write(dir); err != nil {
			return fmt.Errorf("set %s: %w", step.controller, err)
		}
	}
	return nil
}

func (m *v1Manager) freezerDir() (string, error) {
	d := m.paths["freezer"]
	if d == "" {
		return "", errors.New("cgroup v1: the freezer controller is not mounted")
	}
	return d, nil
}

func (m *v1Manager) Freeze() error { return m.setFreezer("FROZEN") }
func (m *v1Manager) Thaw() error   { return m.setFreezer("THAWED") }

// setFreezer writes the state and waits for it. A v1 freeze can sit in
// FREEZING while a task is in an uninterruptible sleep; rewriting FROZEN
// retries the tasks that did not stop, so the write is repeated while waiting.
func (m *v1Manager) setFreezer(state string) error {
	dir, err := m.freezerDir()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(freezeTimeout)
	delay := 100 * time.Microsecond
	for {
		if err := writeFile(dir, "freezer.state", state); err != nil {
			return fmt.Errorf("freezer: %w", err)
		}
		cur, err := readFile(dir, "freezer.state")
		if err != nil {
			return fmt.Errorf("freezer: %w", err)
		}
		if strings.TrimSpace(cur) == state {
			return nil
		}
		if time.Now().After(deadline) {
			if state == "FROZEN" {
				// Leave it thawed rather than half frozen.
				_ = writeFile(dir, "freezer.state", "THAWED")
			}
			return fmt.Errorf("freezer: cgroup %s did not reach %s (still %s)", dir, state, strings.TrimSpace(cur))
		}
		time.Sleep(delay)
		if delay < 10*time.Millisecond {
			delay *= 2
		}
	}
}

func (m *v1Manager) Frozen() (bool, error) {
	dir, err := m.freezerDir()
	if err != nil {
		return false, err
	}
	s, err := readFile(dir, "freezer.state")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("freezer: %w", err)
	}
	// FREEZING counts as not (yet) frozen, as runc treats it.
	return strings.TrimSpace(s) == "FROZEN", nil
}

// pidsDir is the hierarchy whose cgroup.procs lists the container: the
// freezer one when present (runc's choice), else any.
func (m *v1Manager) pidsDir() (string, error) {
	for _, c := range []string{"freezer", "pids", "memory", "devices"} {
		if d := m.paths[c]; d != "" {
			return d, nil
		}
	}
	for _, c := range m.sortedControllers() {
		return m.paths[c], nil
	}
	return "", errors.New("cgroup v1: no hierarchy")
}

func (m *v1Manager) Pids() ([]int, error) {
	d, err := m.pidsDir()
	if err != nil {
		return nil, err
	}
	pids, err := readPids(d)
	if err != nil {
		return nil, fmt.Errorf("list cgroup processes: %w", err)
	}
	return pids, nil
}

func (m *v1Manager) CheckEmpty() error {
	var dirs []string
	for _, c := range m.sortedControllers() {
		dirs = append(dirs, m.paths[c])
	}
	return checkEmpty(dirs, func() (bool, error) {
		if _, err := m.freezerDir(); err != nil {
			return false, nil // no freezer: nothing can be frozen
		}
		return m.Frozen()
	})
}

func (m *v1Manager) Exists() bool {
	d, err := m.pidsDir()
	return err == nil && exists(d)
}

// Kill signals every process. SIGKILL goes through the hybrid v2 tree's
// cgroup.kill when there is one (5.14+: atomic, forks included); otherwise
// the cgroup is frozen so nothing forks away between listing and signalling.
// A cgroup that was frozen before stays frozen, except that SIGKILL thaws
// it: v1-frozen tasks cannot act on any signal, and the container is dying.
func (m *v1Manager) Kill(sig unix.Signal) error {
	if u := m.paths[""]; sig == unix.SIGKILL && u != "" && exists(filepath.Join(u, "cgroup.kill")) {
		if err := writeFile(u, "cgroup.kill", "1"); err != nil {
			return fmt.Errorf("kill cgroup: %w", err)
		}
		return m.thawIfFrozen()
	}
	_, err := m.freezerDir()
	canFreeze := err == nil
	wasFrozen := false
	if canFreeze {
		wasFrozen, _ = m.Frozen()
		if !wasFrozen {
			if err := m.Freeze(); err != nil {
				return err
			}
		}
	}
	pids, err := m.Pids()
	if err == nil {
		err = signalAll(pids, sig)
	}
	if canFreeze && (!wasFrozen || sig == unix.SIGKILL) {
		err = errors.Join(err, m.Thaw())
	}
	return err
}

func (m *v1Manager) thawIfFrozen() error {
	if _, err := m.freezerDir(); err != nil {
		return nil
	}
	if frozen, _ := m.Frozen(); frozen {
		return m.Thaw()
	}
	return nil
}

func (m *v1Manager) Destroy() error {
	deadline := time.Now().Add(destroyTimeout)
	// Killed tasks in a frozen v1 cgroup cannot exit until it thaws.
	if exists(m.paths["freezer"]) {
		if err := m.thawIfFrozen(); err != nil {
			return err
		}
	}
	d, err := m.pidsDir()
	if err == nil {
		if err := waitEmpty(d, deadline); err != nil {
			return err
		}
	}
	var errs []error
	for _, c := range m.sortedControllers() {
		if err := removeTree(m.paths[c], deadline); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *v1Manager) OOMCount() (uint64, error) {
	d := m.paths["memory"]
	if d == "" {
		return 0, errors.New("cgroup v1: the memory controller is not mounted")
	}
	kv, err := readKV(d, "memory.oom_control")
	if err != nil {
		return 0, fmt.Errorf("oom count: %w", err)
	}
	return kv["oom_kill"], nil
}

// OOMEvents registers an eventfd on memory.oom_control through
// cgroup.event_control; the kernel signals it on every OOM in the cgroup and
// once more when the cgroup is removed.
func (m *v1Manager) OOMEvents(ctx context.Context) (<-chan struct{}, error) {
	d := m.paths["memory"]
	if d == "" {
		return nil, errors.New("cgroup v1: the memory controller is not mounted")
	}
	oc, err := os.Open(filepath.Join(d, "memory.oom_control"))
	if err != nil {
		return nil, fmt.Errorf("oom events: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		oc.Close()
		return nil, fmt.Errorf("oom events: %w", os.NewSyscallError("eventfd", err))
	}
	ev := os.NewFile(uintptr(efd), "oom-eventfd")
	if err := writeFile(d, "cgroup.event_control", fmt.Sprintf("%d %d", efd, oc.Fd())); err != nil {
		ev.Close()
		oc.Close()
		return nil, fmt.Errorf("oom events: %w", err)
	}
	ch := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { ev.Close() })
	go func() {
		defer close(ch)
		defer oc.Close()
		defer stop()
		defer ev.Close()
		buf := make([]byte, 8)
		for {
			if _, err := ev.Read(buf); err != nil {
				return
			}
			if !exists(filepath.Join(d, "memory.oom_control")) {
				return
			}
			select {
			case ch <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}
