package ipc

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSequences(t *testing.T) {
	tests := []struct {
		name string
		seq  func() *Sequence
		msgs []Type
		ok   bool
	}{
		{"init direct ready", ParentOfInit, []Type{Ready}, true},
		{"init hooks then ready", ParentOfInit, []Type{Hooks, Log, Ready}, true},
		{"init error first", ParentOfInit, []Type{Error}, true},
		{"init error after hooks", ParentOfInit, []Type{Hooks, Error}, true},
		{"init ready twice", ParentOfInit, []Type{Ready, Ready}, false},
		{"init hooks twice", ParentOfInit, []Type{Hooks, Hooks}, false},
		{"init message after error", ParentOfInit, []Type{Error, Ready}, false},
		{"init bootstrap is parent's", ParentOfInit, []Type{Bootstrap}, false},
		{"exec ready", ParentOfExec, []Type{Ready}, true},
		{"exec hooks not allowed", ParentOfExec, []Type{Hooks}, false},
		{"child bootstrap resume", ChildOfParent, []Type{Bootstrap, Resume}, true},
		{"child placed then resume", ChildOfParent, []Type{Bootstrap, Placed, Resume, SeccompDone}, true},
		{"child placed twice", ChildOfParent, []Type{Bootstrap, Placed, Placed}, false},
		{"child placed after resume", ChildOfParent, []Type{Bootstrap, Resume, Placed}, false},
		{"child resume first", ChildOfParent, []Type{Resume}, false},
		{"logs anywhere", ParentOfExec, []Type{Log, Log, Ready}, true},
		{"init seccomp after hooks", ParentOfInit, []Type{Hooks, Seccomp, Ready}, true},
		{"init seccomp twice", ParentOfInit, []Type{Seccomp, Seccomp}, false},
		{"init hooks after seccomp", ParentOfInit, []Type{Seccomp, Hooks}, false},
		{"exec seccomp", ParentOfExec, []Type{Seccomp, Ready}, true},
		{"child seccomp done", ChildOfParent, []Type{Bootstrap, Resume, SeccompDone}, true},
		{"child resume after seccomp", ChildOfParent, []Type{Bootstrap, SeccompDone, Resume}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.seq()
			var err error
			for _, m := range tt.msgs {
				if err = s.Accept(m); err != nil {
					break
				}
			}
			if (err == nil) != tt.ok {
				t.Fatalf("sequence %v: err=%v, want ok=%v", tt.msgs, err, tt.ok)
			}
		})
	}
}

func TestConnRoundTrip(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := NewConn(os.NewFile(uintptr(fds[0]), "a"), nil)
	b := NewConn(os.NewFile(uintptr(fds[1]), "b"), ParentOfInit())
	defer a.Close()
	defer b.Close()
	type payload struct{ N int }
	if err := a.SendData(Hooks, payload{7}); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(Message{Type: Error, Error: "boom"}); err != nil {
		t.Fatal(err)
	}
	m, err := b.Recv()
	if err != nil || m.Type != Hooks || string(m.Data) != `{"N":7}` {
		t.Fatalf("got %+v, %v", m, err)
	}
	m, err = b.Recv()
	if err != nil || m.Type != Error || m.Error != "boom" {
		t.Fatalf("got %+v, %v", m, err)
	}
	a.Close()
	if _, err := b.Recv(); err == nil {
		t.Fatal("want EOF after close")
	}
}
