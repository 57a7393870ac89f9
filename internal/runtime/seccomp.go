package runtime

import (
	"errors"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/ipc"
	"berth/internal/linux/seccomp"
	"berth/internal/spawn"
)

// handOverListener takes the child's seccomp notify listener (fd sf.Fd in
// the child) with pidfd_getfd and sends it with the container state to the
// agent at the profile's listenerPath.
func handOverListener(proc *spawn.Process, sf ipc.SeccompFd, s *specs.Spec, st specs.State) error {
	sc := s.Linux.Seccomp
	if sc == nil || sc.ListenerPath == "" {
		return errors.New("seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")
	}
	pidfd, err := unix.PidfdOpen(proc.Pid, 0)
	if err != nil {
		return os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, sf.Fd, 0)
	if err != nil {
		return os.NewSyscallError("pidfd_getfd", err)
	}
	defer unix.Close(fd)
	st.Pid = proc.Pid
	if err := seccomp.SendListener(sc.ListenerPath, seccomp.NewProcessState(st, proc.Pid, sc.ListenerMetadata), fd, 0); err != nil {
		return fmt.Errorf("unable to send seccomp notify fd: %w", err)
	}
	return nil
}

// compileFilter compiles the spec's profile (nil without one), reporting its
// warnings.
func (r *Runtime) compileFilter(s *specs.Spec) (*seccomp.Filter, error) {
	if s.Linux == nil || s.Linux.Seccomp == nil {
		return nil, nil
	}
	f, err := seccomp.Compile(s.Linux.Seccomp)
	if err != nil {
		return nil, fmt.Errorf("unable to start container process: seccomp: %w", err)
	}
	for _, w := range f.Warnings() {
		r.warn("%s", w)
	}
	return f, nil
}
