// Package ipc is the wire protocol between the runtime (parent) and a
// container's init or exec process (child): one socketpair, one JSON object
// per line, each with a Type.
//
// Ladder for init (create/run):
//
//	parent                               child (berth init)
//	  spawn in new namespaces
//	  ---- Bootstrap (config) ------------>
//	  place in cgroups, limits,            mounts, devices, hostname
//	  network (in parallel)                (in parallel)
//	  ---- Placed (seccomp program) ------>
//	                                       unshare cgroup namespace
//	  <--------------------- Hooks -------   only when prestart/createRuntime hooks exist
//	  run prestart, createRuntime
//	  ---- Resume ------------------------>
//	                                       createContainer hooks, pivot_root,
//	                                       console, masks, exe lookup
//	  <--------------------- Seccomp -----   only with SCMP_ACT_NOTIFY
//	  pidfd_getfd, send to the agent
//	  ---- SeccompDone ------------------->
//	                                       user, caps
//	  <--------------------- Ready -------
//	  write state.json, pid file; create exits
//	                                       (blocks on exec.fifo until start), exec
//
// Ladder for exec processes (placed in their cgroup before Bootstrap):
// Bootstrap, (Seccomp, SeccompDone,) then Ready (the child then execs at
// once). At any point the child may send Error instead of its next message,
// exactly once, and exits; the parent reports it as "error during container
// init: <msg>". Log messages may come at any time and do not advance the
// sequence.
package ipc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Type names a message kind.
type Type string

const (
	Bootstrap Type = "bootstrap" // parent→child: the config
	Placed    Type = "placed"    // parent→child: init is in its cgroups, limits and network are set
	Hooks     Type = "hooks"     // child→parent: run prestart/createRuntime now
	Resume    Type = "resume"    // parent→child: hooks done
	Ready     Type = "ready"     // child→parent: set up, about to wait/exec
	Error     Type = "error"     // child→parent: setup failed (once, then exit)
	Log       Type = "log"       // child→parent: a log line (any time)
	// Seccomp (child→parent) names the child's seccomp notify listener fd;
	// the parent copies it with pidfd_getfd, hands it to the agent and
	// answers SeccompDone (parent→child).
	Seccomp     Type = "seccomp"
	SeccompDone Type = "seccompDone"
)

// SeccompFd is the payload of Seccomp.
type SeccompFd struct {
	Fd int `json:"fd"`
}

// Message is one protocol message.
type Message struct {
	Type  Type            `json:"type"`
	Error string          `json:"error,omitempty"`
	Level string          `json:"level,omitempty"`
	Msg   string          `json:"msg,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// Conn sends and receives Messages over one stream.
type Conn struct {
	mu  sync.Mutex
	w   io.Writer
	r   *bufio.Reader
	c   io.Closer
	seq *Sequence
}

// NewConn wraps f; seq (may be nil) validates the order of received messages.
func NewConn(f *os.File, seq *Sequence) *Conn {
	return &Conn{w: f, r: bufio.NewReader(f), c: f, seq: seq}
}

// Send writes m as one line.
func (c *Conn) Send(m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err = c.w.Write(append(b, '\n'))
	return err
}

// WriteRaw writes b as is, outside the message framing (the exec plan the
// child's constructor reads before any message; see runtime/fastexec.go).
func (c *Conn) WriteRaw(b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.w.Write(b)
	return err
}

// SendData sends a message of type t carrying v as Data.
func (c *Conn) SendData(t Type, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Send(Message{Type: t, Data: b})
}

// Recv reads the next message, checking its place in the sequence. io.EOF
// means the peer closed without another message.
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
		return Message{}, fmt.Errorf("malformed message from peer: %w", err)
	}
	if c.seq != nil {
		if err := c.seq.Accept(m.Type); err != nil {
			return Message{}, err
		}
	}
	return m, nil
}

// Close closes the underlying stream.
func (c *Conn) Close() error { return c.c.Close() }

// Sequence rejects received messages that arrive out of the ladder's order.
type Sequence struct {
	allowed map[Type][]Type // state (last message) -> next allowed
	last    Type
	done    bool
}

const start Type = ""

// ParentOfInit validates what the parent receives from an init process.
func ParentOfInit() *Sequence {
	return &Sequence{allowed: map[Type][]Type{
		start:   {Hooks, Seccomp, Ready, Error},
		Hooks:   {Seccomp, Ready, Error},
		Seccomp: {Ready, Error},
	}}
}

// ParentOfExec validates what the parent receives from an exec process.
func ParentOfExec() *Sequence {
	return &Sequence{allowed: map[Type][]Type{start: {Seccomp, Ready, Error}, Seccomp: {Ready, Error}}}
}

// ChildOfParent validates what a child receives.
func ChildOfParent() *Sequence {
	return &Sequence{allowed: map[Type][]Type{
		start:     {Bootstrap},
		Bootstrap: {Placed, Resume, SeccompDone}, // exec processes get no Placed
		Placed:    {Resume, SeccompDone},
		Resume:    {SeccompDone},
	}}
}

// Accept checks that t may come next, and advances.
func (s *Sequence) Accept(t Type) error {
	if t == Log {
		return nil
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
