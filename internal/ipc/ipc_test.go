package ipc

import (
	"errors"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLadders(t *testing.T) {
	tests := []struct {
		name string
		seq  func() *Sequence
		msgs []Type
		ok   bool
	}{
		{"init plain", InitLadder, []Type{Plan, Placed, Ready}, true},
		{"init hooks", InitLadder, []Type{Plan, Placed, Hooks, Log, Resume, Ready}, true},
		{"init hooks and listener", InitLadder, []Type{Plan, Placed, Hooks, Resume, Seccomp, SeccompDone, Ready}, true},
		{"init listener", InitLadder, []Type{Plan, Placed, Seccomp, SeccompDone, Ready}, true},
		{"init fails before placed", InitLadder, []Type{Plan, Error}, true},
		{"init fails after hooks", InitLadder, []Type{Plan, Placed, Hooks, Resume, Error}, true},
		{"init fails at the listener", InitLadder, []Type{Plan, Placed, Seccomp, Error}, true},
		{"init logs anywhere", InitLadder, []Type{Log, Plan, Log, Placed, Log, Ready}, true},
		{"init plan first", InitLadder, []Type{Placed}, false},
		{"init plan twice", InitLadder, []Type{Plan, Plan}, false},
		{"init ready before placed", InitLadder, []Type{Plan, Ready}, false},
		{"init placed twice", InitLadder, []Type{Plan, Placed, Placed}, false},
		{"init resume without hooks", InitLadder, []Type{Plan, Placed, Resume}, false},
		{"init hooks twice", InitLadder, []Type{Plan, Placed, Hooks, Resume, Hooks}, false},
		{"init hooks after the listener", InitLadder, []Type{Plan, Placed, Seccomp, SeccompDone, Hooks}, false},
		{"init ready without seccomp done", InitLadder, []Type{Plan, Placed, Seccomp, Ready}, false},
		{"init ready twice", InitLadder, []Type{Plan, Placed, Ready, Ready}, false},
		{"init anything after error", InitLadder, []Type{Plan, Error, Placed}, false},
		{"init mount sources before placed", InitLadder, []Type{Plan, MountSource, MountSourceFd, MountSource, MountSourceFd, Placed, Ready}, true},
		{"init mount source answered after placed", InitLadder, []Type{Plan, MountSource, Placed, MountSourceFd, Hooks, Resume, Ready}, true},
		{"init mount source after placed", InitLadder, []Type{Plan, Placed, MountSource, MountSourceFd, Ready}, true},
		{"init fails awaiting a mount source", InitLadder, []Type{Plan, MountSource, Error}, true},
		{"init mount source asked twice", InitLadder, []Type{Plan, MountSource, MountSource}, false},
		{"init mount source unasked", InitLadder, []Type{Plan, MountSourceFd}, false},
		{"init ready awaiting a mount source", InitLadder, []Type{Plan, Placed, MountSource, Ready}, false},
		{"init mount source after hooks", InitLadder, []Type{Plan, Placed, Hooks, Resume, MountSource}, false},
		{"init mount source before the plan", InitLadder, []Type{MountSource}, false},
		{"exec no mount sources", ExecLadder, []Type{Plan, MountSource}, false},
		{"exec plain", ExecLadder, []Type{Plan, Ready}, true},
		{"exec listener", ExecLadder, []Type{Plan, Seccomp, SeccompDone, Ready}, true},
		{"exec error", ExecLadder, []Type{Plan, Error}, true},
		{"exec no placement", ExecLadder, []Type{Plan, Placed}, false},
		{"exec no hooks", ExecLadder, []Type{Plan, Hooks}, false},
		{"exec done without listener", ExecLadder, []Type{Plan, SeccompDone}, false},
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
				t.Fatalf("ladder %v: err=%v, want ok=%v", tt.msgs, err, tt.ok)
			}
		})
	}
}

func TestConnRoundTrip(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	child := os.NewFile(uintptr(fds[0]), "child")
	parent := NewConn(os.NewFile(uintptr(fds[1]), "parent"), InitLadder())
	defer child.Close()
	defer parent.Close()
	if err := parent.Send(Placed); err == nil {
		t.Fatal("placed before the plan was accepted")
	}
	if err := parent.SendPlan([]byte("PLAN")); err != nil {
		t.Fatal(err)
	}
	if err := parent.Send(Placed); err != nil {
		t.Fatal(err)
	}
	if err := parent.Send(Ready); err == nil {
		t.Fatal("the parent sent a child's message")
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(child, got); err != nil || string(got) != "PLANP" {
		t.Fatalf("child read %q, %v", got, err)
	}
	child.WriteString(`{"type":"hooks"}` + "\n" + `{"type":"error","error":"boom"}` + "\n")
	m, err := parent.Recv()
	if err != nil || m.Type != Hooks {
		t.Fatalf("got %+v, %v", m, err)
	}
	m, err = parent.Recv()
	if err != nil || m.Type != Error || m.Error != "boom" {
		t.Fatalf("got %+v, %v", m, err)
	}
	child.Close()
	if _, err := parent.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("want EOF after close, got %v", err)
	}
}

// TestConnSendFile: a mount source request is answered with the control
// byte and the file as SCM_RIGHTS, and only while one is open.
func TestConnSendFile(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	child := os.NewFile(uintptr(fds[0]), "child")
	parent := NewConn(os.NewFile(uintptr(fds[1]), "parent"), InitLadder())
	defer child.Close()
	defer parent.Close()
	src, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := parent.SendPlan([]byte("PLAN")); err != nil {
		t.Fatal(err)
	}
	if err := parent.SendFile(MountSourceFd, src); err == nil {
		t.Fatal("a mount source sent unasked")
	}
	child.WriteString(`{"type":"mountSource","data":{"mount":3}}` + "\n")
	m, err := parent.Recv()
	if err != nil || m.Type != MountSource || string(m.Data) != `{"mount":3}` {
		t.Fatalf("got %+v, %v", m, err)
	}
	if err := parent.SendFile(Placed, src); err == nil {
		t.Fatal("placed carried a file")
	}
	if err := parent.SendFile(MountSourceFd, src); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 8), make([]byte, unix.CmsgSpace(4))
	plan := make([]byte, 4)
	if _, err := io.ReadFull(child, plan); err != nil {
		t.Fatal(err)
	}
	n, oobn, _, _, err := unix.Recvmsg(int(child.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil || n != 1 || buf[0] != 'F' {
		t.Fatalf("child got %q (%d bytes), %v", buf[:n], n, err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v, %v", msgs, err)
	}
	got, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(got) != 1 {
		t.Fatalf("rights %v, %v", got, err)
	}
	defer unix.Close(got[0])
	var a, b unix.Stat_t
	if unix.Fstat(got[0], &a) != nil || unix.Fstat(int(src.Fd()), &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev {
		t.Error("the child's fd is not the file sent")
	}
	if err := parent.SendFile(MountSourceFd, src); err == nil {
		t.Fatal("a request answered twice")
	}
}
