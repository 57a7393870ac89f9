package seccomp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Real-kernel tests re-exec the test binary as a helper process (the filter
// cannot be removed once loaded): the helper sets no_new_privs, compiles
// and loads the profile from its environment, makes the listed calls and
// prints one JSON result per call.

const (
	envHelper  = "BERTH_SECCOMP_HELPER"
	envProfile = "BERTH_SECCOMP_PROFILE"
	envCalls   = "BERTH_SECCOMP_CALLS"
	envHandoff = "BERTH_SECCOMP_HANDOFF"
)

type call struct {
	// "64"; "32" (int $0x80); "thread" and "thread32" run on a thread that
	// may be killed; "status" reads the Seccomp: line.
	Mode string
	Nr   uint64
	Args [6]uint64
	Path string // if set, Args[1] points to it (for mkdirat)
}

type result struct {
	Ret    uint64
	Errno  int
	Hung   bool   // the call never returned (its thread was killed)
	Status string // Seccomp: line of /proc/self/status
}

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

func helperMain() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "helper: "+format+"\n", args...)
		return 3
	}
	var cfg specs.LinuxSeccomp
	if err := json.Unmarshal([]byte(os.Getenv(envProfile)), &cfg); err != nil {
		return fail("profile: %v", err)
	}
	var calls []call
	if err := json.Unmarshal([]byte(os.Getenv(envCalls)), &calls); err != nil {
		return fail("calls: %v", err)
	}
	runtime.LockOSThread()
	compiled, err := Compile(&cfg)
	if err != nil {
		return fail("%v", err)
	}
	// Go through the wire format, as a filter compiled by the runtime
	// parent and loaded by init does.
	wire, err := compiled.MarshalBinary()
	if err != nil {
		return fail("%v", err)
	}
	f := new(Filter)
	if err := f.UnmarshalBinary(wire); err != nil {
		return fail("%v", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail("no_new_privs: %v", err)
	}
	fd, err := f.Load()
	if err != nil {
		return fail("%v", err)
	}
	if f.NeedsListener() && os.Getenv(envHandoff) == "pidfd" {
		// runc's flow: report the number on fd 3 with write(2), wait on
		// fd 4 until the parent took the fd and gave it to the agent.
		if _, err := unix.Write(3, []byte(fmt.Sprintf("%d\n", fd))); err != nil {
			return fail("reporting listener: %v", err)
		}
		var b [1]byte
		if _, err := unix.Read(4, b[:]); err != nil {
			return fail("waiting for the parent: %v", err)
		}
		unix.Close(fd)
	} else if f.NeedsListener() {
		st := specs.State{Version: specs.Version, ID: "helper", Status: specs.StateCreated, Pid: os.Getpid(), Bundle: "/bundle"}
		if err := SendListener(cfg.ListenerPath, NewProcessState(st, os.Getpid(), cfg.ListenerMetadata), fd, 0); err != nil {
			return fail("%v", err)
		}
		unix.Close(fd)
	} else if fd != -1 {
		return fail("listener fd %d without NOTIFY", fd)
	}
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for _, c := range calls {
		var r result
		var path []byte
		if c.Path != "" {
			path = append([]byte(c.Path), 0)
			c.Args[1] = uint64(uintptr(unsafe.Pointer(&path[0])))
		}
		switch c.Mode {
		case "64":
			ret, _, e := unix.Syscall6(uintptr(c.Nr), uintptr(c.Args[0]), uintptr(c.Args[1]), uintptr(c.Args[2]), uintptr(c.Args[3]), uintptr(c.Args[4]), uintptr(c.Args[5]))
			r.Ret, r.Errno = uint64(ret), int(e)
		case "32":
			ret := int32(int80(uintptr(c.Nr), uintptr(c.Args[0]), uintptr(c.Args[1]), uintptr(c.Args[2])))
			if ret < 0 && ret > -4096 {
				r.Errno = int(-ret)
			} else {
				r.Ret = uint64(ret)
			}
		case "thread", "thread32":
			done := make(chan result, 1)
			go func() {
				runtime.LockOSThread() // never unlocked: a killed thread must not be reused
				if c.Mode == "thread32" {
					ret := int32(int80(uintptr(c.Nr), uintptr(c.Args[0]), uintptr(c.Args[1]), uintptr(c.Args[2])))
					done <- result{Ret: uint64(ret)}
					return
				}
				ret, _, e := unix.Syscall6(uintptr(c.Nr), uintptr(c.Args[0]), uintptr(c.Args[1]), uintptr(c.Args[2]), uintptr(c.Args[3]), uintptr(c.Args[4]), uintptr(c.Args[5]))
				done <- result{Ret: uint64(ret), Errno: int(e)}
			}()
			select {
			case r = <-done:
			case <-time.After(500 * time.Millisecond):
				r.Hung = true
			}
		case "status":
			b, err := os.ReadFile("/proc/self/status")
			if err != nil {
				return fail("%v", err)
			}
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "Seccomp:") {
					r.Status = strings.TrimSpace(strings.TrimPrefix(l, "Seccomp:"))
				}
			}
		default:
			return fail("unknown mode %q", c.Mode)
		}
		runtime.KeepAlive(path)
		if err := enc.Encode(r); err != nil {
			return fail("%v", err)
		}
	}
	if err := out.Flush(); err != nil {
		return fail("%v", err)
	}
	return 0
}

type helperRun struct {
	results []result
	state   *os.ProcessState
	stderr  string
}

func runHelper(t *testing.T, cfg *specs.LinuxSeccomp, calls []call) helperRun {
	t.Helper()
	return runHelperWith(t, cfg, calls, nil)
}

// runHelperWith runs the helper; with handoff set, the helper reports its
// listener fd number instead of sending it, and handoff gets (pid, fd).
func runHelperWith(t *testing.T, cfg *specs.LinuxSeccomp, calls []call, handoff func(pid, fd int) error) helperRun {
	t.Helper()
	p, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"=1", envProfile+"="+string(p), envCalls+"="+string(c), "GOTRACEBACK=single")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var numR, goW *os.File
	if handoff != nil {
		nr, nw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		gr, gw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer nr.Close()
		defer gw.Close()
		cmd.ExtraFiles = []*os.File{nw, gr}
		cmd.Env = append(cmd.Env, envHandoff+"=pidfd")
		defer nw.Close()
		defer gr.Close()
		numR, goW = nr, gw
	}
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	if handoff != nil {
		var fd int
		if _, err := fmt.Fscanf(numR, "%d\n", &fd); err != nil {
			cmd.Process.Kill()
			<-done
			t.Fatalf("reading the listener fd number: %v; stderr: %s", err, stderr.String())
		}
		if err := handoff(cmd.Process.Pid, fd); err != nil {
			cmd.Process.Kill()
			<-done
			t.Fatalf("handoff: %v", err)
		}
		goW.Write([]byte{1})
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("helper hung; stderr: %s", stderr.String())
	}
	h := helperRun{state: cmd.ProcessState, stderr: stderr.String()}
	dec := json.NewDecoder(&stdout)
	for {
		var r result
		if err := dec.Decode(&r); err != nil {
			break
		}
		h.results = append(h.results, r)
	}
	return h
}

// mustRun runs the helper and requires a clean exit with all results.
func mustRun(t *testing.T, cfg *specs.LinuxSeccomp, calls []call) []result {
	t.Helper()
	h := runHelper(t, cfg, calls)
	if !h.state.Success() || len(h.results) != len(calls) {
		t.Fatalf("helper: %v, %d/%d results; stderr: %s", h.state, len(h.results), len(calls), h.stderr)
	}
	return h.results
}

func requireKernelTests(t *testing.T) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("kernel tests use x86_64 syscall numbers")
	}
}

func sys(t *testing.T, name string) uint64 { return uint64(nr(t, specs.ArchX86_64, name)) }

func TestKernelErrno(t *testing.T) {
	requireKernelTests(t)
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.ENXIO))},
		{Names: []string{"getuid", "no_such_call"}, Action: specs.ActErrno},
	}}
	r := mustRun(t, cfg, []call{{Mode: "64", Nr: sys(t, "getppid")}, {Mode: "64", Nr: sys(t, "getuid")}, {Mode: "64", Nr: sys(t, "getgid")}, {Mode: "status"}})
	if r[0].Errno != int(unix.ENXIO) || r[1].Errno != int(unix.EPERM) || r[2].Errno != 0 {
		t.Fatalf("results %+v", r)
	}
	if r[3].Status != "2" {
		t.Fatalf("Seccomp: %q, want 2 (filter mode)", r[3].Status)
	}
}

// Default ERRNO with everything but getppid allowed: the default errno and
// the -ENOSYS stub for numbers past the profile, on a real kernel.
func TestKernelDefaultErrnoAndStub(t *testing.T) {
	requireKernelTests(t)
	var names []string
	for _, n := range sysNames {
		if _, ok := SyscallNumber(specs.ArchX86_64, n); ok && n != "getppid" {
			names = append(names, n)
		}
	}
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uptr(uint(unix.ENXIO)),
		Syscalls: []specs.LinuxSyscall{{Names: names, Action: specs.ActAllow}}}
	r := mustRun(t, cfg, []call{{Mode: "64", Nr: sys(t, "getppid")}, {Mode: "64", Nr: 1000}, {Mode: "64", Nr: sys(t, "getgid")}})
	if r[0].Errno != int(unix.ENXIO) || r[1].Errno != int(unix.ENOSYS) || r[2].Errno != 0 {
		t.Fatalf("results %+v", r)
	}
}

func TestKernelKillProcess(t *testing.T) {
	requireKernelTests(t)
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActKillProcess}}}
	h := runHelper(t, cfg, []call{{Mode: "thread", Nr: sys(t, "getppid")}})
	ws, ok := h.state.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("helper %v, want killed by SIGSYS; stderr: %s", h.state, h.stderr)
	}
}

func TestKernelKillThread(t *testing.T) {
	requireKernelTests(t)
	for _, act := range []specs.LinuxSeccompAction{specs.ActKill, specs.ActKillThread} {
		cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: act}}}
		r := mustRun(t, cfg, []call{{Mode: "thread", Nr: sys(t, "getppid")}, {Mode: "64", Nr: sys(t, "getgid")}})
		if !r[0].Hung || r[1].Errno != 0 {
			t.Fatalf("%s: results %+v, want the calling thread killed and the process alive", act, r)
		}
	}
}

func TestKernelTrap(t *testing.T) {
	requireKernelTests(t)
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActTrap}}}
	h := runHelper(t, cfg, []call{{Mode: "64", Nr: sys(t, "getppid")}})
	// The Go runtime treats the synchronous SIGSYS as a crash.
	if h.state.Success() || !strings.Contains(h.stderr, "SIGSYS") {
		t.Fatalf("helper %v; stderr: %s", h.state, h.stderr)
	}
}

func TestKernelLogAndTrace(t *testing.T) {
	requireKernelTests(t)
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
		Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getppid"}, Action: specs.ActLog},
			{Names: []string{"getuid"}, Action: specs.ActTrace},
		}}
	r := mustRun(t, cfg, []call{{Mode: "64", Nr: sys(t, "getppid")}, {Mode: "64", Nr: sys(t, "getuid")}, {Mode: "status"}})
	if r[0].Errno != 0 || r[0].Ret != uint64(os.Getpid()) {
		t.Fatalf("LOG: %+v, want getppid to run and return %d", r[0], os.Getpid())
	}
	// TRACE without a tracer fails the syscall with ENOSYS.
	if r[1].Errno != int(unix.ENOSYS) || r[2].Status != "2" {
		t.Fatalf("TRACE: %+v %+v", r[1], r[2])
	}
}

// Argument conditions on a real kernel, compared with the reference model:
// these syscalls ignore their arguments, but seccomp sees the registers.
func TestKernelArguments(t *testing.T) {
	requireKernelTests(t)
	hi := uint64(1) << 32
	ops := []struct {
		name string
		arg  specs.LinuxSeccompArg
	}{
		{"getppid", specs.LinuxSeccompArg{Index: 0, Value: hi | 5, Op: specs.OpEqualTo}},
		{"getuid", specs.LinuxSeccompArg{Index: 1, Value: hi | 5, Op: specs.OpNotEqual}},
		{"geteuid", specs.LinuxSeccompArg{Index: 2, Value: hi | 5, Op: specs.OpGreaterThan}},
		{"getgid", specs.LinuxSeccompArg{Index: 3, Value: hi | 5, Op: specs.OpGreaterEqual}},
		{"getegid", specs.LinuxSeccompArg{Index: 4, Value: hi | 5, Op: specs.OpLessThan}},
		{"getpgrp", specs.LinuxSeccompArg{Index: 5, Value: hi | 5, Op: specs.OpLessEqual}},
		{"getsid", specs.LinuxSeccompArg{Index: 0, Value: 0xff00000000ff, ValueTwo: 0x120000000034, Op: specs.OpMaskedEqual}},
	}
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
	for _, o := range ops {
		cfg.Syscalls = append(cfg.Syscalls, specs.LinuxSyscall{Names: []string{o.name}, Action: specs.ActErrno,
			ErrnoRet: uptr(uint(unix.ENXIO)), Args: []specs.LinuxSeccompArg{o.arg}})
	}
	// AND of two conditions, with the 64-bit GT first.
	cfg.Syscalls = append(cfg.Syscalls, specs.LinuxSyscall{Names: []string{"getresuid"}, Action: specs.ActErrno,
		ErrnoRet: uptr(uint(unix.ENXIO)), Args: []specs.LinuxSeccompArg{{Index: 3, Value: hi, Op: specs.OpGreaterThan}, {Index: 4, Value: 7, Op: specs.OpEqualTo}}})
	values := []uint64{0, 4, 5, 6, hi, hi | 4, hi | 5, hi | 6, 2 * hi, 0xffffffff, ^uint64(0), 0x12ab00cd0034, 0x13ab00cd0034, 0x12ab00cd0035, 7, hi + 1}
	var calls []call
	var datas []seccompData
	for _, o := range append(ops, struct {
		name string
		arg  specs.LinuxSeccompArg
	}{"getresuid", specs.LinuxSeccompArg{Index: 3}}) {
		for i, v := range values {
			var args [6]uint64
			args[o.arg.Index] = v
			if o.name == "getresuid" {
				args[4] = values[(i*5)%len(values)]
			}
			calls = append(calls, call{Mode: "64", Nr: sys(t, o.name), Args: args})
			datas = append(datas, seccompData{nr: uint32(sys(t, o.name)), arch: unix.AUDIT_ARCH_X86_64, args: args})
		}
	}
	// getresuid with NULL pointers fails with EFAULT when allowed; that is
	// "not ENXIO", which is all the comparison needs.
	r := mustRun(t, cfg, calls)
	matched := 0
	for i, d := range datas {
		want := expect(cfg, specs.ArchX86_64, d) == unix.SECCOMP_RET_ERRNO|uint32(unix.ENXIO)
		got := r[i].Errno == int(unix.ENXIO)
		if got != want {
			t.Errorf("nr %d args %#x: kernel matched=%v, model %v", d.nr, d.args, got, want)
		}
		if got {
			matched++
		}
	}
	if matched == 0 || matched == len(datas) {
		t.Fatalf("degenerate test: %d of %d calls matched", matched, len(datas))
	}
}

// ia32 syscalls (int $0x80) arrive as AUDIT_ARCH_I386 and x32 ones as
// x86_64 with bit 30: each needs its architecture in the profile.
func TestKernelArchitectures(t *testing.T) {
	requireKernelTests(t)
	getppid32 := uint64(nr(t, specs.ArchX86, "getppid"))
	getppidX32 := uint64(nr(t, specs.ArchX32, "getppid"))
	// Is ia32 emulation available at all? Where the kernel runs without it
	// (ia32_emulation=off, or a guest kernel that leaves the int $0x80
	// vector out of its IDT) the instruction raises a general protection
	// fault, which kills the helper with SIGSEGV in int80.
	probeRun := runHelper(t, &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86}},
		[]call{{Mode: "32", Nr: getppid32}})
	noIA32 := !probeRun.state.Success() && strings.Contains(probeRun.stderr, "SIGSEGV") && strings.Contains(probeRun.stderr, "seccomp.int80")
	if !noIA32 && (!probeRun.state.Success() || len(probeRun.results) != 1) {
		t.Fatalf("ia32 probe: %v; stderr: %s", probeRun.state, probeRun.stderr)
	}
	ia32 := !noIA32 && probeRun.results[0].Errno == 0 && probeRun.results[0].Ret == uint64(os.Getpid())

	nativeOnly := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.ENXIO))}}}
	r := mustRun(t, nativeOnly, []call{{Mode: "thread", Nr: getppidX32}, {Mode: "64", Nr: sys(t, "getppid")}})
	if !r[0].Hung || r[1].Errno != int(unix.ENXIO) {
		t.Fatalf("native only: %+v, want the x32 call's thread killed (bad arch)", r)
	}
	withX32 := *nativeOnly
	withX32.Architectures = []specs.Arch{specs.ArchX32}
	r = mustRun(t, &withX32, []call{{Mode: "64", Nr: getppidX32}, {Mode: "64", Nr: getppidX32 + 1}})
	// The rule answers before the kernel looks at x32 support; an allowed
	// x32 call then fails with ENOSYS where x32 is disabled.
	if r[0].Errno != int(unix.ENXIO) || r[1].Errno == int(unix.ENXIO) {
		t.Fatalf("with x32: %+v", r)
	}

	if noIA32 {
		// A fact of the host, not a gap in the test: the kernel has no
		// ia32 entry at all, so no ia32 syscall can reach a filter.
		t.Skip("kernel has no ia32 entry (int $0x80 raises a general protection fault)")
	}
	if !ia32 {
		testSkipOrFail(t, "kernel has no ia32 emulation (int $0x80 failed: %+v)", probeRun.results[0])
		return
	}
	// Go's runtime makes no ia32 syscalls, so a bad-arch kill of the
	// calling thread is observable as a hang.
	r = mustRun(t, nativeOnly, []call{{Mode: "thread32", Nr: getppid32}})
	if !r[0].Hung {
		t.Fatalf("native only: ia32 call returned %+v, want its thread killed", r[0])
	}
	withX86 := *nativeOnly
	withX86.Architectures = []specs.Arch{specs.ArchX86_64, specs.ArchX86}
	r = mustRun(t, &withX86, []call{{Mode: "32", Nr: getppid32}, {Mode: "32", Nr: uint64(nr(t, specs.ArchX86, "getpid"))}})
	if r[0].Errno != int(unix.ENXIO) || r[1].Errno != 0 || r[1].Ret != r[1].Ret&0xffffffff || r[1].Ret == 0 {
		t.Fatalf("with x86: %+v", r)
	}
	// A denied socket(2) stays denied through socketcall(2) (the argument
	// pointer is NULL: an allowed call fails with EFAULT, a denied one with
	// the rule's errno before the kernel looks at it).
	noSocket := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.ENXIO))}}}
	socketcall := uint64(nr(t, specs.ArchX86, "socketcall"))
	r = mustRun(t, noSocket, []call{
		{Mode: "32", Nr: uint64(nr(t, specs.ArchX86, "socket")), Args: [6]uint64{unix.AF_UNIX, unix.SOCK_STREAM}},
		{Mode: "32", Nr: socketcall, Args: [6]uint64{1}},
		{Mode: "32", Nr: socketcall, Args: [6]uint64{2}},
	})
	if r[0].Errno != int(unix.ENXIO) || r[1].Errno != int(unix.ENXIO) || r[2].Errno != int(unix.EFAULT) {
		t.Fatalf("socketcall: %+v", r)
	}
}

// testSkipOrFail skips where the kernel lacks a feature; CI's kernel has it,
// so there a missing feature is a failure, not a silent skip.
func testSkipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
