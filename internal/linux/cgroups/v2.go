package cgroups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// v2Manager drives one directory of the unified hierarchy.
type v2Manager struct {
	dir string
}

func (m *v2Manager) Mode() Mode { return ModeUnified }

func (m *v2Manager) Path(c string) string {
	if c == "" {
		return m.dir
	}
	return ""
}

func (m *v2Manager) Paths() map[string]string { return map[string]string{"": m.dir} }

func (m *v2Manager) CgroupFD() (*os.File, error) {
	// O_PATH is enough for clone3's CLONE_INTO_CGROUP and cannot be used to
	// read or write the cgroup's files if it leaks.
	fd, err := unix.Open(m.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", &os.PathError{Op: "open", Path: m.dir, Err: err})
	}
	return os.NewFile(uintptr(fd), m.dir), nil
}

// Create makes the directory and enables, in every ancestor below the
// hierarchy root, each controller the ancestor has available, so the leaf can
// use every controller its parent got.
func (m *v2Manager) Create() error {
	root := hierarchyRoot(m.dir)
	rel, err := filepath.Rel(root, m.dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("create cgroup: %s is not below the cgroup2 mount %s", m.dir, root)
	}
	cur := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if err := enableControllers(cur); err != nil {
			return err
		}
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create cgroup: %w", err)
		}
	}
	return nil
}

// hierarchyRoot is the cgroup2 mount holding dir: the highest ancestor with
// a cgroup.controllers file (every cgroup2 directory has one, the directory
// above the mount does not). This works the same for a fake tree in a
// temporary directory.
func hierarchyRoot(dir string) string {
	root := ""
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if exists(filepath.Join(d, "cgroup.controllers")) {
			root = d
		} else if root != "" {
			break
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	if root == "" {
		return filepath.Dir(dir)
	}
	return root
}

func enableControllers(dir string) error {
	avail, err := readFile(dir, "cgroup.controllers")
	if err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	on, err := readFile(dir, "cgroup.subtree_control")
	if err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	enabled := map[string]bool{}
	for _, c := range strings.Fields(on) {
		enabled[c] = true
	}
	var add []string
	for _, c := range strings.Fields(avail) {
		if !enabled[c] {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := writeFile(dir, "cgroup.subtree_control", strings.Join(add, " ")); err != nil {
		// One refused controller (e.g. cpu while a realtime task runs in the
		// parent) must not block the others: enable one at a time.
		var errs []error
		for _, a := range add {
			if err := writeFile(dir, "cgroup.subtree_control", a); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == len(add) {
			return fmt.Errorf("create cgroup: enable controllers: %w", errors.Join(errs...))
		}
	}
	return nil
}

func (m *v2Manager) Apply(pid int) error {
	if err := m.Create(); err != nil {
		return err
	}
	if err := writeFile(m.dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("join cgroup: %w", err)
	}
	return nil
}

func (m *v2Manager) Set(r *specs.LinuxResources) error    { return m.set(r, true) }
func (m *v2Manager) Update(r *specs.LinuxResources) error { return m.set(r, false) }

func (m *v2Manager) set(r *specs.LinuxResources, withDevices bool) error {
	if r == nil {
		return nil
	}
	plan, err := planV2(r, withDevices)
	if err != nil {
		return err
	}
	for _, s := range plan {
		if err := s.write(m.dir); err != nil {
			return fmt.Errorf("set %s: %w", s.controller, err)
		}
	}
	return nil
}

func (m *v2Manager) Freeze() error { return m.setFrozen(true) }
func (m *v2Manager) Thaw() error   { return m.setFrozen(false) }

// setFrozen writes cgroup.freeze and waits until cgroup.events agrees: the
// write returns before every task has stopped.
func (m *v2Manager) setFrozen(on bool) error {
	val, want := "0", "0"
	if on {
		val, want = "1", "1"
	}
	if err := writeFile(m.dir, "cgroup.freeze", val); err != nil {
		return fmt.Errorf("freezer: %w", err)
	}
	deadline := time.Now().Add(freezeTimeout)
	delay := 100 * time.Microsecond
	for {
		kv, err := readKV(m.dir, "cgroup.events")
		if err != nil {
			return fmt.Errorf("freezer: %w", err)
		}
		if utoa(kv["frozen"]) == want {
			return nil
		}
		if time.Now().After(deadline) {
			if on {
				_ = writeFile(m.dir, "cgroup.freeze", "0")
			}
			return fmt.Errorf("freezer: cgroup %s did not reach frozen=%s", m.dir, want)
		}
		time.Sleep(delay)
		if delay < 10*time.Millisecond {
			delay *= 2
		}
	}
}

func (m *v2Manager) Frozen() (bool, error) {
	s, err := readFile(m.dir, "cgroup.freeze")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("freezer: %w", err)
	}
	if strings.TrimSpace(s) != "1" {
		return false, nil
	}
	kv, err := readKV(m.dir, "cgroup.events")
	if err != nil {
		return false, fmt.Errorf("freezer: %w", err)
	}
	return kv["frozen"] == 1, nil
}

func (m *v2Manager) Pids() ([]int, error) {
	pids, err := readPids(m.dir)
	if err != nil {
		return nil, fmt.Errorf("list cgroup processes: %w", err)
	}
	return pids, nil
}

func (m *v2Manager) Exists() bool { return exists(m.dir) }

func (m *v2Manager) CheckEmpty() error { return checkEmpty([]string{m.dir}, m.Frozen) }

// Kill uses cgroup.kill (5.14+) for SIGKILL: the kernel kills every process
// of the tree atomically, forks included, frozen or not. Other signals freeze,
// signal and thaw, leaving a cgroup that was frozen before frozen.
func (m *v2Manager) Kill(sig unix.Signal) error {
	if sig == unix.SIGKILL && exists(filepath.Join(m.dir, "cgroup.kill")) {
		if err := writeFile(m.dir, "cgroup.kill", "1"); err != nil {
			return fmt.Errorf("kill cgroup: %w", err)
		}
		return nil
	}
	wasFrozen, _ := m.Frozen()
	if !wasFrozen {
		if err := m.Freeze(); err != nil {
			return err
		}
	}
	pids, err := m.Pids()
	if err == nil {
		err = signalAll(pids, sig)
	}
	if !wasFrozen {
		err = errors.Join(err, m.Thaw())
	}
	return err
}

func (m *v2Manager) Destroy() error {
	deadline := time.Now().Add(destroyTimeout)
	if err := waitEmpty(m.dir, deadline); err != nil {
		return err
	}
	return removeTree(m.dir, deadline)
}

func (m *v2Manager) OOMCount() (uint64, error) {
	kv, err := readKV(m.dir, "memory.events")
	if err != nil {
		return 0, fmt.Errorf("oom count: %w", err)
	}
	return kv["oom_kill"], nil
}

// OOMEvents watches memory.events with inotify (the kernel sends IN_MODIFY
// when a counter changes) and reports each increase of oom_kill. It stops on
// ctx, when the cgroup empties after having had processes (cgroup.events
// "populated 0", the container is gone, as runc stops), or when the directory
// disappears. kernfs sends no reliable inotify event on rmdir, so a slow poll
// covers that last case.
func (m *v2Manager) OOMEvents(ctx context.Context) (<-chan struct{}, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("oom events: %w", os.NewSyscallError("inotify_init1", err))
	}
	ino := os.NewFile(uintptr(fd), "inotify")
	for _, f := range []string{"memory.events", "cgroup.events"} {
		if _, err := unix.InotifyAddWatch(fd, filepath.Join(m.dir, f), unix.IN_MODIFY); err != nil {
			ino.Close()
			return nil, fmt.Errorf("oom events: watch %s: %w", f, err)
		}
	}
	last, err := m.OOMCount()
	if err != nil {
		ino.Close()
		return nil, err
	}
	// Both starting values are read before returning, so a change the caller
	// makes right after the call is seen as a change.
	start, err := readKV(m.dir, "cgroup.events")
	if err != nil {
		ino.Close()
		return nil, fmt.Errorf("oom events: %w", err)
	}
	populated := start["populated"] == 1
	ch := make(chan struct{})
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { ino.Close() })
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if !m.Exists() {
					ino.Close()
					return
				}
			}
		}
	}()
	go func() {
		defer close(ch)
		defer close(done)
		defer stop()
		defer ino.Close()
		buf := make([]byte, 4096)
		// emit reports the kills counted since the last look; false when the
		// cgroup is gone or the caller stopped listening.
		emit := func() bool {
			n, err := m.OOMCount()
			if err != nil {
				return false // the cgroup is gone
			}
			for ; last < n; last++ {
				select {
				case ch <- struct{}{}:
				case <-ctx.Done():
					return false
				}
			}
			return true
		}
		for {
			if !emit() {
				return
			}
			ev, err := readKV(m.dir, "cgroup.events")
			if err != nil {
				return
			}
			if ev["populated"] == 1 {
				populated = true
			} else if populated {
				// Emptied, perhaps by the very kill that was counted after
				// the look above: look once more before stopping.
				emit()
				return
			}
			if _, err := ino.Read(buf); err != nil {
				return
			}
		}
	}()
	return ch, nil
}
