package seccomp

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// This file holds two independent models used to check the compiler without
// a kernel: run executes the generated BPF like the kernel's classic BPF
// interpreter (only the instructions the compiler emits), and expect decides
// the same question straight from the profile, without any BPF. Compile
// tests and the fuzzer require both to agree.

type seccompData struct {
	nr   uint32
	arch uint32
	ip   uint64
	args [6]uint64
}

func (d seccompData) bytes(bigEndian bool) []byte {
	var bo binary.ByteOrder = binary.LittleEndian
	if bigEndian {
		bo = binary.BigEndian
	}
	b := make([]byte, 64)
	bo.PutUint32(b[0:], d.nr)
	bo.PutUint32(b[4:], d.arch)
	bo.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		bo.PutUint64(b[16+8*i:], a)
	}
	return b
}

// verify is validateProgram; the tests call it on every compiled program.
func verify(prog []unix.SockFilter) error { return validateProgram(prog) }

// run interprets prog over data and returns the SECCOMP_RET_* value.
func run(prog []unix.SockFilter, data []byte, bigEndian bool) (uint32, error) {
	var bo binary.ByteOrder = binary.LittleEndian
	if bigEndian {
		bo = binary.BigEndian
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case opLdAbsW:
			acc = bo.Uint32(data[in.K:])
		case opAndK:
			acc &= in.K
		case opRetK:
			return in.K, nil
		case opJa:
			pc += int(in.K)
		case opJeqK, opJgtK, opJgeK, opJsetK:
			var ok bool
			switch in.Code {
			case opJeqK:
				ok = acc == in.K
			case opJgtK:
				ok = acc > in.K
			case opJgeK:
				ok = acc >= in.K
			default:
				ok = acc&in.K != 0
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		default:
			return 0, fmt.Errorf("pc %d: unexpected opcode %#x", pc, in.Code)
		}
	}
	return 0, fmt.Errorf("fell off the end of the program")
}

// expect is the reference semantics of a profile (see the package doc),
// written as directly as possible. cfg must have compiled without error.
func expect(cfg *specs.LinuxSeccomp, native specs.Arch, d seccompData) uint32 {
	def, _ := actionValue(cfg.DefaultAction, cfg.DefaultErrnoRet)
	const enosys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)

	// Which ABI made the call?
	names := append([]specs.Arch{native}, cfg.Architectures...)
	var arch *archInfo
	for _, n := range names {
		a := lookupArch(n)
		if a.audit != d.arch {
			continue
		}
		if a.audit == unix.AUDIT_ARCH_X86_64 {
			isX32 := d.nr >= x32SyscallBit
			if isX32 != (a.name == specs.ArchX32) {
				continue
			}
		}
		arch = a
		break
	}
	if arch == nil {
		return unix.SECCOMP_RET_KILL_THREAD
	}

	stub := false
	switch cfg.DefaultAction {
	case specs.ActAllow, specs.ActLog, specs.ActTrace:
	default:
		stub = def != enosys
	}
	var maxNr uint32
	haveMax := false
	type cand struct {
		action uint32
		order  int
	}
	var matches []cand
	order := 0
	for _, sc := range cfg.Syscalls {
		act, _ := actionValue(sc.Action, sc.ErrnoRet)
		for _, name := range sc.Names {
			if m, ok := muxCalls[name]; ok && arch.muxed && len(sc.Args) == 0 && act != def {
				via, _ := arch.number(m.via)
				if d.nr == via && condHolds(arch, specs.LinuxSeccompArg{Index: 0, Value: m.condition().value, ValueTwo: m.condition().two, Op: m.condition().op}, d.args[0]) {
					matches = append(matches, cand{act, order})
					order++
				}
			}
			nr, ok := arch.number(name)
			if !ok {
				continue
			}
			if !haveMax || nr > maxNr {
				maxNr, haveMax = nr, true
			}
			if nr != d.nr || act == def {
				continue
			}
			if argsMatch(arch, sc.Args, d.args) {
				matches = append(matches, cand{act, order})
				order++
			}
		}
	}
	if stub && haveMax {
		if d.nr > maxNr || (arch.multiplexZero && d.nr == 0) {
			return enosys
		}
	}
	if len(matches) == 0 {
		return def
	}
	sort.SliceStable(matches, func(i, j int) bool {
		return precedence(matches[i].action) < precedence(matches[j].action)
	})
	return matches[0].action
}

// argsMatch: all conditions hold (AND), unless an argument index repeats,
// in which case any one condition suffices (runc's OR fallback).
func argsMatch(arch *archInfo, args []specs.LinuxSeccompArg, vals [6]uint64) bool {
	if len(args) == 0 {
		return true
	}
	count := map[uint]int{}
	repeat := false
	for _, a := range args {
		count[a.Index]++
		repeat = repeat || count[a.Index] > 1
	}
	for _, a := range args {
		ok := condHolds(arch, a, vals[a.Index])
		if repeat && ok {
			return true
		}
		if !repeat && !ok {
			return false
		}
	}
	return !repeat
}

func condHolds(arch *archInfo, a specs.LinuxSeccompArg, v uint64) bool {
	x, y, z := v, a.Value, a.ValueTwo
	if arch.args32 {
		x, y, z = uint64(uint32(x)), uint64(uint32(y)), uint64(uint32(z))
	}
	switch a.Op {
	case specs.OpEqualTo:
		return x == y
	case specs.OpNotEqual:
		return x != y
	case specs.OpGreaterThan:
		return x > y
	case specs.OpGreaterEqual:
		return x >= y
	case specs.OpLessThan:
		return x < y
	case specs.OpLessEqual:
		return x <= y
	case specs.OpMaskedEqual:
		return x&y == z
	}
	panic("unknown operator " + a.Op)
}
