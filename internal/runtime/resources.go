package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/linux/cgroups"
	"berth/internal/state"
)

func (c *Container) mustCgroup() (cgroups.Manager, error) {
	cg, err := c.cgroup()
	if err != nil {
		return nil, err
	}
	if cg == nil {
		return nil, errors.New("container has no cgroup")
	}
	return cg, nil
}

// Pause freezes every process of a running or created container.
func (r *Runtime) Pause(id string) error {
	c, err := r.Load(id)
	if err != nil {
		return err
	}
	defer c.Release()
	if !c.Status().CanPause() {
		return state.ErrNotRunning
	}
	cg, err := c.mustCgroup()
	if err != nil {
		return err
	}
	return cg.Freeze()
}

// Resume thaws a paused container.
func (r *Runtime) Resume(id string) error {
	c, err := r.Load(id)
	if err != nil {
		return err
	}
	defer c.Release()
	if !c.Status().CanResume() {
		return state.ErrNotPaused
	}
	cg, err := c.mustCgroup()
	if err != nil {
		return err
	}
	return cg.Thaw()
}

// Pids lists the host pids of every process in the container's cgroup.
func (r *Runtime) Pids(id string) ([]int, error) {
	c, err := r.Load(id)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	if !c.Status().Alive() {
		return nil, nil
	}
	cg, err := c.mustCgroup()
	if err != nil {
		return nil, err
	}
	return cg.Pids()
}

// Update changes the live resource limits (devices are never updated, as
// in runc) and records them in the state.
func (r *Runtime) Update(id string, res *specs.LinuxResources) error {
	c, err := r.LoadFull(id)
	if err != nil {
		return err
	}
	defer c.Release()
	if !c.Status().Alive() {
		return state.ErrNotRunning
	}
	cg, err := c.mustCgroup()
	if err != nil {
		return err
	}
	if err := cg.Update(res); err != nil {
		return err
	}
	if c.Config.Linux.Resources == nil {
		c.Config.Linux.Resources = &specs.LinuxResources{}
	}
	mergeResources(c.Config.Linux.Resources, res)
	return c.Save()
}

func mergeResources(dst, src *specs.LinuxResources) {
	if src.Memory != nil {
		dst.Memory = src.Memory
	}
	if src.CPU != nil {
		dst.CPU = src.CPU
	}
	if src.Pids != nil {
		dst.Pids = src.Pids
	}
	if src.BlockIO != nil {
		dst.BlockIO = src.BlockIO
	}
	if src.Unified != nil {
		if dst.Unified == nil {
			dst.Unified = map[string]string{}
		}
		for k, v := range src.Unified {
			dst.Unified[k] = v
		}
	}
}

// Event is one line of `events`: runc's {type,id,data}.
type Event struct {
	Type string         `json:"type"`
	ID   string         `json:"id"`
	Data *cgroups.Stats `json:"data,omitempty"`
}

// Events reports stats once (interval 0) or every interval, plus an "oom"
// event whenever the kernel OOM-kills inside the container, until the
// container's cgroup is gone or ctx ends.
func (r *Runtime) Events(ctx context.Context, id string, interval time.Duration, emit func(Event) error) error {
	c, err := r.Load(id)
	if err != nil {
		return err
	}
	if !c.Status().Alive() {
		c.Release()
		return fmt.Errorf("container with id %s is not running", id)
	}
	cg, err := c.mustCgroup()
	c.Release()
	if err != nil {
		return err
	}
	stats := func() error {
		s, err := cg.Stats()
		if err != nil {
			return err
		}
		return emit(Event{Type: "stats", ID: id, Data: s})
	}
	if interval <= 0 {
		return stats()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ooms, err := cg.OOMEvents(ctx)
	if err != nil {
		return err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	if err := stats(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-ooms:
			if !ok {
				return nil // the cgroup is gone
			}
			if err := emit(Event{Type: "oom", ID: id}); err != nil {
				return err
			}
		case <-tick.C:
			if !cg.Exists() {
				return nil
			}
			if err := stats(); err != nil {
				return err
			}
		}
	}
}
