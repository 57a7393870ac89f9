package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/state"
)

// Delete removes a container. A stopped one is destroyed; a created one is
// killed first (runc's behaviour, which clients rely on); a running or paused
// one only with force. A state dir without state.json (a create that died
// half-way) is removed; a missing container is an error unless force.
func (r *Runtime) Delete(id string, force bool) error {
	if err := state.ValidateID(id); err != nil {
		return err
	}
	ph := r.phases()
	c, err := r.Load(id)
	if err != nil {
		if errors.Is(err, state.ErrNotExist) {
			dir := state.Dir(r.Root, id)
			if _, serr := os.Stat(dir); serr == nil {
				// Half-created: take its lock so a create still running is not cut short.
				if unlock, lerr := state.Lock(dir); lerr == nil {
					defer unlock()
				}
				if _, lerr := state.Load(r.Root, id); errors.Is(lerr, state.ErrNotExist) {
					if cerr := cleanHalfCreated(dir); cerr != nil {
						return cerr
					}
					ph.done("half-created container cleaned")
					if rerr := removeDir(dir); rerr != nil {
						return rerr
					}
				}
			}
			if force {
				return nil
			}
		}
		return err
	}
	defer c.Release()
	ph.done("load state")
	st := c.Status()
	if !st.CanDelete() && !force {
		return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, st)
	}
	if st.Alive() {
		if err := c.kill(); err != nil {
			return err
		}
	}
	ph.done("killed")
	return r.destroy(c, ph)
}

// kill SIGKILLs the container (thawing it first so the signal is delivered)
// and waits for init to go, up to runc's 10 s.
func (c *Container) kill() error {
	if cg, err := c.cgroup(); err == nil && cg != nil {
		if frozen, _ := cg.Frozen(); frozen {
			_ = cg.Thaw()
		}
	}
	if err := c.signal(unix.SIGKILL, !c.OwnPidNS); err != nil && !errors.Is(err, state.ErrNotRunning) {
		return err
	}
	if !c.waitStopped(10 * time.Second) {
		return errors.New("container init still running after SIGKILL")
	}
	return nil
}

// destroy removes what the container holds: remaining processes (without a
// pid namespace of its own), the cgroup, the network endpoint, then the state
// dir; then poststop hooks. The state dir goes last and only when the rest is
// gone: it is the only record of the cgroup and the endpoint, so a destroy
// that fails (a cgroup another process still holds) or is killed half-way
// leaves it for the next delete to finish.
func (r *Runtime) destroy(c *Container, ph *phase) error {
	var errs []error
	cg, err := c.cgroup()
	if err != nil {
		// Paths that do not load (not below cgroupfs) name nothing the
		// runtime could act on: reported, but they do not keep the state.
		r.warn("container %s: %v", c.ID, err)
	} else if cg != nil {
		if !c.OwnPidNS {
			_ = cg.Kill(unix.SIGKILL)
		}
		if err := cg.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
		} else {
			ph.done("cgroup removed")
		}
	}
	if c.NetworkAttached {
		if r.Network == nil {
			r.warn("container %s was attached to a network by its creator; its endpoint is left for `berth network prune`", c.ID)
		} else if err := r.Network.Detach(context.Background(), c.ID); err != nil {
			errs = append(errs, fmt.Errorf("detach network: %w", err))
		} else {
			ph.done("network detached")
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := removeDir(c.Dir()); err != nil {
		return err
	}
	ph.done("state dir removed")
	if h := c.Config.Hooks; h != nil {
		if err := r.runHooks("poststop", h.Poststop, c.OCIState(state.Stopped)); err != nil {
			r.warn("%v", err)
		}
	}
	return nil
}
