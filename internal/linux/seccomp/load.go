package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"
)

// Load installs the filter on the calling process (all threads: TSYNC) and
// returns the notify listener fd when the profile uses SCMP_ACT_NOTIFY, else
// -1. The listener fd is close-on-exec; hand it to the agent (see
// SendListener, usually after passing it to the runtime parent) before execve.
//
// Call it as late as possible before execve, after PR_SET_NO_NEW_PRIVS (or
// with CAP_SYS_ADMIN), from the goroutine that will execve.
func (f *Filter) Load() (listenerFd int, err error) {
	if err := f.Loadable(); err != nil {
		return -1, err
	}
	prog := unix.SockFprog{Len: uint16(len(f.prog)), Filter: &f.prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, f.flags, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(f.prog)
	if errno != 0 {
		return -1, f.LoadError(errno)
	}
	if f.listener {
		return int(r), nil
	}
	if r != 0 {
		// TSYNC without TSYNC_ESRCH reports the thread it could not sync.
		return -1, fmt.Errorf("seccomp: loading filter: thread %d could not be synchronised (it has a diverging filter)", r)
	}
	return -1, nil
}

// Loadable reports, without loading anything, whether this kernel offers
// every action the filter returns (what Load checks first).
func (f *Filter) Loadable() error {
	if len(f.prog) == 0 {
		return errors.New("seccomp: empty filter (use Compile)")
	}
	for _, act := range f.actions {
		if err := actionAvailable(act); err != nil {
			return err
		}
	}
	return nil
}

// LoadError is the error a failed load of f reports for errno, with the hint
// or the list of filter flags this kernel lacks that explains it.
func (f *Filter) LoadError(errno unix.Errno) error {
	switch errno {
	case unix.EACCES:
		return fmt.Errorf("seccomp: loading filter: %w (set no_new_privs or keep CAP_SYS_ADMIN)", errno)
	case unix.ESRCH:
		return fmt.Errorf("seccomp: loading filter: %w (another thread could not be synchronised)", errno)
	case unix.EINVAL:
		var missing []string
		for name, bit := range flagBits {
			if f.flags&bit != 0 && !flagSupported(bit) {
				missing = append(missing, string(name))
			}
		}
		if f.listener && !flagSupported(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER|unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH) {
			missing = append(missing, "SECCOMP_FILTER_FLAG_NEW_LISTENER (SCMP_ACT_NOTIFY)")
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			return fmt.Errorf("seccomp: the kernel does not support %v", missing)
		}
	}
	return fmt.Errorf("seccomp: loading filter: %w", errno)
}

// flagSupported probes a filter flag the way libseccomp does: with a NULL
// program the kernel validates the flags first, so EFAULT means "known".
func flagSupported(bits uintptr) bool {
	if bits&unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV != 0 {
		// Only valid together with a listener.
		bits |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
	}
	if bits&unix.SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 && bits&unix.SECCOMP_FILTER_FLAG_TSYNC != 0 {
		bits |= unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
	}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, bits, 0)
	return errno == unix.EFAULT
}

// actionAvailable asks the kernel whether it implements a return action; an
// unknown action would otherwise silently behave like KILL_PROCESS.
func actionAvailable(act uint32) error {
	a := act
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&a)))
	switch errno {
	case 0:
		return nil
	case unix.EOPNOTSUPP:
		return fmt.Errorf("seccomp: the kernel does not support action %s", retName(act))
	case unix.EINVAL, unix.ENOSYS:
		// Kernels before 4.14 cannot answer; they know the classic actions.
		if act == unix.SECCOMP_RET_KILL_THREAD || act == unix.SECCOMP_RET_TRAP || act == unix.SECCOMP_RET_ERRNO ||
			act == unix.SECCOMP_RET_TRACE || act == unix.SECCOMP_RET_ALLOW {
			return nil
		}
		return fmt.Errorf("seccomp: the kernel cannot report support for action %s: %w", retName(act), errno)
	}
	return fmt.Errorf("seccomp: probing action %s: %w", retName(act), errno)
}

func retName(act uint32) string {
	switch act & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_KILL_PROCESS:
		return string(specs.ActKillProcess)
	case unix.SECCOMP_RET_KILL_THREAD:
		return string(specs.ActKillThread)
	case unix.SECCOMP_RET_TRAP:
		return string(specs.ActTrap)
	case unix.SECCOMP_RET_ERRNO:
		return string(specs.ActErrno)
	case unix.SECCOMP_RET_USER_NOTIF:
		return string(specs.ActNotify)
	case unix.SECCOMP_RET_TRACE:
		return string(specs.ActTrace)
	case unix.SECCOMP_RET_LOG:
		return string(specs.ActLog)
	case unix.SECCOMP_RET_ALLOW:
		return string(specs.ActAllow)
	}
	return fmt.Sprintf("%#x", act)
}

// Features describes seccomp support for `berth features`, in the shape of
// runc's output: the actions, operators, architectures and flags berth
// knows, and the flags this kernel accepts (probed now).
func Features() *features.Seccomp {
	enabled := true
	f := &features.Seccomp{Enabled: &enabled}
	for a := range actionNames {
		f.Actions = append(f.Actions, string(a))
	}
	sort.Strings(f.Actions)
	for op := range operators {
		f.Operators = append(f.Operators, string(op))
	}
	sort.Strings(f.Operators)
	f.Archs = SupportedArchs()
	// Known flags in runc's order (the order of the seccomp(2) bits).
	known := []specs.LinuxSeccompFlag{FlagTsync, specs.LinuxSeccompFlagSpecAllow, specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagWaitKillableRecv}
	for _, fl := range known {
		f.KnownFlags = append(f.KnownFlags, string(fl))
		if flagSupported(flagBits[fl]) {
			f.SupportedFlags = append(f.SupportedFlags, string(fl))
		}
	}
	return f
}
