package cgroups

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// A systemd scope cannot be created empty, but berth's init is born in its
// cgroup (Join), so the scope must exist before init does: the systemd
// driver (package systemd) starts it holding a Placeholder, and the join of
// the container's first process lets the placeholder go (Join.Close): once
// a process other than the placeholder is in the cgroup, the placeholder is
// killed and reaped. If the runtime dies first, the placeholder dies with it
// (PR_SET_PDEATHSIG) and systemd removes the empty scope.

// Placeholder is a process that is stopped before its first instruction:
// the runtime's own binary, traced, which the kernel stops with SIGTRAP right
// after execve. It never runs, so it needs no memory of its own and takes
// exactly one task.
type Placeholder struct {
	pid  int
	proc *os.Process
	dir  string // the cgroup directory it keeps alive, once handed over
	once sync.Once
	done chan struct{} // closed once reaped: frees the parent thread
}

var placeholders struct {
	sync.Mutex
	byDir map[string]*Placeholder
}

// StartPlaceholder starts one. Its parent (and tracer) is an OS thread kept
// locked until the placeholder is gone: the death signal and the trace
// follow the thread, and Go ends the threads of goroutines that exit locked.
func StartPlaceholder() (*Placeholder, error) {
	h := &Placeholder{done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd := &exec.Cmd{
			Path: "/proc/self/exe",
			Args: []string{"berth-cgroup-placeholder"},
			Env:  []string{},
			SysProcAttr: &syscall.SysProcAttr{
				Ptrace:    true,
				Pdeathsig: syscall.SIGKILL,
				Setsid:    true,
			},
		}
		if err := cmd.Start(); err != nil {
			errc <- fmt.Errorf("start the cgroup's placeholder process: %w", err)
			return
		}
		h.pid, h.proc = cmd.Process.Pid, cmd.Process
		errc <- nil
		<-h.done
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return h, nil
}

// Pid is the placeholder's pid.
func (h *Placeholder) Pid() int { return h.pid }

// Kill ends and reaps the placeholder (once; nil-safe).
func (h *Placeholder) Kill() {
	if h == nil {
		return
	}
	h.once.Do(func() {
		_ = unix.Kill(h.pid, unix.SIGKILL)
		// A traced child reports its stops to wait4 too: wait for its death.
		for {
			var ws unix.WaitStatus
			_, err := unix.Wait4(h.pid, &ws, 0, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || ws.Exited() || ws.Signaled() {
				break
			}
		}
		_ = h.proc.Release()
		close(h.done)
	})
}

// HandOver makes the next OpenJoin of dir (a directory the placeholder is
// in) take the placeholder, and that join's Close release it.
func (h *Placeholder) HandOver(dir string) {
	placeholders.Lock()
	defer placeholders.Unlock()
	if placeholders.byDir == nil {
		placeholders.byDir = map[string]*Placeholder{}
	}
	h.dir = dir
	placeholders.byDir[dir] = h
}

// KillPlaceholder kills the placeholder handed over for dir, if any (a
// create that fails before its join).
func KillPlaceholder(dir string) {
	placeholders.Lock()
	h := placeholders.byDir[dir]
	delete(placeholders.byDir, dir)
	placeholders.Unlock()
	h.Kill()
}

func takePlaceholder(paths map[string]string) *Placeholder {
	placeholders.Lock()
	defer placeholders.Unlock()
	for _, d := range paths {
		if h, ok := placeholders.byDir[d]; ok {
			delete(placeholders.byDir, d)
			return h
		}
	}
	return nil
}

// placeholderJoinTimeout bounds how long a join waits for its process to
// appear in the cgroup before it lets the placeholder go anyway.
const placeholderJoinTimeout = 2 * time.Second

// releaseAfterJoin kills the placeholder once another process is in its
// cgroup: at once on cgroup v2 (the child was born there), within
// microseconds on v1 (the child moves itself in its constructor).
func (h *Placeholder) releaseAfterJoin() {
	deadline := time.Now().Add(placeholderJoinTimeout)
	for delay := 50 * time.Microsecond; time.Now().Before(deadline); delay *= 2 {
		if othersIn(h.dir, h.pid) {
			break
		}
		time.Sleep(min(delay, 10*time.Millisecond))
	}
	h.Kill()
}

func othersIn(dir string, except int) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != except {
			return true
		}
	}
	return false
}

// UnitDriver, when set (by package systemd), gets every manager Load builds
// and may wrap it: saved paths of a systemd unit are managed through systemd.
var UnitDriver func(paths map[string]string, fs Manager) Manager

// Validate checks r as Set (withDevices) or Update would on a host in mode
// m, without writing anything.
func Validate(r *specs.LinuxResources, m Mode, withDevices bool) error {
	if r == nil {
		return nil
	}
	var err error
	if m == ModeUnified {
		_, err = planV2(r, withDevices)
	} else {
		_, err = planV1(r, withDevices)
	}
	return err
}

// ParseCPUList parses a cpuset list ("0-3,8").
func ParseCPUList(s string) ([]uint16, error) { return parseCPUList(s) }
