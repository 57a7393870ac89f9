package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/ipc"
	"berth/internal/linux/plan"
	"berth/internal/spawn"
)

// childError is a failure the executor reported (once, then it exited).
type childError struct{ msg string }

func (e *childError) Error() string { return e.msg }

// mountRequestError is a mount source the runtime failed to open for init.
type mountRequestError struct{ err error }

func (e *mountRequestError) Error() string { return "failed to fulfil mount request: " + e.err.Error() }
func (e *mountRequestError) Unwrap() error { return e.err }

// handlers answer a child's requests; nil where its ladder has none.
type handlers struct {
	hooks   func() error
	seccomp func(ipc.SeccompFd) error
	sources *mountSources
}

// follow reads what a child set up by the executor sends until Ready:
// warnings are logged, Hooks, Seccomp and MountSource are answered by h,
// an Error comes back as a *childError, and a child that dies without a
// word as spawn.ErrInitDied.
func (r *Runtime) follow(proc *spawn.Process, h handlers) error {
	for {
		m, err := proc.Conn.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				werr := proc.Cmd.Wait()
				return fmt.Errorf("%w (%v)", spawn.ErrInitDied, werr) //nolint:errorlint // the wait status is detail for the reader; callers test ErrInitDied only
			}
			return err
		}
		switch m.Type {
		case ipc.Log:
			r.warn("%s", m.Msg)
		case ipc.Error:
			return &childError{m.Error}
		case ipc.MountSource:
			var d ipc.MountSourceData
			if err := json.Unmarshal(m.Data, &d); err != nil {
				return fmt.Errorf("malformed mount source request: %w", err)
			}
			f, err := h.sources.Open(d.Mount)
			if err != nil {
				return &mountRequestError{err}
			}
			err = proc.Conn.SendFile(ipc.MountSourceFd, f)
			f.Close()
			if err != nil {
				return err
			}
		case ipc.Hooks:
			if err := h.hooks(); err != nil {
				return err
			}
			if err := proc.Conn.Send(ipc.Resume); err != nil {
				return err
			}
		case ipc.Seccomp:
			var sf ipc.SeccompFd
			if err := json.Unmarshal(m.Data, &sf); err != nil {
				return err
			}
			if err := h.seccomp(sf); err != nil {
				return err
			}
			if err := proc.Conn.Send(ipc.SeccompDone); err != nil {
				return err
			}
		case ipc.Ready:
			return nil
		}
	}
}

// childFailure returns the executor's own error report, if it sent one
// before it exited. Call it only once the child is dead or dying: it reads
// until the stream ends.
func childFailure(proc *spawn.Process) error {
	for {
		m, err := proc.Conn.Recv()
		if err != nil {
			return nil
		}
		if m.Type == ipc.Error {
			return &childError{m.Error}
		}
	}
}

// sendPlan encodes res's plan for the started child, sends it, and logs
// the warnings compiling it found.
func (r *Runtime) sendPlan(proc *spawn.Process, res *plan.Result) error {
	if err := proc.Conn.SendPlan(res.Plan.Encode(proc.Pid)); err != nil {
		return err
	}
	for _, w := range res.Warnings {
		r.warn("%s", w)
	}
	return nil
}

// runHooks runs hooks where the runtime runs (prestart, createRuntime,
// poststart, poststop) through the executor, the one hook runner there is
// (internal/nsenter/hooks.c): a child started in the runtime's own
// namespaces and cgroup runs them in order, with st on their stdin, and
// stops at the first failure.
func (r *Runtime) runHooks(kind string, hs []specs.Hook, st specs.State) error {
	if len(hs) == 0 {
		return nil
	}
	res, err := plan.CompileHooks(kind, hs, st)
	if err != nil {
		return err
	}
	proc, err := spawn.Start(&spawn.Options{}, ipc.ExecLadder())
	if err != nil {
		return fmt.Errorf("running %s hooks: %w", kind, err)
	}
	defer proc.Conn.Close()
	if err := r.sendPlan(proc, res); err != nil {
		proc.Cmd.Process.Kill()
		proc.Cmd.Wait()
		return fmt.Errorf("running %s hooks: %w", kind, err)
	}
	err = r.follow(proc, handlers{})
	if proc.Cmd.ProcessState == nil { // follow reaps a child that died silently
		if werr := proc.Cmd.Wait(); err == nil && werr != nil {
			err = fmt.Errorf("running %s hooks: %w", kind, werr)
		}
	}
	var ce *childError
	if errors.As(err, &ce) {
		// The hook's own failure, as runc words it: not a failure of the
		// container's init.
		return errors.New(ce.msg)
	}
	return err
}
