package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/state"
)

// Start releases a created container's init: it opens exec.fifo for reading
// (init is blocked opening it for writing), reads init's byte, and removes
// the fifo, which turns the status into running. Poststart hooks run after
// the process was released (runc's main branch order; v1.5.1 ran them during
// create).
func (r *Runtime) Start(id string) error {
	ph := r.phases()
	c, err := r.Load(id)
	if err != nil {
		return err
	}
	defer c.Release()
	ph.done("load state")
	if st := c.Status(); !st.CanStart() {
		switch st {
		case state.Stopped:
			return errors.New("cannot start a container that has stopped")
		case state.Running:
			return errors.New("cannot start an already running container")
		}
		return fmt.Errorf("cannot start a container in the %s state", st)
	}
	return r.startLocked(c, ph)
}

// release is the reading side of the create/start barrier.
func (c *Container) release() error {
	path := filepath.Join(c.Dir(), state.FifoName)
	type res struct {
		n   int
		err error
	}
	done := make(chan res, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- res{0, err}
			return
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		done <- res{len(b), err}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			if r.err != nil {
				return fmt.Errorf("open exec fifo: %w", r.err)
			}
			if r.n == 0 {
				return errors.New("cannot start an already running container")
			}
			return os.Remove(path)
		case <-tick.C:
			// init died while we wait: do not block forever.
			if c.Status() == state.Stopped {
				// Unblock our own open by opening the write side ourselves.
				if f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
				<-done
				return errors.New("cannot start a container that has stopped")
			}
		}
	}
}
