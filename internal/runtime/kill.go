package runtime

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"berth/internal/state"
)

// ParseSignal accepts runc's forms: a number, NAME or SIGNAME, any case.
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("unknown signal %q", s)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// Kill sends sig to the container's init (all: to every process in its
// cgroup; a container that is not running is then not an error, as runc).
func (r *Runtime) Kill(id string, sig unix.Signal, all bool) error {
	c, err := r.Load(id)
	if err != nil {
		return err
	}
	defer c.Release()
	if !c.Status().CanKill() {
		if all {
			return nil
		}
		return state.ErrNotRunning
	}
	err = c.signal(sig, all)
	if all && errors.Is(err, state.ErrNotRunning) {
		return nil
	}
	return err
}
