package initproc

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/ipc"
	"berth/internal/linux/seccomp"
)

// seccompFilter is a compiled filter and when to load it. Without
// no_new_privs loading needs CAP_SYS_ADMIN, so it happens before the
// capabilities are dropped; with it, as late as possible: right before
// execve ("late"). A filter with SCMP_ACT_NOTIFY loads before Ready, because
// its listener fd must reach the runtime (and from there the agent) while
// the runtime still listens.
type seccompFilter struct {
	f    *seccomp.Filter
	late bool
}

// compileSeccomp takes the filter the runtime compiled (in parallel with
// this process's start-up; see Config.SeccompProgram) or, without one,
// compiles the profile here. A bad profile fails `create` with a clear error.
func compileSeccomp(c *Config, p *specs.Process) (*seccompFilter, []string, error) {
	if c.SeccompDisabled || c.Spec.Linux == nil || c.Spec.Linux.Seccomp == nil {
		return nil, nil, nil
	}
	f := &seccomp.Filter{}
	var warnings []string
	if len(c.SeccompProgram) > 0 {
		if err := f.UnmarshalBinary(c.SeccompProgram); err != nil {
			return nil, nil, fmt.Errorf("seccomp: %w", err)
		}
	} else {
		var err error
		if f, err = seccomp.Compile(c.Spec.Linux.Seccomp); err != nil {
			return nil, nil, fmt.Errorf("seccomp: %w", err)
		}
		warnings = f.Warnings()
	}
	return &seccompFilter{f: f, late: p.NoNewPrivileges && !f.NeedsListener()}, warnings, nil
}

// load installs the filter; a listener fd is handed to the parent, which
// takes a copy with pidfd_getfd and passes it to the agent.
func (s *seccompFilter) load(conn *ipc.Conn) error {
	fd, err := s.f.Load()
	if err != nil {
		return err
	}
	if fd < 0 {
		return nil
	}
	if conn == nil {
		return fmt.Errorf("seccomp: notify listener has nowhere to go")
	}
	if err := conn.SendData(ipc.Seccomp, ipc.SeccompFd{Fd: fd}); err != nil {
		return err
	}
	m, err := conn.Recv()
	if err != nil {
		return fmt.Errorf("seccomp: waiting for the runtime to take the listener: %w", err)
	}
	if m.Type != ipc.SeccompDone {
		return fmt.Errorf("seccomp: unexpected %q", m.Type)
	}
	return closeFd(fd)
}
