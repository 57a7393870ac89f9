package seccomp

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// agent accepts one connection on a fresh socket and answers notifications:
// getppid returns 4242, getuid fails with EXDEV, anything else (mkdirat)
// continues in the kernel. It reports what it saw on the returned channel.
type agentReport struct {
	ps     *specs.ContainerProcessState
	notifs []Notif
	err    error
}

func startAgent(t *testing.T, sock string, want int) <-chan agentReport {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan agentReport, 1)
	go func() {
		var rep agentReport
		defer func() { ch <- rep }()
		l.SetDeadline(time.Now().Add(20 * time.Second))
		conn, err := l.AcceptUnix()
		if err != nil {
			rep.err = err
			return
		}
		defer conn.Close()
		ps, fd, err := ReceiveListener(conn)
		if err != nil {
			rep.err = err
			return
		}
		defer unix.Close(fd)
		rep.ps = ps
		deadline := time.Now().Add(20 * time.Second)
		for len(rep.notifs) < want && time.Now().Before(deadline) {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if n, err := unix.Poll(pfd, 100); err != nil && err != unix.EINTR {
				rep.err = err
				return
			} else if n == 0 {
				continue
			}
			if pfd[0].Revents&unix.POLLHUP != 0 {
				return
			}
			n, err := NotifRecv(fd)
			if err != nil {
				rep.err = err
				return
			}
			rep.notifs = append(rep.notifs, *n)
			switch uint32(n.Data.Nr) {
			case nr(t, specs.ArchX86_64, "getppid"):
				err = NotifRespond(fd, n.ID, 4242, 0, 0)
			case nr(t, specs.ArchX86_64, "getuid"):
				err = NotifRespond(fd, n.ID, 0, int32(unix.EXDEV), 0)
			default:
				err = NotifRespond(fd, n.ID, 0, 0, unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
			}
			if err != nil {
				rep.err = err
				return
			}
		}
	}()
	return ch
}

func TestKernelNotify(t *testing.T) {
	requireKernelTests(t)
	t.Run("init sends", func(t *testing.T) { testKernelNotify(t, false) })
	// The flow berth's runtime can use, like runc: init write(2)s the
	// number, the parent takes the fd with pidfd_getfd and sends it.
	t.Run("parent takes with pidfd_getfd", func(t *testing.T) { testKernelNotify(t, true) })
}

func testKernelNotify(t *testing.T, viaParent bool) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	newDir := filepath.Join(dir, "made-by-continue")
	reports := startAgent(t, sock, 3)
	cfg := &specs.LinuxSeccomp{
		DefaultAction:    specs.ActAllow,
		ListenerPath:     sock,
		ListenerMetadata: "meta-data",
		Flags:            []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv},
		Syscalls:         []specs.LinuxSyscall{{Names: []string{"getppid", "getuid", "mkdirat"}, Action: specs.ActNotify}},
	}
	fdcwd := int64(unix.AT_FDCWD)
	atFdcwd := uint64(fdcwd)
	var handoff func(pid, fd int) error
	if viaParent {
		handoff = func(pid, fd int) error {
			lfd, err := TakeListener(pid, fd)
			if err != nil {
				return err
			}
			defer unix.Close(lfd)
			st := specs.State{Version: specs.Version, ID: "helper", Status: specs.StateCreated, Pid: pid, Bundle: "/bundle"}
			return SendListener(cfg.ListenerPath, NewProcessState(st, pid, cfg.ListenerMetadata), lfd, 0)
		}
	}
	h := runHelperWith(t, cfg, []call{
		{Mode: "64", Nr: sys(t, "getppid")},
		{Mode: "64", Nr: sys(t, "getuid")},
		{Mode: "64", Nr: sys(t, "mkdirat"), Args: [6]uint64{atFdcwd, 0, 0o755}, Path: newDir},
		{Mode: "64", Nr: sys(t, "getgid")},
	}, handoff)
	rep := <-reports
	if rep.err != nil {
		t.Fatalf("agent: %v (helper stderr: %s)", rep.err, h.stderr)
	}
	if !h.state.Success() || len(h.results) != 4 {
		t.Fatalf("helper %v; stderr: %s", h.state, h.stderr)
	}
	r := h.results
	if r[0].Ret != 4242 || r[0].Errno != 0 {
		t.Errorf("getppid = %+v, want the agent's 4242", r[0])
	}
	if r[1].Errno != int(unix.EXDEV) {
		t.Errorf("getuid = %+v, want the agent's EXDEV", r[1])
	}
	if r[2].Errno != 0 {
		t.Errorf("mkdirat = %+v, want it continued by the kernel", r[2])
	}
	if fi, err := os.Stat(newDir); err != nil || !fi.IsDir() {
		t.Errorf("mkdirat continued but %s is missing: %v", newDir, err)
	}
	if r[3].Errno != 0 || r[3].Ret != uint64(os.Getgid()) {
		t.Errorf("getgid = %+v", r[3])
	}
	ps := rep.ps
	if ps.Version != specs.Version || len(ps.Fds) != 1 || ps.Fds[0] != "seccompFd" || ps.Metadata != "meta-data" ||
		ps.State.ID != "helper" || ps.Pid != h.state.Pid() || ps.State.Pid != h.state.Pid() {
		t.Errorf("process state %+v", ps)
	}
	if len(rep.notifs) != 3 || rep.notifs[0].Pid != uint32(h.state.Pid()) || rep.notifs[0].Data.Arch != unix.AUDIT_ARCH_X86_64 {
		t.Errorf("notifications %+v", rep.notifs)
	}
}

func TestSendListenerErrors(t *testing.T) {
	ps := NewProcessState(specs.State{ID: "x"}, 1, "")
	dir := t.TempDir()
	if err := SendListener(filepath.Join(dir, "absent.sock"), ps, 0, time.Second); err == nil || !strings.Contains(err.Error(), "connecting to listenerPath") {
		t.Fatalf("absent agent: %v", err)
	}
	if err := SendListener("", ps, 0, 0); err == nil {
		t.Fatal("empty path accepted")
	}
	if err := SendListener(filepath.Join(dir, "x"), ps, -1, 0); err == nil {
		t.Fatal("negative fd accepted")
	}
	bad := *ps
	bad.Fds = nil
	if err := SendListener(filepath.Join(dir, "x"), &bad, 0, 0); err == nil {
		t.Fatal("state without fds accepted")
	}
}

// The wire format on its own: JSON data plus one SCM_RIGHTS fd, one message.
func TestSendReceiveListener(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "a.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	type got struct {
		ps  *specs.ContainerProcessState
		fd  int
		err error
	}
	ch := make(chan got, 1)
	go func() {
		c, err := l.AcceptUnix()
		if err != nil {
			ch <- got{err: err}
			return
		}
		defer c.Close()
		ps, fd, err := ReceiveListener(c)
		ch <- got{ps, fd, err}
	}()
	st := specs.State{Version: specs.Version, ID: "ctr", Status: specs.StateCreated, Pid: 77, Bundle: "/b", Annotations: map[string]string{"a": "b"}}
	if err := SendListener(sock, NewProcessState(st, 77, "md"), int(w.Fd()), 0); err != nil {
		t.Fatal(err)
	}
	g := <-ch
	if g.err != nil {
		t.Fatal(g.err)
	}
	defer unix.Close(g.fd)
	if g.ps.Pid != 77 || g.ps.Metadata != "md" || g.ps.State.Bundle != "/b" || g.ps.State.Annotations["a"] != "b" {
		t.Fatalf("state %+v", g.ps)
	}
	// The received fd is the pipe's write end.
	if _, err := unix.Write(g.fd, []byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := r.Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func TestTakeListener(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("sleep", "30")
	cmd.ExtraFiles = []*os.File{w} // fd 3 in the child
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	w.Close()
	fd, err := TakeListener(cmd.Process.Pid, 3)
	if err != nil {
		testSkipOrFail(t, "pidfd_getfd: %v", err)
	}
	defer unix.Close(fd)
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("taken fd flags %#x, %v: want close-on-exec", flags, err)
	}
	if _, err := unix.Write(fd, []byte("y")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := r.Read(buf); err != nil || buf[0] != 'y' {
		t.Fatalf("read %q, %v", buf, err)
	}
	if _, err := TakeListener(cmd.Process.Pid, 99); err == nil || !strings.Contains(err.Error(), "pidfd_getfd 99") {
		t.Fatalf("bad fd: %v", err)
	}
}
