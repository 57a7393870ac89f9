package seccomp

import (
	"runtime"
	"sort"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

//go:generate go run gen_syscalls.go

// noSyscall marks a name that an architecture does not have.
const noSyscall = ^uint32(0)

// x32SyscallBit is __X32_SYSCALL_BIT: x32 processes share AUDIT_ARCH_X86_64
// with native 64-bit ones and are told apart only by this bit in the number.
const x32SyscallBit = 0x40000000

// archInfo is what code generation needs to know about one ABI.
type archInfo struct {
	name  specs.Arch
	audit uint32 // AUDIT_ARCH_* the kernel puts in seccomp_data.arch
	// args32 is set for ABIs whose syscall arguments are 32-bit registers:
	// only the low half of a 64-bit condition value is compared, as
	// libseccomp does. x32 passes full 64-bit registers, so it is not one.
	args32 bool
	// bigEndian, for the native architecture, decides where the halves of
	// a seccomp_data argument live (seccomp_data is in kernel byte order).
	bigEndian bool
	// table is indexed like sysNames; nil means berth has no syscall table
	// for the ABI and a profile naming it is rejected.
	table *[len(sysNames)]uint32
	// multiplexZero: s390's unknown large syscall numbers arrive as nr 0,
	// which must get -ENOSYS in the stub (runc #3474).
	multiplexZero bool
	// muxed: socket and SysV IPC calls also exist multiplexed through
	// socketcall(2)/ipc(2), and a rule on one must cover both entry points.
	muxed bool
}

var archs = []archInfo{
	{name: specs.ArchX86_64, audit: unix.AUDIT_ARCH_X86_64, table: &sysX86_64},
	{name: specs.ArchX86, audit: unix.AUDIT_ARCH_I386, args32: true, muxed: true, table: &sysX86},
	{name: specs.ArchX32, audit: unix.AUDIT_ARCH_X86_64, table: &sysX32},
	{name: specs.ArchARM, audit: unix.AUDIT_ARCH_ARM, args32: true, table: &sysARM},
	{name: specs.ArchAARCH64, audit: unix.AUDIT_ARCH_AARCH64, table: &sysAARCH64},
	{name: specs.ArchMIPS, audit: unix.AUDIT_ARCH_MIPS, args32: true, bigEndian: true, table: &sysMIPS},
	{name: specs.ArchMIPSEL, audit: unix.AUDIT_ARCH_MIPSEL, args32: true, table: &sysMIPS},
	{name: specs.ArchMIPS64, audit: unix.AUDIT_ARCH_MIPS64, bigEndian: true, table: &sysMIPS64},
	{name: specs.ArchMIPSEL64, audit: unix.AUDIT_ARCH_MIPSEL64, table: &sysMIPS64},
	{name: specs.ArchMIPS64N32, audit: unix.AUDIT_ARCH_MIPS64N32, bigEndian: true},
	{name: specs.ArchMIPSEL64N32, audit: unix.AUDIT_ARCH_MIPSEL64N32},
	{name: specs.ArchPPC, audit: unix.AUDIT_ARCH_PPC, args32: true, bigEndian: true, table: &sysPPC},
	{name: specs.ArchPPC64, audit: unix.AUDIT_ARCH_PPC64, bigEndian: true, table: &sysPPC64},
	{name: specs.ArchPPC64LE, audit: unix.AUDIT_ARCH_PPC64LE, table: &sysPPC64},
	{name: specs.ArchS390, audit: unix.AUDIT_ARCH_S390, args32: true, bigEndian: true, multiplexZero: true},
	{name: specs.ArchS390X, audit: unix.AUDIT_ARCH_S390X, bigEndian: true, multiplexZero: true, table: &sysS390X},
	{name: specs.ArchPARISC, audit: unix.AUDIT_ARCH_PARISC, args32: true, bigEndian: true},
	{name: specs.ArchPARISC64, audit: unix.AUDIT_ARCH_PARISC64, bigEndian: true},
	{name: specs.ArchRISCV64, audit: unix.AUDIT_ARCH_RISCV64, table: &sysRISCV64},
	{name: specs.ArchLOONGARCH64, audit: unix.AUDIT_ARCH_LOONGARCH64, table: &sysLOONGARCH64},
	{name: specs.ArchM68K, audit: unix.AUDIT_ARCH_M68K, args32: true, bigEndian: true},
	{name: specs.ArchSH, audit: unix.AUDIT_ARCH_SHEL, args32: true},
	{name: specs.ArchSHEB, audit: unix.AUDIT_ARCH_SH, args32: true, bigEndian: true},
}

func lookupArch(name specs.Arch) *archInfo {
	for i := range archs {
		if archs[i].name == name {
			return &archs[i]
		}
	}
	return nil
}

// NativeArch is the seccomp architecture of the running binary, which
// libseccomp (and so runc) always adds to a filter whatever the profile lists.
func NativeArch() specs.Arch {
	return goarchToSpec[runtime.GOARCH]
}

var goarchToSpec = map[string]specs.Arch{
	"amd64":    specs.ArchX86_64,
	"386":      specs.ArchX86,
	"arm":      specs.ArchARM,
	"arm64":    specs.ArchAARCH64,
	"mips":     specs.ArchMIPS,
	"mipsle":   specs.ArchMIPSEL,
	"mips64":   specs.ArchMIPS64,
	"mips64le": specs.ArchMIPSEL64,
	"ppc64":    specs.ArchPPC64,
	"ppc64le":  specs.ArchPPC64LE,
	"s390x":    specs.ArchS390X,
	"riscv64":  specs.ArchRISCV64,
	"loong64":  specs.ArchLOONGARCH64,
}

// SyscallNumber resolves a syscall name for an architecture. ok is false
// when the architecture has no such syscall or berth has no table for it.
func SyscallNumber(arch specs.Arch, name string) (nr uint32, ok bool) {
	a := lookupArch(arch)
	if a == nil || a.table == nil {
		return 0, false
	}
	return a.number(name)
}

func (a *archInfo) number(name string) (uint32, bool) {
	return a.numberAt(nameIndex(name))
}

// nameIndex is the index of name in sysNames, or -1.
func nameIndex(name string) int {
	i := sort.SearchStrings(sysNames[:], name)
	if i == len(sysNames) || sysNames[i] != name {
		return -1
	}
	return i
}

func (a *archInfo) numberAt(i int) (uint32, bool) {
	if i < 0 {
		return 0, false
	}
	nr := a.table[i]
	return nr, nr != noSyscall
}

// SupportedArchs lists the architectures a profile may name, sorted.
func SupportedArchs() []string {
	var out []string
	for _, a := range archs {
		if a.table != nil {
			out = append(out, string(a.name))
		}
	}
	sort.Strings(out)
	return out
}

// muxCall is how a socket or SysV IPC call is reached through its
// multiplexer: socketcall(call, args) or ipc(call, ...).
type muxCall struct {
	via  string // "socketcall" or "ipc"
	call uint32 // SYS_* (linux/net.h) or IPC call number (linux/ipc.h)
}

// muxCalls, as libseccomp does for x86: a rule on "socket" also applies to
// socketcall(SYS_SOCKET, ...), so a denied call cannot be reached the old
// way and an allowed one works for old libcs. send and recv exist only
// multiplexed on x86.
var muxCalls = map[string]muxCall{
	"socket": {"socketcall", 1}, "bind": {"socketcall", 2}, "connect": {"socketcall", 3},
	"listen": {"socketcall", 4}, "accept": {"socketcall", 5}, "getsockname": {"socketcall", 6},
	"getpeername": {"socketcall", 7}, "socketpair": {"socketcall", 8}, "send": {"socketcall", 9},
	"recv": {"socketcall", 10}, "sendto": {"socketcall", 11}, "recvfrom": {"socketcall", 12},
	"shutdown": {"socketcall", 13}, "setsockopt": {"socketcall", 14}, "getsockopt": {"socketcall", 15},
	"sendmsg": {"socketcall", 16}, "recvmsg": {"socketcall", 17}, "accept4": {"socketcall", 18},
	"recvmmsg": {"socketcall", 19}, "sendmmsg": {"socketcall", 20},
	"semop": {"ipc", 1}, "semget": {"ipc", 2}, "semctl": {"ipc", 3}, "semtimedop": {"ipc", 4},
	"msgsnd": {"ipc", 11}, "msgrcv": {"ipc", 12}, "msgget": {"ipc", 13}, "msgctl": {"ipc", 14},
	"shmat": {"ipc", 21}, "shmdt": {"ipc", 22}, "shmget": {"ipc", 23}, "shmctl": {"ipc", 24},
}

// muxCondition matches the multiplexer's first argument. ipc(2) takes the
// call from its low 16 bits (the high ones are an ABI version), so compare
// only those: an exact match, as libseccomp emits, would let a version
// bit slip past a deny rule.
func (m muxCall) condition() condition {
	if m.via == "ipc" {
		return condition{index: 0, op: specs.OpMaskedEqual, value: 0xffff, two: uint64(m.call)}
	}
	return condition{index: 0, op: specs.OpEqualTo, value: uint64(m.call)}
}
