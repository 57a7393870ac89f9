// Package runtime implements the container lifecycle, one file per
// operation. Each operation is guard, act, persist: take the container's
// lock, check its status, do the one thing, save the state.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/killpoint"
	"berth/internal/linux/cgroups"
	"berth/internal/state"
)

// Runtime is one state root (--root) and the options every command shares.
type Runtime struct {
	Root string
	// Warn receives non-fatal problems (the CLI logs them at warning level).
	Warn func(string)
	// Debug receives debug messages.
	Debug func(string)
	// Network, when set, wires every container that has a network
	// namespace of its own into a network at create and unwires it at
	// destroy (the one-shot path).
	Network NetworkAttacher
	// Rootless: the runtime runs without root on the host (--rootless, by
	// default when its euid is not 0): a cgroup it may not create is done
	// without, when the config asks for no limits and names no cgroup.
	Rootless bool
	// SystemdCgroup selects the systemd cgroup driver (--systemd-cgroup):
	// each container is a transient systemd unit (see package systemd).
	SystemdCgroup bool
}

// NetworkAttacher connects a container's network namespace to a network and
// disconnects it again. The runtime defines it so it never depends on
// netlink or nftables; internal/network's Attach/Detach implement it.
//   - Attach is called after init exists in its namespaces and before it
//     runs anything of the container; rootfs receives resolv.conf and hosts.
//   - Detach is keyed by container id, so it works after the namespace is
//     gone; detaching what is not attached is not an error.
type NetworkAttacher interface {
	Attach(ctx context.Context, id, netnsPath, rootfs string) error
	Detach(ctx context.Context, id string) error
}

func (r *Runtime) warn(format string, a ...any) {
	if r.Warn != nil {
		r.Warn(fmt.Sprintf(format, a...))
	}
}

func (r *Runtime) debugf(format string, a ...any) {
	if r.Debug != nil {
		r.Debug(fmt.Sprintf(format, a...))
	}
}

// phase logs, at debug level, how long each step of an operation took. Its
// names are also the steps the fault-injection tests kill berth at (test
// only: BERTH_TEST_KILL_AT, see internal/killpoint).
type phase struct {
	r    *Runtime
	last time.Time
}

func (r *Runtime) phases() *phase { return &phase{r: r, last: time.Now()} }

func (p *phase) done(what string) {
	killpoint.At(what)
	if p.r.Debug == nil {
		return
	}
	now := time.Now()
	p.r.debugf("%s: %v", what, now.Sub(p.last).Round(time.Microsecond))
	p.last = now
}

// Container is a loaded container under its lock.
type Container struct {
	*state.State
	unlock func()
}

// Release drops the container's lock.
func (c *Container) Release() {
	if c.unlock != nil {
		c.unlock()
		c.unlock = nil
	}
}

// Load locks and loads id, its config decoded only in the parts every
// command but create and update reads (state.LoadView).
func (r *Runtime) Load(id string) (*Container, error) { return r.load(id, state.LoadView) }

// LoadFull is Load with the whole config, for operations that change and
// save it (update).
func (r *Runtime) LoadFull(id string) (*Container, error) { return r.load(id, state.Load) }

func (r *Runtime) load(id string, from func(root, id string) (*state.State, error)) (*Container, error) {
	if err := state.ValidateID(id); err != nil {
		return nil, err
	}
	unlock, err := state.Lock(state.Dir(r.Root, id))
	if err != nil {
		return nil, err
	}
	st, err := from(r.Root, id)
	if err != nil {
		unlock()
		return nil, err
	}
	return &Container{State: st, unlock: unlock}, nil
}

// StatusError is the guard failure of a lifecycle operation.
type StatusError struct{ msg string }

func (e *StatusError) Error() string { return e.msg }

func (c *Container) cgroup() (cgroups.Manager, error) {
	if len(c.CgroupPaths) == 0 {
		return nil, nil
	}
	return cgroups.Load(c.CgroupPaths)
}

// signal sends sig to init, or to every process of the cgroup when all is
// set (or SIGKILL on a container without its own pid namespace, where init's
// death would not take the rest with it).
func (c *Container) signal(sig unix.Signal, all bool) error {
	if all || (sig == unix.SIGKILL && !c.OwnPidNS) {
		if cg, err := c.cgroup(); err == nil && cg != nil {
			if err := cg.Kill(sig); err != nil {
				return fmt.Errorf("signal cgroup: %w", err)
			}
			if !all {
				return nil
			}
		}
	}
	if err := c.signalInit(sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return state.ErrNotRunning
		}
		return err
	}
	return nil
}

// signalInit signals init through a pidfd checked against the recorded start
// time, so a recycled pid is never signalled.
func (c *Container) signalInit(sig unix.Signal) error {
	pfd, err := unix.PidfdOpen(c.InitPid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if st, zombie, err := state.ProcStart(c.InitPid); err != nil || zombie || st != c.InitStart {
		return unix.ESRCH
	}
	return unix.PidfdSendSignal(pfd, sig, nil, 0)
}

// waitStopped polls until init is gone (runc: every 100 ms, 100 times).
func (c *Container) waitStopped(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if c.Status() == state.Stopped {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func removeDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
