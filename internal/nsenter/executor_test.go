package nsenter

// Tests of the executor in the spirit of runc's nsenter_test.go: the test
// binary (which links the constructor) is started again with an init pipe,
// fed a crafted plan, and what it reports is checked exactly.

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/plan"
	"berth/internal/testutil"
)

type message struct {
	Type  string          `json:"type"`
	Error string          `json:"error"`
	Level string          `json:"level"`
	Msg   string          `json:"msg"`
	Data  json.RawMessage `json:"data"`
}

type outcome struct {
	msgs   []message
	stdout string
	stderr string
	code   int
}

// execute starts the executor on raw (a whole plan, length prefix
// included), answers ctl with control bytes as it asks (one per message
// that needs one: hooks, seccomp), and returns what it said and did.
func execute(t *testing.T, raw []byte, attr *syscall.SysProcAttr, ctl ...byte) outcome {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	parent, child := os.NewFile(uintptr(fds[0]), "parent"), os.NewFile(uintptr(fds[1]), "child")
	defer parent.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{EnvPipe + "=3", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.ExtraFiles = []*os.File{child}
	cmd.SysProcAttr = attr
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child.Close()
	done := make(chan struct{})
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	conn, _ := net.FileConn(parent)
	uc := conn.(*net.UnixConn)
	defer uc.Close()
	go func() {
		uc.Write(raw)
		if len(ctl) == 0 {
			uc.CloseWrite() // nothing more: a short plan reads EOF
		}
		close(done)
	}()
	var o outcome
	r := bufio.NewReader(uc)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			var m message
			if jerr := json.Unmarshal(line, &m); jerr != nil {
				t.Fatalf("malformed message %q: %v", line, jerr)
			}
			o.msgs = append(o.msgs, m)
			if (m.Type == "hooks" || m.Type == "seccomp") && len(ctl) > 0 {
				uc.Write(ctl[:1])
				if ctl = ctl[1:]; len(ctl) == 0 {
					uc.CloseWrite()
				}
			}
		}
		if err != nil {
			break
		}
	}
	<-done
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		o.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	o.stdout, o.stderr = stdout.String(), stderr.String()
	return o
}

// raw builds a plan by hand: magic, version and steps (op, payload).
type rawPlan struct{ b []byte }

func newRaw() *rawPlan {
	p := &rawPlan{}
	p.u32(plan.Magic)
	p.u32(plan.Version)
	return p
}
func (p *rawPlan) u32(v uint32) *rawPlan { p.b = binary.NativeEndian.AppendUint32(p.b, v); return p }
func (p *rawPlan) step(op plan.Op, payload []byte) *rawPlan {
	p.u32(uint32(op))
	p.u32(uint32(len(payload)))
	p.b = append(p.b, payload...)
	return p
}
func (p *rawPlan) bytes() []byte {
	return append(binary.NativeEndian.AppendUint32(nil, uint32(len(p.b))), p.b...)
}

func u32s(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.NativeEndian.AppendUint32(b, x)
	}
	return b
}

func str(s string) []byte { return append(append(u32s(uint32(len(s))), s...), 0) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func encode(steps ...plan.Step) []byte { return (&plan.Plan{Steps: steps}).Encode(1) }

// onlyError checks that the executor reported exactly one error, msg, on
// the pipe, and exited 1.
func onlyError(t *testing.T, o outcome, msg string) {
	t.Helper()
	if o.code != 1 || len(o.msgs) != 1 || o.msgs[0].Type != "error" || o.msgs[0].Error != msg {
		t.Fatalf("got exit %d, messages %+v, stderr %q; want exit 1 and the one error %q", o.code, o.msgs, o.stderr, msg)
	}
}

func TestExecutorRejectsMalformedPlans(t *testing.T) {
	env := func(vars ...string) []byte {
		return cat(u32s(uint32(len(vars))), cat(func() [][]byte {
			var out [][]byte
			for _, v := range vars {
				out = append(out, str(v))
			}
			return out
		}()...))
	}
	for _, tt := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"too large", u32s(plan.MaxSize + 1), "plan: too large (67108865 bytes)"},
		{"bad magic", append(u32s(8), u32s(0xdeadbeef, plan.Version)...), "plan: bad magic 0xdeadbeef"},
		{"wrong version", append(u32s(8), u32s(plan.Magic, 99)...), "plan: version 99, this executor runs version 1"},
		{"no header", append(u32s(2), 0, 0), "plan: step header: truncated"},
		{"empty", newRaw().bytes(), "plan: ended without exec"},
		{"unknown step", newRaw().step(999, nil).bytes(), "plan: unknown step 999"},
		{"step past the end", newRaw().u32(uint32(plan.OpSetsid)).u32(100).bytes(), "plan: step setsid: truncated"},
		{"payload too short", newRaw().step(plan.OpSetsid, []byte{1, 0}).bytes(), "plan: step setsid: truncated"},
		{"payload too long", newRaw().step(plan.OpSetsid, u32s(1, 7)).bytes(), "plan: step setsid: 4 bytes left over"},
		{"bad flag", newRaw().step(plan.OpSetsid, u32s(2)).bytes(), "plan: step setsid: bad flag 2"},
		{"string without NUL", newRaw().step(plan.OpOpenRoot, cat(u32s(3), []byte("abcd"))).bytes(), "plan: step open-root: bad string"},
		{"string with a NUL inside", newRaw().step(plan.OpOpenRoot, cat(u32s(3), []byte("a\x00c\x00"))).bytes(), "plan: step open-root: bad string"},
		{"over-long string", newRaw().step(plan.OpOpenRoot, cat(u32s(1<<30), []byte("x\x00"))).bytes(), "plan: step open-root: bad string"},
		{"over-long list", newRaw().step(plan.OpEnv, cat(u32s(1<<28), str("A=1"), u32s(0, 0))).bytes(), "plan: step env: bad list"},
		{"rootfs step before open-root", encode(plan.MkdirInRoot{Path: "/x", Err: "create cwd /x"}), "plan: a rootfs step before open-root"},
		{"lookup before env", encode(plan.Lookup{Args: []string{"true"}, Quote: `"true"`}), "plan: lookup before env"},
		{"exec before lookup", encode(plan.Execve{}), "plan: exec before lookup"},
		{"wait-start without fd-dir", encode(plan.WaitStart{FifoFd: 9}), "plan: wait-start without fd-dir"},
		{"unknown mount kind", encode(plan.OpenRoot{Path: "/"}, plan.Mount{Kind: 9, Err: "m", Source: "s", Dest: "/d"}), "plan: step mount: unknown mount kind 9"},
		{"bad seccomp program", encode(plan.Seccomp{OtherErr: "seccomp: loading filter", Program: nil}), "plan: step seccomp: bad seccomp program"},
		{"too many rlimits", newRaw().step(plan.OpRlimits, u32s(65)).bytes(), "plan: step rlimits: bad rlimit list"},
		{"empty args", newRaw().step(plan.OpEnv, cat(env(), u32s(0, 0))).step(plan.OpLookup, cat(u32s(0), str(""), str(`""`))).bytes(), "args must not be empty"},
	} {
		t.Run(tt.name, func(t *testing.T) { onlyError(t, execute(t, tt.raw, nil), tt.want) })
	}
	// A plan cut short: the runtime is gone, nobody to tell.
	o := execute(t, u32s(100)[:2], nil)
	if o.code != 1 || len(o.msgs) != 0 {
		t.Fatalf("short read: exit %d, %+v", o.code, o.msgs)
	}
}

// TestExecutorStepErrors: each step's failure is reported with the
// prefix the plan gave and Go's errno text.
func TestExecutorStepErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "noexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	envp := plan.Env{Env: []string{"PATH=/bin:" + dir}, UID: 0}
	for _, tt := range []struct {
		name  string
		steps []plan.Step
		want  string
	}{
		{"open-root", []plan.Step{plan.OpenRoot{Path: "/no/such"}}, "open /no/such: no such file or directory"},
		{"chdir", []plan.Step{plan.Chdir{Dir: "/no/such", Err: `chdir to cwd ("/no/such") set in config.json failed`}},
			`chdir to cwd ("/no/such") set in config.json failed: no such file or directory`},
		{"not in PATH", []plan.Step{envp, plan.Lookup{Args: []string{"nosuch"}, Quote: `"nosuch"`}}, `exec: "nosuch": executable file not found in $PATH`},
		{"a directory", []plan.Step{envp, plan.Lookup{Args: []string{"/bin"}, Quote: `"/bin"`}}, `exec: "/bin": is a directory`},
		{"missing", []plan.Step{envp, plan.Lookup{Args: []string{"/no/such"}, Quote: `"/no/such"`}}, `exec: "/no/such": no such file or directory`},
		{"relative to cwd", []plan.Step{envp, plan.Lookup{Args: []string{"./x"}, Cwd: "/no", Quote: `"./x"`}}, `exec: "./x": no such file or directory`},
		{"hook exit status", []plan.Step{plan.RunHook{Err: "error running prestart hook #0", Path: "/bin/sh",
			Args: []string{"sh", "-c", "cat; echo oops >&2; exit 3"}, State: specs.State{ID: "ct"}}},
			`error running prestart hook #0: exit status 3, stdout: {"ociVersion":"","id":"ct","status":"","pid":1,"bundle":""}, stderr: oops` + "\n"},
		{"hook killed", []plan.Step{plan.RunHook{Err: "error running poststop hook #1", Path: "/bin/sh", Args: []string{"sh", "-c", "kill -9 $$"}}},
			"error running poststop hook #1: signal: killed, stdout: , stderr: "},
		{"hook not there", []plan.Step{plan.RunHook{Err: "error running createRuntime hook #0", Path: "/no/hook"}},
			"error running createRuntime hook #0: fork/exec /no/hook: no such file or directory, stdout: , stderr: "},
		{"hook timeout", []plan.Step{plan.RunHook{Err: "error running prestart hook #0", Path: "/bin/sh", Args: []string{"sh", "-c", "sleep 30"}, Timeout: 1}},
			"error running prestart hook #0: timeout after 1 seconds"},
		{"rlimit", []plan.Step{plan.Rlimits{Limits: []plan.Rlimit{{Resource: unix.RLIMIT_NOFILE, Soft: 10, Hard: 5, Err: "error setting rlimit type 7"}}}},
			"error setting rlimit type 7: invalid argument"},
	} {
		t.Run(tt.name, func(t *testing.T) { onlyError(t, execute(t, encode(tt.steps...), nil), tt.want) })
	}
	// The parent's control byte after the plan, and a wrong one.
	wait := encode(plan.WaitPlaced{Unexpected: "unexpected message while waiting for cgroup placement"}, plan.Ready{}, plan.Exit{})
	if o := execute(t, append(wait, plan.CtlPlaced), nil); o.code != 0 || len(o.msgs) != 1 || o.msgs[0].Type != "ready" {
		t.Fatalf("placed: exit %d, %+v", o.code, o.msgs)
	}
	onlyError(t, execute(t, append(wait, 'X'), nil), "unexpected message while waiting for cgroup placement")
}

// TestExecutorRunsAProcess: env, lookup through PATH, HOME filled in, Ready
// then execve; a failure after Ready goes to stderr with status 255.
func TestExecutorRunsAProcess(t *testing.T) {
	o := execute(t, encode(
		plan.Env{Env: []string{"PATH=/usr/bin:/bin", "A=1"}, FillHome: true, UID: 65534},
		plan.Lookup{Args: []string{"sh", "-c", `echo "$A $HOME $0"`}, Quote: `"sh"`},
		plan.CloexecFrom{From: 3},
		plan.Ready{},
		plan.Execve{},
	), nil)
	if o.code != 0 || len(o.msgs) != 1 || o.msgs[0].Type != "ready" || !strings.HasPrefix(o.stdout, "1 /") || !strings.HasSuffix(o.stdout, " sh\n") {
		t.Fatalf("exit %d, messages %+v, stdout %q, stderr %q", o.code, o.msgs, o.stdout, o.stderr)
	}
	o = execute(t, encode(plan.Ready{}, plan.Chdir{Dir: "/no/such", Err: "chdir"}), nil)
	if o.code != 255 || len(o.msgs) != 1 || o.stderr != "chdir: no such file or directory\n" {
		t.Fatalf("after ready: exit %d, messages %+v, stderr %q", o.code, o.msgs, o.stderr)
	}
	// A hooks plan: hooks in order, Ready, exit 0; the state on stdin.
	out := filepath.Join(t.TempDir(), "state")
	o = execute(t, encode(
		plan.RunHook{Err: "h0", Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + out}, State: specs.State{ID: "ct", Pid: 42}, KeepPid: true},
		plan.RunHook{Err: "h1", Path: "/bin/true"},
		plan.Ready{}, plan.Exit{},
	), nil)
	b, _ := os.ReadFile(out)
	if o.code != 0 || len(o.msgs) != 1 || o.msgs[0].Type != "ready" || !strings.Contains(string(b), `"id":"ct","status":"","pid":42`) {
		t.Fatalf("hooks: exit %d, %+v, state %q, stderr %q", o.code, o.msgs, b, o.stderr)
	}
	// A warning is a log message and does not stop the plan.
	o = execute(t, encode(plan.ProcWrite{Path: "no/such", Data: "x", WarnOnly: true, Err: "apparmor profile p"}, plan.Ready{}, plan.Exit{}), nil)
	if o.code != 0 || len(o.msgs) != 2 || o.msgs[0].Type != "log" || o.msgs[0].Level != "warning" ||
		!strings.HasPrefix(o.msgs[0].Msg, "apparmor profile p: ") || o.msgs[1].Type != "ready" {
		t.Fatalf("warning: exit %d, %+v", o.code, o.msgs)
	}
}

// TestExecutorHooksSync: the hooks message, then nothing until the parent
// answers.
func TestExecutorHooksSync(t *testing.T) {
	o := execute(t, encode(plan.HooksSync{}, plan.Ready{}, plan.Exit{}), nil, plan.CtlResume)
	if o.code != 0 || len(o.msgs) != 2 || o.msgs[0].Type != "hooks" || o.msgs[1].Type != "ready" {
		t.Fatalf("exit %d, %+v", o.code, o.msgs)
	}
	o = execute(t, encode(plan.HooksSync{}, plan.Ready{}, plan.Exit{}), nil, 'X')
	if o.code != 1 || len(o.msgs) != 2 || o.msgs[1].Error != "unexpected message while waiting for hooks" {
		t.Fatalf("wrong answer: exit %d, %+v", o.code, o.msgs)
	}
}

// TestExecutorNamespacedSteps runs steps that change the process's view
// (names, mounts, the root) in new namespaces of the child's own, as root.
func TestExecutorNamespacedSteps(t *testing.T) {
	testutil.RequireRoot(t)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	testutil.BusyboxRootfs(t, rootfs)
	attr := &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC}
	o := execute(t, encode(
		plan.FdDir{},
		plan.HostMount{Target: "/", Flags: unix.MS_SLAVE | unix.MS_REC, Err: "make / rslave /"},
		plan.HostMount{Source: rootfs, Target: rootfs, FSType: "bind", Flags: unix.MS_BIND | unix.MS_REC, Err: "bind mount rootfs"},
		plan.OpenRoot{Path: rootfs},
		plan.Mount{Kind: plan.MountKernel, Err: "error mounting proc", Source: "proc", Dest: "/proc", FSType: "proc"},
		plan.Mount{Kind: plan.MountFS, Err: "error mounting tmpfs", Source: "tmpfs", Dest: "/deep/new/dir", FSType: "tmpfs", Data: "size=1k"},
		plan.Sethostname{Name: "executor-test", Err: "sethostname"},
		plan.MkdirInRoot{Path: "/work/here", Err: "create cwd"},
		plan.PivotRoot{Rootfs: rootfs},
		plan.Setsid{},
		plan.Env{Env: []string{"PATH=/bin"}, FillHome: true},
		plan.Lookup{Args: []string{"sh", "-c", "hostname; grep -c ' /deep/new/dir ' /proc/self/mountinfo; ls -d /work/here; echo $HOME"}, Quote: `"sh"`},
		plan.Ready{},
		plan.Execve{},
	), attr)
	if o.code != 0 || o.stdout != "executor-test\n1\n/work/here\n/root\n" {
		t.Fatalf("exit %d, %+v, stdout %q, stderr %q", o.code, o.msgs, o.stdout, o.stderr)
	}
	// procfs through a symlink is refused, by the step's own words.
	if err := os.Symlink("/tmp", filepath.Join(rootfs, "p")); err != nil {
		t.Fatal(err)
	}
	o = execute(t, encode(
		plan.HostMount{Target: "/", Flags: unix.MS_SLAVE | unix.MS_REC, Err: "make / rslave /"},
		plan.OpenRoot{Path: rootfs},
		plan.Mount{Kind: plan.MountKernel, Err: `error mounting "proc" to rootfs at "/p"`, Source: "proc", Dest: "/p", FSType: "proc"},
	), attr)
	onlyError(t, o, `error mounting "proc" to rootfs at "/p": /p must be mounted on ordinary directory`)
}
