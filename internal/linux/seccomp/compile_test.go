package seccomp

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func uptr(v uint) *uint { return &v }

const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retKillT  = unix.SECCOMP_RET_KILL_THREAD
	retKillP  = unix.SECCOMP_RET_KILL_PROCESS
	retTrap   = unix.SECCOMP_RET_TRAP
	retLog    = unix.SECCOMP_RET_LOG
	retNotify = unix.SECCOMP_RET_USER_NOTIF
)

func retErrno(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

func nr(t testing.TB, arch specs.Arch, name string) uint32 {
	t.Helper()
	n, ok := SyscallNumber(arch, name)
	if !ok {
		t.Fatalf("no syscall %s on %s", name, arch)
	}
	return n
}

func mustCompile(t testing.TB, cfg *specs.LinuxSeccomp, native specs.Arch) *Filter {
	t.Helper()
	f, err := Compile(cfg, WithNativeArch(native))
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if err := verify(f.prog); err != nil {
		t.Fatalf("invalid program: %v", err)
	}
	return f
}

func eval(t testing.TB, f *Filter, native specs.Arch, d seccompData) uint32 {
	t.Helper()
	be := lookupArch(native).bigEndian
	got, err := run(f.prog, d.bytes(be), be)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return got
}

func TestCompileErrors(t *testing.T) {
	allow := func(mod func(*specs.LinuxSeccomp)) *specs.LinuxSeccomp {
		c := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/agent.sock",
			Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActErrno}}}
		mod(c)
		return c
	}
	tests := []struct {
		name string
		cfg  *specs.LinuxSeccomp
		want string
	}{
		{"nil", nil, "no profile"},
		{"bad default", allow(func(c *specs.LinuxSeccomp) { c.DefaultAction = "SCMP_ACT_NOPE" }), `defaultAction: unknown action "SCMP_ACT_NOPE"`},
		{"default errno on kill", allow(func(c *specs.LinuxSeccomp) { c.DefaultAction = specs.ActKill; c.DefaultErrnoRet = uptr(1) }), "errnoRet is only valid"},
		{"default notify", allow(func(c *specs.LinuxSeccomp) { c.DefaultAction = specs.ActNotify }), "cannot be the default action"},
		{"errno on allow", allow(func(c *specs.LinuxSeccomp) { c.Syscalls[0].Action = specs.ActAllow; c.Syscalls[0].ErrnoRet = uptr(1) }), "syscalls[0]: errnoRet is only valid"},
		{"errno too big", allow(func(c *specs.LinuxSeccomp) { c.Syscalls[0].ErrnoRet = uptr(70000) }), "does not fit in 16 bits"},
		{"notify write", allow(func(c *specs.LinuxSeccomp) {
			c.Syscalls[0] = specs.LinuxSyscall{Names: []string{"read", "write"}, Action: specs.ActNotify}
		}), "cannot be used for the write syscall"},
		{"notify without listener", allow(func(c *specs.LinuxSeccomp) { c.Syscalls[0].Action = specs.ActNotify; c.ListenerPath = "" }), "listenerPath is empty"},
		{"metadata without path", allow(func(c *specs.LinuxSeccomp) { c.ListenerPath = ""; c.ListenerMetadata = "x" }), "listenerMetadata is set without listenerPath"},
		{"unknown arch", allow(func(c *specs.LinuxSeccomp) { c.Architectures = []specs.Arch{"SCMP_ARCH_VAX"} }), `unknown architecture "SCMP_ARCH_VAX"`},
		{"arch without table", allow(func(c *specs.LinuxSeccomp) { c.Architectures = []specs.Arch{specs.ArchMIPS64N32} }), "SCMP_ARCH_MIPS64N32 is not supported"},
		{"unknown flag", allow(func(c *specs.LinuxSeccomp) { c.Flags = []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_FOO"} }), `unknown seccomp flag "SECCOMP_FILTER_FLAG_FOO"`},
		{"no names", allow(func(c *specs.LinuxSeccomp) { c.Syscalls[0].Names = nil }), "syscalls[0]: names must contain at least one"},
		{"empty name", allow(func(c *specs.LinuxSeccomp) { c.Syscalls[0].Names = []string{""} }), "empty syscall name"},
		{"arg index", allow(func(c *specs.LinuxSeccomp) {
			c.Syscalls[0].Args = []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}
		}), "syscalls[0].args[0]: index 6 out of range"},
		{"bad op", allow(func(c *specs.LinuxSeccomp) {
			c.Syscalls[0].Args = []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_XOR"}}
		}), `unknown operator "SCMP_CMP_XOR"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.cfg, WithNativeArch(specs.ArchX86_64))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "seccomp: ") {
				t.Fatalf("error %q lacks the seccomp: prefix", err)
			}
		})
	}
}

func TestNotifyForbidden(t *testing.T) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/x",
		Syscalls: []specs.LinuxSyscall{{Names: []string{"sendmsg", "write"}, Action: specs.ActNotify}}}
	if _, err := Compile(cfg, WithNativeArch(specs.ArchX86_64), WithNotifyForbidden("sendmsg")); err == nil || !strings.Contains(err.Error(), "cannot be used for the sendmsg syscall") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Compile(cfg, WithNativeArch(specs.ArchX86_64), WithNotifyForbidden()); err != nil {
		t.Fatalf("nothing forbidden: %v", err)
	}
}

func TestWarnings(t *testing.T) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv},
		Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid", "no_such_syscall", "no_such_syscall"}, Action: specs.ActErrno}}}
	f := mustCompile(t, cfg, specs.ArchX86_64)
	w := f.Warnings()
	if len(w) != 2 || !strings.Contains(strings.Join(w, "\n"), `unknown syscall "no_such_syscall" skipped`) || !strings.Contains(strings.Join(w, "\n"), "WAIT_KILLABLE_RECV") {
		t.Fatalf("warnings = %q", w)
	}
	if f.Flags()&unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV != 0 {
		t.Fatal("WAIT_KILLABLE_RECV kept without a listener")
	}
	// Real syscalls the filtered arches lack are skipped silently, as
	// with libseccomp: riscv_hwprobe on x86, open on arm64.
	cfg.Syscalls[0].Names = []string{"socketcall", "riscv_hwprobe"}
	cfg.Flags = nil
	if w := mustCompile(t, cfg, specs.ArchX86_64).Warnings(); len(w) != 0 {
		t.Fatalf("warnings = %q", w)
	}
	cfg.Syscalls[0].Names = []string{"open"}
	if w := mustCompile(t, cfg, specs.ArchAARCH64).Warnings(); len(w) != 0 {
		t.Fatalf("warnings = %q", w)
	}
}

func TestFlags(t *testing.T) {
	base := func() *specs.LinuxSeccomp {
		return &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActErrno}}}
	}
	tests := []struct {
		name  string
		mod   func(*specs.LinuxSeccomp)
		flags uint
		lsn   bool
	}{
		{"default tsync", func(*specs.LinuxSeccomp) {}, unix.SECCOMP_FILTER_FLAG_TSYNC, false},
		{"log spec", func(c *specs.LinuxSeccomp) {
			c.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, FlagTsync}
		}, unix.SECCOMP_FILTER_FLAG_TSYNC | unix.SECCOMP_FILTER_FLAG_LOG | unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW, false},
		{"notify", func(c *specs.LinuxSeccomp) {
			c.Syscalls[0].Action = specs.ActNotify
			c.ListenerPath = "/x"
			c.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv}
		}, unix.SECCOMP_FILTER_FLAG_TSYNC | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH | unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, true},
		{"notify rule equal to default is dropped", func(c *specs.LinuxSeccomp) {
			c.Syscalls = append(c.Syscalls, specs.LinuxSyscall{Names: []string{"getpid"}, Action: specs.ActAllow})
		}, unix.SECCOMP_FILTER_FLAG_TSYNC, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mod(c)
			f := mustCompile(t, c, specs.ArchX86_64)
			if f.Flags() != tt.flags || f.NeedsListener() != tt.lsn {
				t.Fatalf("flags %#x listener %v, want %#x %v", f.Flags(), f.NeedsListener(), tt.flags, tt.lsn)
			}
		})
	}
}

type probe struct {
	name string
	d    seccompData
	want uint32
}

func TestCompileSemantics(t *testing.T) {
	x64 := uint32(unix.AUDIT_ARCH_X86_64)
	i386 := uint32(unix.AUDIT_ARCH_I386)
	getppid := nr(t, specs.ArchX86_64, "getppid")
	getppid32 := nr(t, specs.ArchX86, "getppid")
	getppidX32 := nr(t, specs.ArchX32, "getppid")
	mkdirat := nr(t, specs.ArchX86_64, "mkdirat")
	hi := uint64(1) << 32

	tests := []struct {
		name   string
		native specs.Arch
		cfg    *specs.LinuxSeccomp
		probes []probe
	}{
		{
			name: "errno and default", native: specs.ArchX86_64,
			cfg: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.ENXIO))},
				{Names: []string{"mkdirat"}, Action: specs.ActErrno},
			}},
			probes: []probe{
				{"getppid", seccompData{nr: getppid, arch: x64}, retErrno(unix.ENXIO)},
				{"mkdirat default EPERM", seccompData{nr: mkdirat, arch: x64}, retErrno(unix.EPERM)},
				{"other allowed", seccompData{nr: 0, arch: x64}, retAllow},
				{"no stub for allow default", seccompData{nr: 1000, arch: x64}, retAllow},
				{"x86 not listed: bad arch", seccompData{nr: getppid32, arch: i386}, retKillT},
				{"x32 not listed: bad arch", seccompData{nr: getppidX32, arch: x64}, retKillT},
				{"negative nr counts as x32", seccompData{nr: 0xffffffff, arch: x64}, retKillT},
			},
		},
		{
			name: "enosys stub and defaultErrnoRet", native: specs.ArchX86_64,
			cfg: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uptr(uint(unix.ENXIO)),
				Architectures: []specs.Arch{specs.ArchX86, specs.ArchX32},
				Syscalls: []specs.LinuxSyscall{
					{Names: []string{"read", "getppid"}, Action: specs.ActAllow},
					{Names: []string{"mkdirat"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.ENXIO))}, // == default: dropped, but counts for the stub
				}},
			probes: []probe{
				{"allowed", seccompData{nr: getppid, arch: x64}, retAllow},
				{"below max", seccompData{nr: 1, arch: x64}, retErrno(unix.ENXIO)},
				{"at max", seccompData{nr: mkdirat, arch: x64}, retErrno(unix.ENXIO)},
				{"above max", seccompData{nr: mkdirat + 1, arch: x64}, retErrno(unix.ENOSYS)},
				{"x86 allowed", seccompData{nr: getppid32, arch: i386}, retAllow},
				{"x86 above its max", seccompData{nr: 500, arch: i386}, retErrno(unix.ENOSYS)},
				{"x32 allowed", seccompData{nr: getppidX32, arch: x64}, retAllow},
				{"x32 read", seccompData{nr: x32SyscallBit, arch: x64}, retAllow},
				{"x32 above max", seccompData{nr: x32SyscallBit | 1000, arch: x64}, retErrno(unix.ENOSYS)},
				{"unknown arch", seccompData{nr: 0, arch: unix.AUDIT_ARCH_AARCH64}, retKillT},
			},
		},
		{
			name: "no stub when default is ENOSYS", native: specs.ArchX86_64,
			cfg: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uptr(uint(unix.ENOSYS)),
				Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}},
			probes: []probe{{"above max", seccompData{nr: 5, arch: x64}, retErrno(unix.ENOSYS)}},
		},
		{
			name: "actions", native: specs.ArchX86_64,
			cfg: &specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess, ListenerPath: "/x", Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read"}, Action: specs.ActKill},
				{Names: []string{"write"}, Action: specs.ActKillThread},
				{Names: []string{"open"}, Action: specs.ActTrap},
				{Names: []string{"close"}, Action: specs.ActTrace},
				{Names: []string{"stat"}, Action: specs.ActTrace, ErrnoRet: uptr(7)},
				{Names: []string{"fstat"}, Action: specs.ActLog},
				{Names: []string{"lstat"}, Action: specs.ActNotify},
				{Names: []string{"poll"}, Action: specs.ActAllow},
			}},
			probes: []probe{
				{"kill is kill thread", seccompData{nr: 0, arch: x64}, retKillT},
				{"kill thread", seccompData{nr: 1, arch: x64}, retKillT},
				{"trap", seccompData{nr: 2, arch: x64}, retTrap},
				{"trace default data", seccompData{nr: 3, arch: x64}, unix.SECCOMP_RET_TRACE | 1},
				{"trace data", seccompData{nr: 4, arch: x64}, unix.SECCOMP_RET_TRACE | 7},
				{"log", seccompData{nr: 5, arch: x64}, retLog},
				{"notify", seccompData{nr: 6, arch: x64}, retNotify},
				{"allow", seccompData{nr: 7, arch: x64}, retAllow},
				{"default kill process below max", seccompData{nr: 6, arch: x64}, retNotify},
				{"stub", seccompData{nr: 8, arch: x64}, retErrno(unix.ENOSYS)},
			},
		},
		{
			name: "64-bit argument operators", native: specs.ArchX86_64,
			cfg: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read"}, Action: specs.ActErrno, ErrnoRet: uptr(1), Args: []specs.LinuxSeccompArg{{Index: 1, Value: hi | 5, Op: specs.OpEqualTo}}},
				{Names: []string{"write"}, Action: specs.ActErrno, ErrnoRet: uptr(2), Args: []specs.LinuxSeccompArg{{Index: 2, Value: hi | 5, Op: specs.OpNotEqual}}},
				{Names: []string{"open"}, Action: specs.ActErrno, ErrnoRet: uptr(3), Args: []specs.LinuxSeccompArg{{Index: 3, Value: hi | 5, Op: specs.OpGreaterThan}}},
				{Names: []string{"close"}, Action: specs.ActErrno, ErrnoRet: uptr(4), Args: []specs.LinuxSeccompArg{{Index: 4, Value: hi | 5, Op: specs.OpGreaterEqual}}},
				{Names: []string{"stat"}, Action: specs.ActErrno, ErrnoRet: uptr(5), Args: []specs.LinuxSeccompArg{{Index: 5, Value: hi | 5, Op: specs.OpLessThan}}},
				{Names: []string{"fstat"}, Action: specs.ActErrno, ErrnoRet: uptr(6), Args: []specs.LinuxSeccompArg{{Index: 0, Value: hi | 5, Op: specs.OpLessEqual}}},
				{Names: []string{"lstat"}, Action: specs.ActErrno, ErrnoRet: uptr(7), Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xff00000000ff, ValueTwo: 0x120000000034, Op: specs.OpMaskedEqual}}},
			}},
			probes: []probe{
				{"eq hit", seccompData{nr: 0, arch: x64, args: [6]uint64{0, hi | 5}}, retErrno(1)},
				{"eq low only", seccompData{nr: 0, arch: x64, args: [6]uint64{0, 5}}, retAllow},
				{"eq high only", seccompData{nr: 0, arch: x64, args: [6]uint64{0, hi}}, retAllow},
				{"ne equal", seccompData{nr: 1, arch: x64, args: [6]uint64{2: hi | 5}}, retAllow},
				{"ne high differs", seccompData{nr: 1, arch: x64, args: [6]uint64{2: 2*hi | 5}}, retErrno(2)},
				{"ne low differs", seccompData{nr: 1, arch: x64, args: [6]uint64{2: hi | 6}}, retErrno(2)},
				{"gt by high", seccompData{nr: 2, arch: x64, args: [6]uint64{3: 2 * hi}}, retErrno(3)},
				{"gt by low", seccompData{nr: 2, arch: x64, args: [6]uint64{3: hi | 6}}, retErrno(3)},
				{"gt equal", seccompData{nr: 2, arch: x64, args: [6]uint64{3: hi | 5}}, retAllow},
				{"gt low bigger but high smaller", seccompData{nr: 2, arch: x64, args: [6]uint64{3: 0xffffffff}}, retAllow},
				{"ge equal", seccompData{nr: 3, arch: x64, args: [6]uint64{4: hi | 5}}, retErrno(4)},
				{"ge below", seccompData{nr: 3, arch: x64, args: [6]uint64{4: hi | 4}}, retAllow},
				{"lt below by high", seccompData{nr: 4, arch: x64, args: [6]uint64{5: 0xffffffff}}, retErrno(5)},
				{"lt equal", seccompData{nr: 4, arch: x64, args: [6]uint64{5: hi | 5}}, retAllow},
				{"lt high bigger low smaller", seccompData{nr: 4, arch: x64, args: [6]uint64{5: 2 * hi}}, retAllow},
				{"le equal", seccompData{nr: 5, arch: x64, args: [6]uint64{hi | 5}}, retErrno(6)},
				{"le above", seccompData{nr: 5, arch: x64, args: [6]uint64{hi | 6}}, retAllow},
				{"masked hit", seccompData{nr: 6, arch: x64, args: [6]uint64{0x12ab00cd0034}}, retErrno(7)},
				{"masked high miss", seccompData{nr: 6, arch: x64, args: [6]uint64{0x13ab00cd0034}}, retAllow},
				{"masked low miss", seccompData{nr: 6, arch: x64, args: [6]uint64{0x12ab00cd0035}}, retAllow},
			},
		},
		{
			name: "AND within a rule, OR across rules and for repeated args", native: specs.ArchX86_64,
			cfg: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
					{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 1, Value: 2, Op: specs.OpEqualTo}}},
				{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 2, Value: 9, Op: specs.OpEqualTo}}},
				{Names: []string{"write"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
					{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 0, Value: 2, Op: specs.OpEqualTo}}},
			}},
			probes: []probe{
				{"both", seccompData{nr: 0, arch: x64, args: [6]uint64{1, 2}}, retErrno(1)},
				{"first only", seccompData{nr: 0, arch: x64, args: [6]uint64{1, 3}}, retAllow},
				{"second only", seccompData{nr: 0, arch: x64, args: [6]uint64{0, 2}}, retAllow},
				{"other rule", seccompData{nr: 0, arch: x64, args: [6]uint64{2: 9}}, retErrno(1)},
				{"same arg 1", seccompData{nr: 1, arch: x64, args: [6]uint64{1}}, retErrno(1)},
				{"same arg 2", seccompData{nr: 1, arch: x64, args: [6]uint64{2}}, retErrno(1)},
				{"same arg none", seccompData{nr: 1, arch: x64, args: [6]uint64{3}}, retAllow},
			},
		},
		{
			name: "most restrictive action wins", native: specs.ArchX86_64,
			cfg: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"socket"}, Action: specs.ActAllow},
				{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.EAFNOSUPPORT)), Args: []specs.LinuxSeccompArg{{Index: 0, Value: 38, Op: specs.OpEqualTo}}},
				{Names: []string{"socket"}, Action: specs.ActKillProcess, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 40, Op: specs.OpEqualTo}}},
			}},
			probes: []probe{
				{"inet", seccompData{nr: nr(t, specs.ArchX86_64, "socket"), arch: x64, args: [6]uint64{2}}, retAllow},
				{"alg", seccompData{nr: nr(t, specs.ArchX86_64, "socket"), arch: x64, args: [6]uint64{38}}, retErrno(unix.EAFNOSUPPORT)},
				{"vsock", seccompData{nr: nr(t, specs.ArchX86_64, "socket"), arch: x64, args: [6]uint64{40}}, retKillP},
			},
		},
		{
			name: "32-bit arch compares low words", native: specs.ArchX86_64,
			cfg: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86}, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"getppid"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: hi | 7, Op: specs.OpEqualTo}}},
			}},
			probes: []probe{
				{"x86 low word", seccompData{nr: getppid32, arch: i386, args: [6]uint64{7}}, retErrno(1)},
				{"x86_64 needs high word", seccompData{nr: getppid, arch: x64, args: [6]uint64{7}}, retAllow},
				{"x86_64 full", seccompData{nr: getppid, arch: x64, args: [6]uint64{hi | 7}}, retErrno(1)},
			},
		},
		{
			name: "x86 socketcall and ipc multiplexers", native: specs.ArchX86_64,
			cfg: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86}, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"socket", "msgrcv", "recv"}, Action: specs.ActErrno},
				{Names: []string{"connect"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 3, Op: specs.OpEqualTo}}},
			}},
			probes: []probe{
				{"direct socket", seccompData{nr: 359, arch: i386}, retErrno(1)},
				{"socketcall(SYS_SOCKET)", seccompData{nr: 102, arch: i386, args: [6]uint64{1}}, retErrno(1)},
				{"socketcall(SYS_RECV)", seccompData{nr: 102, arch: i386, args: [6]uint64{10}}, retErrno(1)},
				{"socketcall(SYS_BIND)", seccompData{nr: 102, arch: i386, args: [6]uint64{2}}, retAllow},
				{"conditional rules are not mirrored", seccompData{nr: 102, arch: i386, args: [6]uint64{3}}, retAllow},
				{"direct connect with condition", seccompData{nr: 362, arch: i386, args: [6]uint64{3}}, retErrno(1)},
				{"ipc(MSGRCV)", seccompData{nr: 117, arch: i386, args: [6]uint64{12}}, retErrno(1)},
				{"ipc(MSGRCV) with a version", seccompData{nr: 117, arch: i386, args: [6]uint64{12 | 1<<16}}, retErrno(1)},
				{"ipc(MSGSND)", seccompData{nr: 117, arch: i386, args: [6]uint64{11}}, retAllow},
				{"x86_64 has no multiplexer", seccompData{nr: nr(t, specs.ArchX86_64, "socket"), arch: x64}, retErrno(1)},
			},
		},
		{
			name: "big-endian s390x", native: specs.ArchS390X,
			cfg: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: hi | 3, Op: specs.OpEqualTo}}},
			}},
			probes: []probe{
				{"match", seccompData{nr: nr(t, specs.ArchS390X, "read"), arch: unix.AUDIT_ARCH_S390X, args: [6]uint64{hi | 3}}, retAllow},
				{"halves swapped", seccompData{nr: nr(t, specs.ArchS390X, "read"), arch: unix.AUDIT_ARCH_S390X, args: [6]uint64{3<<32 | 1}}, retErrno(1)},
				{"multiplexed zero", seccompData{nr: 0, arch: unix.AUDIT_ARCH_S390X}, retErrno(unix.ENOSYS)},
				{"x86_64 is bad arch here", seccompData{nr: 0, arch: x64}, retKillT},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustCompile(t, tt.cfg, tt.native)
			for _, p := range tt.probes {
				got := eval(t, f, tt.native, p.d)
				if got != p.want {
					t.Errorf("%s: got %#x, want %#x", p.name, got, p.want)
				}
				if ref := expect(tt.cfg, tt.native, p.d); ref != p.want {
					t.Errorf("%s: reference model says %#x, test wants %#x", p.name, ref, p.want)
				}
			}
		})
	}
}

// probesFor derives seccomp_data values around every number and argument
// value the profile mentions, for every architecture it filters.
func probesFor(cfg *specs.LinuxSeccomp, native specs.Arch) []seccompData {
	var out []seccompData
	arches := append([]specs.Arch{native}, cfg.Architectures...)
	around := func(vs []uint64, v uint64) []uint64 {
		return append(vs, v, v+1, v-1, v^(1<<32), v&0xffffffff, v|0xffffffff00000000)
	}
	for _, an := range arches {
		a := lookupArch(an)
		// nr -> interesting argument values for it.
		nrs := map[uint32][]uint64{0: nil, 1: nil, 0xffffffff: nil, x32SyscallBit: nil, x32SyscallBit - 1: nil}
		for _, sc := range cfg.Syscalls {
			for _, name := range sc.Names {
				n, ok := a.number(name)
				if !ok {
					continue
				}
				for _, arg := range sc.Args {
					nrs[n] = around(around(around(nrs[n], arg.Value), arg.ValueTwo), arg.Value|arg.ValueTwo)
				}
				for _, m := range []uint32{n - 1, n + 1} {
					if _, ok := nrs[m]; !ok {
						nrs[m] = nil
					}
				}
			}
		}
		if a.muxed {
			for _, name := range []string{"socketcall", "ipc"} {
				if n, ok := a.number(name); ok {
					for call := uint64(0); call < 26; call++ {
						nrs[n] = append(nrs[n], call, call|1<<16)
					}
				}
			}
		}
		for n, vals := range nrs {
			out = append(out, seccompData{nr: n, arch: a.audit}, seccompData{nr: n, arch: a.audit, args: [6]uint64{1, 2, 3, 4, 5, 6}})
			if len(vals) == 0 {
				continue
			}
			vals = append(vals, 0, ^uint64(0))
			for i, v := range vals {
				for k := 0; k < 6; k++ {
					var d seccompData
					d.nr, d.arch = n, a.audit
					for j := range d.args {
						d.args[j] = vals[(i+j*7+k)%len(vals)]
					}
					d.args[k] = v
					out = append(out, d)
				}
			}
		}
	}
	return out
}

func checkModel(t testing.TB, cfg *specs.LinuxSeccomp, native specs.Arch, f *Filter) {
	t.Helper()
	be := lookupArch(native).bigEndian
	for _, d := range probesFor(cfg, native) {
		got, err := run(f.prog, d.bytes(be), be)
		if err != nil {
			t.Fatalf("run %+v: %v", d, err)
		}
		if want := expect(cfg, native, d); got != want {
			t.Fatalf("nr %#x arch %#x args %#x: program returns %#x, model %#x", d.nr, d.arch, d.args, got, want)
		}
	}
}

func TestDockerDefaultLike(t *testing.T) {
	cfg := dockerDefaultLike()
	f := mustCompile(t, cfg, specs.ArchX86_64)
	t.Logf("docker-default-like profile: %d instructions, warnings %q", f.Len(), f.Warnings())
	// runc's libseccomp output for moby's profile is ~1000-1500
	// instructions; a range tree with shared returns should be far smaller.
	if f.Len() > 1200 {
		t.Fatalf("program has %d instructions, want <= 1200", f.Len())
	}
	checkModel(t, cfg, specs.ArchX86_64, f)
	// Exhaustive over the number space that matters, zero arguments.
	for _, arch := range []uint32{unix.AUDIT_ARCH_X86_64, unix.AUDIT_ARCH_I386} {
		for n := uint32(0); n < 600; n++ {
			for _, base := range []uint32{0, x32SyscallBit} {
				d := seccompData{nr: base | n, arch: arch}
				if got, want := eval(t, f, specs.ArchX86_64, d), expect(cfg, specs.ArchX86_64, d); got != want {
					t.Fatalf("nr %#x arch %#x: %#x, model %#x", d.nr, arch, got, want)
				}
			}
		}
	}
	// The same profile must compile for the other arches moby ships it for.
	for _, native := range []specs.Arch{specs.ArchAARCH64, specs.ArchPPC64LE, specs.ArchS390X, specs.ArchRISCV64, specs.ArchMIPSEL64, specs.ArchLOONGARCH64} {
		c := dockerDefaultLike()
		c.Architectures = nil
		f := mustCompile(t, c, native)
		checkModel(t, c, native, f)
	}
}

// A profile with many conditional syscalls pushes jumps past 255
// instructions, which needs trampolines.
func TestLongJumps(t *testing.T) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86, specs.ArchX32}}
	for i, name := range sysNames {
		if i%6 != 0 {
			continue
		}
		cfg.Syscalls = append(cfg.Syscalls, specs.LinuxSyscall{Names: []string{name}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: uint(i % 6), Value: uint64(i) << 20, Op: specs.OpGreaterEqual}, {Index: uint(i+1) % 6, Value: uint64(i), Op: specs.OpNotEqual}}})
	}
	f := mustCompile(t, cfg, specs.ArchX86_64)
	t.Logf("%d instructions", f.Len())
	if f.Len() < 1000 {
		t.Fatalf("expected a big program, got %d instructions", f.Len())
	}
	checkModel(t, cfg, specs.ArchX86_64, f)
}

func TestTooBig(t *testing.T) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86, specs.ArchX32}}
	for i, name := range sysNames {
		var args []specs.LinuxSeccompArg
		for j := 0; j < 6; j++ {
			args = append(args, specs.LinuxSeccompArg{Index: uint(j), Value: uint64(i*j + 1), Op: specs.OpLessThan})
		}
		cfg.Syscalls = append(cfg.Syscalls, specs.LinuxSyscall{Names: []string{name}, Action: specs.ActAllow, Args: args})
	}
	_, err := Compile(cfg, WithNativeArch(specs.ArchX86_64))
	if err == nil || !strings.Contains(err.Error(), "more than the kernel's limit of 4096") {
		t.Fatalf("err = %v", err)
	}
}

func TestTables(t *testing.T) {
	for _, tc := range []struct {
		arch specs.Arch
		name string
		nr   uint32
	}{
		{specs.ArchX86_64, "read", 0},
		{specs.ArchX86_64, "getppid", 110},
		{specs.ArchX86_64, "clone3", 435},
		{specs.ArchX86, "getppid", 64},
		{specs.ArchX86, "socketcall", 102},
		{specs.ArchX32, "read", x32SyscallBit},
		{specs.ArchX32, "rt_sigaction", x32SyscallBit | 512},
		{specs.ArchX32, "clone3", x32SyscallBit | 435},
		{specs.ArchX32, "mseal", x32SyscallBit | 462}, // newer than Debian's header: derived
		{specs.ArchAARCH64, "openat", 56},
		{specs.ArchARM, "getppid", 64},
		{specs.ArchMIPS, "read", 4003},
		{specs.ArchMIPSEL64, "read", 5000},
		{specs.ArchS390X, "getppid", 64},
		{specs.ArchPPC64LE, "getppid", 64},
		{specs.ArchRISCV64, "openat", 56},
		{specs.ArchLOONGARCH64, "openat", 56},
	} {
		got, ok := SyscallNumber(tc.arch, tc.name)
		if !ok || got != tc.nr {
			t.Errorf("%s %s = %d, %v; want %d", tc.arch, tc.name, got, ok, tc.nr)
		}
	}
	for _, absent := range []struct {
		arch specs.Arch
		name string
	}{{specs.ArchX86_64, "socketcall"}, {specs.ArchAARCH64, "open"}, {specs.ArchX32, "rt_sigaction_nope"}, {specs.ArchMIPS64N32, "read"}} {
		if n, ok := SyscallNumber(absent.arch, absent.name); ok {
			t.Errorf("%s %s resolved to %d", absent.arch, absent.name, n)
		}
	}
	if !sortedUnique(sysNames[:]) {
		t.Fatal("sysNames is not sorted and unique")
	}
}

func sortedUnique(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

func TestStructSizes(t *testing.T) {
	// Must match the sizes encoded in the SECCOMP_IOCTL_NOTIF_* numbers.
	if s := unsafe.Sizeof(Notif{}); s != 0x50 {
		t.Fatalf("sizeof(seccomp_notif) = %d", s)
	}
	if s := unsafe.Sizeof(NotifResp{}); s != 0x18 {
		t.Fatalf("sizeof(seccomp_notif_resp) = %d", s)
	}
}

func TestFeatures(t *testing.T) {
	f := Features()
	if f.Enabled == nil || !*f.Enabled {
		t.Fatal("not enabled")
	}
	if len(f.Actions) != 9 || len(f.Operators) != 7 {
		t.Fatalf("actions %v operators %v", f.Actions, f.Operators)
	}
	for _, want := range []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"} {
		if !contains(f.Archs, want) {
			t.Errorf("archs %v lack %s", f.Archs, want)
		}
	}
	if contains(f.Archs, string(specs.ArchMIPS64N32)) {
		t.Errorf("archs %v list an arch without a table", f.Archs)
	}
	if len(f.KnownFlags) != 4 {
		t.Fatalf("known flags %v", f.KnownFlags)
	}
	// Kernel 5.19+ (this CI runs 6.x) supports all four.
	for _, fl := range f.SupportedFlags {
		if !contains(f.KnownFlags, fl) {
			t.Errorf("supported flag %s is not known", fl)
		}
	}
	if !contains(f.SupportedFlags, "SECCOMP_FILTER_FLAG_TSYNC") || !contains(f.SupportedFlags, "SECCOMP_FILTER_FLAG_LOG") {
		t.Errorf("supported flags %v", f.SupportedFlags)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestMarshalBinary(t *testing.T) {
	cfg := dockerDefaultLike()
	cfg.ListenerPath = "/x"
	cfg.Syscalls = append(cfg.Syscalls, specs.LinuxSyscall{Names: []string{"mkdirat"}, Action: specs.ActNotify})
	f := mustCompile(t, cfg, specs.ArchX86_64)
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var g Filter
	if err := g.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if g.Flags() != f.Flags() || !g.NeedsListener() || g.Len() != f.Len() || len(g.actions) != len(f.actions) {
		t.Fatalf("round trip lost data: %+v vs %+v", g, f)
	}
	for i := range f.prog {
		if f.prog[i] != g.prog[i] {
			t.Fatalf("instruction %d differs", i)
		}
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"magic", append([]byte("XXXX"), b[4:]...)},
		{"truncated", b[:len(b)-3]},
		{"extra", append(append([]byte(nil), b...), 0)},
		{"bad jump", func() []byte {
			c := append([]byte(nil), b...)
			c[len(c)-8*2+2] = 200 // jt of the second to last instruction
			c[len(c)-8*2] = byte(opJeqK)
			return c
		}()},
	} {
		var h Filter
		if err := h.UnmarshalBinary(tc.b); err == nil || !strings.HasPrefix(err.Error(), "seccomp: decoding filter") {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}

// The layout for a small profile, spelled out: arch dispatch, the x32 split,
// a search tree over number ranges with shared returns, then the
// conditional block with its own returns.
func TestProgramShape(t *testing.T) {
	cfg := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"read", "write", "close"}, Action: specs.ActAllow},
		{Names: []string{"openat"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 2, Value: 1, Op: specs.OpEqualTo}}},
	}}
	f := mustCompile(t, cfg, specs.ArchX86_64)
	// Ranges: [0,2) allow (read, write), [2] default (open), [3] allow
	// (close), [4,257) default, [257] openat's block, [258,...) -ENOSYS.
	want := `0000 ld [4]
0001 jeq #0xc000003e, 3, 2
0002 ret #0x0
0003 ld [0]
0004 jge #0x40000000, 5, 6
0005 ret #0x0
0006 jge #0x4, 9, 7
0007 jge #0x2, 8, 11
0008 jge #0x3, 11, 12
0009 jge #0x101, 10, 12
0010 jge #0x102, 13, 14
0011 ret #0x7fff0000
0012 ret #0x50001
0013 ret #0x50026
0014 ld [36]
0015 jeq #0x0, 16, 18
0016 ld [32]
0017 jeq #0x1, 19, 18
0018 ret #0x50001
0019 ret #0x7fff0000
`
	if got := f.Disassemble(); got != want {
		t.Fatalf("program:\n%s\nwant:\n%s", got, want)
	}
}
