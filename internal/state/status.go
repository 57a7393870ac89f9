package state

// Status is a container status as `state` reports it.
type Status string

const (
	Creating Status = "creating" // only ever seen by hooks
	Created  Status = "created"
	Running  Status = "running"
	Paused   Status = "paused"
	Stopped  Status = "stopped"
)

// The operations ask the status whether they may go on, so each rule is
// written once (runc's and youki's tables): start needs the barrier still
// armed, a signal needs an init to receive it, and so on.

// Alive reports whether the container's init exists: created, running or
// paused. A live container can be signalled, updated and listed by pid.
func (s Status) Alive() bool { return s == Created || s == Running || s == Paused }

// CanStart: only a created container, whose init waits at the barrier.
func (s Status) CanStart() bool { return s == Created }

// CanKill: any live container (a paused one is thawed for SIGKILL).
func (s Status) CanKill() bool { return s.Alive() }

// CanPause: running or created (runc freezes a created container too).
func (s Status) CanPause() bool { return s == Running || s == Created }

// CanResume: only a paused container.
func (s Status) CanResume() bool { return s == Paused }

// CanExec: created or running; a paused container only when the caller
// asks to ignore the pause (runc's --ignore-paused).
func (s Status) CanExec(ignorePaused bool) bool {
	return s == Created || s == Running || s == Paused && ignorePaused
}

// CanDelete: delete without --force takes a stopped container, or a
// created one (its init is killed first); a running or paused one needs
// --force.
func (s Status) CanDelete() bool { return s == Stopped || s == Created }
