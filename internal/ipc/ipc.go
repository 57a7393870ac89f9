// Package ipc is the protocol between the runtime (parent) and a process
// it starts to be set up by the plan executor (child: a container's init,
// an exec process, or a process that runs hooks). One socketpair; the
// parent writes the plan (internal/linux/plan's wire format) and then
// single control bytes, the child writes one JSON object per line.
//
// Ladder for init (create/run):
//
//	parent                               child (the executor)
//	  spawn in new namespaces
//	  ---- Plan ------------------------->
//	  place in cgroups, limits,            mounts, devices, hostname
//	  network (in parallel)                (in parallel)
//	  <--------------------- MountSource -   for an idmapped mount, or a bind
//	  open it in init's mount namespace      source init cannot reach
//	  ---- MountSourceFd ('F' + fd) ----->   (may follow Placed)
//	  ---- Placed ('P') ----------------->
//	                                       unshare cgroup namespace
//	  <--------------------- Hooks -------   only when prestart/createRuntime hooks exist
//	  run prestart, createRuntime
//	  ---- Resume ('R') ----------------->
//	                                       createContainer hooks, pivot_root,
//	                                       console, masks, exe lookup
//	  <--------------------- Seccomp -----   only with SCMP_ACT_NOTIFY
//	  pidfd_getfd, send to the agent
//	  ---- SeccompDone ('S') ------------>
//	                                       user, caps
//	  <--------------------- Ready -------
//	  write state.json, pid file; create exits
//	                                       (blocks on exec.fifo until start), exec
//
// Ladder for exec processes (placed in their cgroup at birth): Plan,
// (Seccomp, SeccompDone,) Ready, and the child execs at once. Ladder for a
// hooks process: Plan, then Ready once every hook ran. At any point the
// child may send Error instead of its next message, exactly once, and
// exits; the parent reports it as "error during container init: <msg>".
// Log messages (warnings) may come at any time and do not advance the
// ladder; nor does Pid, which a child that forked sends before anything
// else, nor a MountSource request (while init mounts, before Hooks and
// Ready), which the parent answers with MountSourceFd before the child
// sends anything else. A Sequence checks every message in both directions against the
// ladder.
package ipc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"berth/internal/linux/plan"
)

// Type names a message kind.
type Type string

const (
	Plan        Type = "plan"        // parent→child: the compiled plan
	Placed      Type = "placed"      // parent→child: init is in its cgroups, limits and network are set
	Hooks       Type = "hooks"       // child→parent: run prestart/createRuntime now
	Resume      Type = "resume"      // parent→child: hooks done
	Seccomp     Type = "seccomp"     // child→parent: the notify listener's fd number
	SeccompDone Type = "seccompDone" // parent→child: the listener was taken
	Ready       Type = "ready"       // child→parent: set up, about to wait/exec
	Error       Type = "error"       // child→parent: setup failed (once, then exit)
	Log         Type = "log"         // child→parent: a warning (any time)
	// Pid (child→parent, first, only from a child that forked into a pid
	// namespace it joined): the pid the process goes on as.
	Pid Type = "pid"
	// MountSource (child→parent): open the source of mount Data.Mount;
	// MountSourceFd (parent→child): here it is, as SCM_RIGHTS.
	MountSource   Type = "mountSource"
	MountSourceFd Type = "mountSourceFd"
)

// MountSourceData is the payload of MountSource: the mount's index in the
// config.
type MountSourceData struct {
	Mount int `json:"mount"`
}

// PidData is the payload of Pid.
type PidData struct {
	Pid int `json:"pid"`
}

// ctl are the control bytes of the parent's messages after the plan.
var ctl = map[Type]byte{Placed: plan.CtlPlaced, Resume: plan.CtlResume, SeccompDone: plan.CtlSeccompDone}

// SeccompFd is the payload of Seccomp.
type SeccompFd struct {
	Fd int `json:"fd"`
}

// Message is one message from the child.
type Message struct {
	Type  Type            `json:"type"`
	Error string          `json:"error,omitempty"`
	Level string          `json:"level,omitempty"`
	Msg   string          `json:"msg,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// Conn is the parent's end of the init pipe.
type Conn struct {
	mu  sync.Mutex
	f   *os.File
	r   *bufio.Reader
	seq *Sequence
}

// NewConn wraps f; seq (may be nil) checks the order of every message.
func NewConn(f *os.File, seq *Sequence) *Conn {
	return &Conn{f: f, r: bufio.NewReader(f), seq: seq}
}

func (c *Conn) accept(t Type) error {
	if c.seq == nil {
		return nil
	}
	return c.seq.Accept(t)
}

// SendPlan writes the encoded plan.
func (c *Conn) SendPlan(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.accept(Plan); err != nil {
		return err
	}
	_, err := c.f.Write(b)
	return err
}

// Send writes one of the parent's control messages (Placed, Resume,
// SeccompDone).
func (c *Conn) Send(t Type) error {
	b, ok := ctl[t]
	if !ok {
		return fmt.Errorf("protocol error: the parent does not send %q", t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.accept(t); err != nil {
		return err
	}
	_, err := c.f.Write([]byte{b})
	return err
}

// SendFile writes MountSourceFd with f as its SCM_RIGHTS.
func (c *Conn) SendFile(t Type, f *os.File) error {
	if t != MountSourceFd {
		return fmt.Errorf("protocol error: %q carries no file", t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.accept(t); err != nil {
		return err
	}
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), []byte{plan.CtlMountSource}, unix.UnixRights(int(f.Fd())), nil, 0)
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	return serr
}

// Recv reads the child's next message, checking its place in the ladder.
// io.EOF means the child closed without another message.
func (c *Conn) Recv() (Message, error) {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return Message{}, io.EOF
		}
		if !errors.Is(err, io.EOF) {
			return Message{}, err
		}
	}
	var m Message
	if err := json.Unmarshal(line, &m); err != nil {
		return Message{}, fmt.Errorf("malformed message from the child: %w", err)
	}
	if m.Type == "" {
		return Message{}, errors.New("malformed message from the child: no type")
	}
	c.mu.Lock()
	err = c.accept(m.Type)
	c.mu.Unlock()
	return m, err
}

// Close closes the parent's end.
func (c *Conn) Close() error { return c.f.Close() }

// Sequence rejects messages, sent or received, that leave the ladder.
type Sequence struct {
	allowed  map[Type][]Type // last message -> the next allowed
	last     Type
	done     bool
	mounting bool // the ladder has mounts (init's): MountSource may come
	sawChild bool
	// mountAsked: a MountSource awaits its MountSourceFd.
	mountAsked bool
}

const start Type = ""

// InitLadder is the ladder of a container's init. Placed follows the plan
// whenever the parent is ready, while the child may already have failed;
// the child's messages after it are hooks, seccomp, ready in that order.
func InitLadder() *Sequence {
	return &Sequence{mounting: true, allowed: map[Type][]Type{
		start:       {Plan},
		Plan:        {Placed, Error},
		Placed:      {Hooks, Seccomp, Ready, Error},
		Hooks:       {Resume, Error},
		Resume:      {Seccomp, Ready, Error},
		Seccomp:     {SeccompDone, Error},
		SeccompDone: {Ready, Error},
	}}
}

// ExecLadder is the ladder of an exec process (and of a hooks process,
// which never sends Seccomp).
func ExecLadder() *Sequence {
	return &Sequence{allowed: map[Type][]Type{
		start:       {Plan},
		Plan:        {Seccomp, Ready, Error},
		Seccomp:     {SeccompDone, Error},
		SeccompDone: {Ready, Error},
	}}
}

// Accept checks that t may come next, and advances.
func (s *Sequence) Accept(t Type) error {
	if t == Log {
		return nil
	}
	if t == Pid {
		// Only before anything else the child says.
		if s.sawChild {
			return fmt.Errorf("protocol error: %q after the child's first message", t)
		}
		s.sawChild = true
		return nil
	}
	if _, parents := ctl[t]; !parents && t != Plan && t != MountSourceFd {
		s.sawChild = true
	}
	switch {
	case t == MountSource:
		if s.done || s.mountAsked || !s.mounting {
			return fmt.Errorf("protocol error: unexpected %q after %q", t, nameOf(s.last))
		}
		if s.last != Plan && s.last != Placed {
			return fmt.Errorf("protocol error: unexpected %q after %q", t, nameOf(s.last))
		}
		s.mountAsked = true
		return nil
	case t == MountSourceFd:
		if !s.mountAsked {
			return fmt.Errorf("protocol error: %q without a request", t)
		}
		s.mountAsked = false
		return nil
	case s.mountAsked && t != Placed && t != Error:
		return fmt.Errorf("protocol error: %q while a mount source request is open", t)
	}
	if s.done {
		return fmt.Errorf("protocol error: %q after the sequence ended", t)
	}
	for _, a := range s.allowed[s.last] {
		if a == t {
			s.last = t
			if t == Ready || t == Error {
				s.done = true
			}
			return nil
		}
	}
	return fmt.Errorf("protocol error: unexpected %q after %q", t, nameOf(s.last))
}

func nameOf(t Type) Type {
	if t == start {
		return "start"
	}
	return t
}
