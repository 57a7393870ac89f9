package integration

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/linux/console"
	"berth/internal/testutil"
)

func TestRuntimeProcessAndRootfsSettings(t *testing.T) {
	r := newRT(t)
	umask := uint32(0o027)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Domainname = "example.test"
		s.Process.User = specs.User{UID: 65534, GID: 65534, AdditionalGids: []uint32{5}, Umask: &umask}
		s.Process.Cwd = "/tmp"
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 512, Soft: 256}}
		s.Linux.Sysctl = map[string]string{"net.ipv4.ip_unprivileged_port_start": "99"}
		s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/etc/group")
		s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/tmp")
		s.Root.Readonly = true
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "size=1m"}})
	}, "sh", "-c", `id; pwd; umask; ulimit -Sn; ulimit -Hn; cat /proc/sys/kernel/domainname; cat /proc/sys/net/ipv4/ip_unprivileged_port_start;
wc -c < /etc/group; touch /tmp/x 2>&1 | grep -c Read-only; touch /rootfile 2>&1 | grep -c Read-only; touch /scratch/ok && echo scratch-ok`)
	out := r.must("run", "-b", b, r.id())
	for _, want := range []string{"uid=65534(nobody) gid=65534 groups=5", "/tmp\n", "0027\n", "256\n", "512\n",
		"example.test\n", "99\n", "0\n", "1\n1\n", "scratch-ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestRuntimeTimeNamespaceOffsets(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace})
		s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"boottime": {Secs: 1000000}}
	}, "cat", "/proc/uptime")
	out := r.must("run", "-b", b, r.id())
	up, err := strconv.ParseFloat(strings.Fields(out)[0], 64)
	host, _ := os.ReadFile("/proc/uptime")
	hup, _ := strconv.ParseFloat(strings.Fields(string(host))[0], 64)
	if err != nil || up < hup+999000 {
		t.Errorf("uptime in a time namespace with +1e6s boottime: %q (host %.0f)", out, hup)
	}
}

func TestRuntimeConsoleSocket(t *testing.T) {
	r := newRT(t)
	sockPath := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Process.Terminal = true
		s.Process.ConsoleSize = &specs.Box{Height: 33, Width: 111}
	}, "sh", "-c", "tty; stty size; echo out")
	id := r.id()
	r.must("create", "-b", b, "--console-socket", sockPath, id)
	// As containerd does: accept after create returned.
	conn, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	f, _ := conn.File()
	conn.Close()
	master, err := console.RecvMaster(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if master.Name() != "/dev/pts/ptmx" {
		t.Errorf("master name %q, want /dev/pts/ptmx", master.Name())
	}
	r.must("start", id)
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&buf, master); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	out := buf.String()
	if !strings.Contains(out, "/dev/pts/0\r\n") || !strings.Contains(out, "33 111") || !strings.Contains(out, "out\r\n") {
		t.Errorf("terminal output %q", out)
	}
	if res := r.run("create", "-b", b, r.id()); res.code != 1 || !strings.Contains(res.stderr, "cannot allocate tty if runc will detach without setting console socket") {
		t.Errorf("terminal without console socket: %+v", res)
	}
}

// TestRuntimeForegroundTerminalNewlines: a foreground run's pty stops
// turning "\n" into "\r\n" (runc clears ONLCR on the master it relays),
// while a console-socket master (TestRuntimeConsoleSocket) is the engine's
// and keeps the pty's defaults.
func TestRuntimeForegroundTerminalNewlines(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, func(s *specs.Spec) { s.Process.Terminal = true }, "sh", "-c", "tty; echo one; echo two")
	res := r.run("run", "-b", b, r.id())
	if res.code != 0 {
		t.Fatalf("run: %+v", res)
	}
	if !strings.Contains(res.stdout, "/dev/pts/0\none\ntwo\n") || strings.Contains(res.stdout, "\r") {
		t.Errorf("foreground terminal output %q, want newlines without carriage returns", res.stdout)
	}
}

func TestRuntimePreserveFdsAndListenFds(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sh", "-c", "cat <&3; cat <&4; echo LISTEN_FDS=$LISTEN_FDS LISTEN_PID=$LISTEN_PID; ls /proc/self/fd/5 2>/dev/null || echo no-fd-5")
	mk := func(s string) *os.File {
		f, _ := os.CreateTemp(t.TempDir(), "fd")
		f.WriteString(s)
		f.Seek(0, 0)
		return f
	}
	// fd 3 is a LISTEN_FDS socket-activation fd, fd 4 a --preserve-fds one,
	// fd 5 is open in berth but must not reach the container.
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --root "$1" run -b "$2" --preserve-fds 1 "$3"`, berthBin, r.root, b, r.id())
	cmd.ExtraFiles = []*os.File{mk("listen-fd\n"), mk("preserved-fd\n"), mk("leak\n")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"listen-fd\n", "preserved-fd\n", "LISTEN_FDS=1 LISTEN_PID=1", "no-fd-5"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestRuntimeNoPivot(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sh", "-c", "cat /proc/self/mountinfo | head -1")
	res := r.run("run", "--no-pivot", "-b", b, r.id())
	if res.code != 0 || !strings.Contains(res.stderr, "strongly discouraged") {
		t.Errorf("--no-pivot: %+v", res)
	}
}

func TestDocsManAndCompletion(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(berthBin, "man", "--dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("man: %v %s", err, out)
	}
	for _, page := range []string{"berth.8", "berth-run.8", "berth-exec.8", "berth-copy.8", "berth-network.8", "berth-container.8"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil || !bytes.Contains(b, []byte(".SH NAME")) {
			t.Errorf("%s: %v", page, err)
		}
	}
	for _, sh := range []string{"bash", "zsh"} {
		if out, err := exec.Command(berthBin, "completion", sh).Output(); err != nil || !bytes.Contains(out, []byte("--generate-bash-completion")) {
			t.Errorf("completion %s: %v", sh, err)
		}
	}
	out, _ = exec.Command(berthBin, "container", "--generate-bash-completion").Output()
	if !strings.Contains(string(out), "run\n") || !strings.Contains(string(out), "logs\n") {
		t.Errorf("completion candidates for `berth container`: %q", out)
	}
}

func TestRuntimeCreatesMissingCwd(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, func(s *specs.Spec) { s.Process.Cwd = "/srv/app/data" }, "pwd")
	if out := r.must("run", "-b", b, r.id()); out != "/srv/app/data\n" {
		t.Errorf("pwd = %q", out)
	}
}

// TestRuntimeUmociBundleInteractive: a bundle made by `umoci unpack`
// (terminal: true) runs interactively with `berth run -b BUNDLE ID` under a
// real pty, and returns the shell's exit status.
func TestRuntimeUmociBundleInteractive(t *testing.T) {
	r := newRT(t)
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		testutil.Require(t, false, "umoci is not installed")
	}
	if _, err := exec.LookPath("script"); err != nil {
		testutil.Require(t, false, "script (util-linux) is not installed")
	}
	dir := t.TempDir()
	unpackBusybox(t, filepath.Join(dir, "src"))
	layout := filepath.Join(dir, "layout")
	unpackMakeImage(t, layout, "latest", `{"Env":["PATH=/bin"],"Cmd":["sh"]}`, filepath.Join(dir, "src")+":gzip")
	bundle := filepath.Join(dir, "bundle")
	if out, err := exec.Command(umoci, "unpack", "--image", layout+":latest", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	cmd := exec.Command("script", "-qec", berthBin+" --root "+r.root+" run -b "+bundle+" "+r.id(), "/dev/null")
	stdin, _ := cmd.StdinPipe()
	go func() {
		time.Sleep(500 * time.Millisecond)
		stdin.Write([]byte("tty; echo umoci-$((40+2)); exit 9\n"))
	}()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 9 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "/dev/pts/0") || !strings.Contains(string(out), "umoci-42") {
		t.Errorf("interactive session:\n%s", out)
	}
}
