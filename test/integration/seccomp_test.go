package integration

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/seccomp"
	"berth/internal/testutil"
)

func errnoRet(v uint) *uint { return &v }

func TestSeccompErrnoInContainer(t *testing.T) {
	r := newRT(t)
	for _, nnp := range []bool{true, false} {
		b := testutil.Bundle(t, func(s *specs.Spec) {
			s.Process.NoNewPrivileges = nnp
			s.Linux.Seccomp = &specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
				Syscalls: []specs.LinuxSyscall{
					{Names: []string{"mkdir", "mkdirat", "no_such_syscall"}, Action: specs.ActErrno, ErrnoRet: errnoRet(uint(unix.EPERM))},
				},
			}
		}, "sh", "-c", "mkdir /tmp/x; echo rc=$?")
		res := r.run("run", "-b", b, r.id())
		if res.code != 0 || !strings.Contains(res.stdout, "rc=1") || !strings.Contains(res.stdout+res.stderr, "Operation not permitted") {
			t.Errorf("nnp=%v: mkdir under seccomp ERRNO: %+v", nnp, res)
		}
		if !strings.Contains(res.stderr, "no_such_syscall") {
			t.Errorf("nnp=%v: unknown syscall name should be warned about: %s", nnp, res.stderr)
		}
	}
}

// TestSeccompNotifyAgent checks listenerPath: the agent receives the listener
// fd and the container state, and answers the container's mkdir itself.
func TestSeccompNotifyAgent(t *testing.T) {
	r := newRT(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type got struct {
		ps  *specs.ContainerProcessState
		err error
	}
	agent := make(chan got, 1)
	go func() {
		conn, err := l.AcceptUnix()
		if err != nil {
			agent <- got{err: err}
			return
		}
		defer conn.Close()
		ps, fd, err := seccomp.ReceiveListener(conn)
		if err != nil {
			agent <- got{err: err}
			return
		}
		defer unix.Close(fd)
		n, err := seccomp.NotifRecv(fd)
		if err == nil {
			// Pretend mkdir succeeded without doing it.
			err = seccomp.NotifRespond(fd, n.ID, 0, 0, 0)
		}
		agent <- got{ps: ps, err: err}
	}()
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow, ListenerPath: sock, ListenerMetadata: "meta-1",
			Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActNotify}},
		}
	}, "sh", "-c", "mkdir /tmp/notified && echo mkdir-ok; test -d /tmp/notified || echo not-created")
	id := r.id()
	res := r.run("run", "-b", b, id)
	var g got
	select {
	case g = <-agent:
	case <-time.After(20 * time.Second):
		t.Fatal("agent got nothing")
	}
	if g.err != nil {
		t.Fatalf("agent: %v", g.err)
	}
	if g.ps.Metadata != "meta-1" || g.ps.State.ID != id || len(g.ps.Fds) != 1 || g.ps.Fds[0] != specs.SeccompFdName {
		t.Errorf("agent got state %+v", g.ps)
	}
	if !strings.Contains(res.stdout, "mkdir-ok") || !strings.Contains(res.stdout, "not-created") {
		t.Errorf("container output: %+v", res)
	}
}
