package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// A compiled Filter can cross the parent -> init pipe so that init, which
// runs on every container start, only loads and never compiles.
//
// Format (little endian): "BSC1", flags u64, listener u8, action count u16,
// actions u32..., instruction count u16, instructions (code u16, jt u8,
// jf u8, k u32)... Warnings stay with the parent, which already has them.

var wireMagic = [4]byte{'B', 'S', 'C', '1'}

// MarshalBinary encodes the filter for UnmarshalBinary.
func (f *Filter) MarshalBinary() ([]byte, error) {
	if len(f.prog) == 0 {
		return nil, errors.New("seccomp: empty filter")
	}
	b := make([]byte, 0, 4+8+1+2+4*len(f.actions)+2+8*len(f.prog))
	b = append(b, wireMagic[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(f.flags))
	if f.listener {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(f.actions)))
	for _, a := range f.actions {
		b = binary.LittleEndian.AppendUint32(b, a)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(f.prog)))
	for _, in := range f.prog {
		b = binary.LittleEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.LittleEndian.AppendUint32(b, in.K)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary produced and re-validates the
// program, so a corrupted message is an error rather than a broken filter.
func (f *Filter) UnmarshalBinary(b []byte) error {
	bad := func(what string) error { return fmt.Errorf("seccomp: decoding filter: %s", what) }
	if len(b) < 4+8+1+2 || [4]byte(b[:4]) != wireMagic {
		return bad("not a berth seccomp filter")
	}
	b = b[4:]
	flags := binary.LittleEndian.Uint64(b)
	listener := b[8] == 1
	if b[8] > 1 {
		return bad("bad listener byte")
	}
	nact := int(binary.LittleEndian.Uint16(b[9:]))
	b = b[11:]
	if len(b) < 4*nact+2 {
		return bad("truncated actions")
	}
	actions := make([]uint32, nact)
	for i := range actions {
		actions[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	b = b[4*nact:]
	n := int(binary.LittleEndian.Uint16(b))
	b = b[2:]
	if len(b) != 8*n {
		return bad(fmt.Sprintf("%d bytes for %d instructions", len(b), n))
	}
	prog := make([]unix.SockFilter, n)
	for i := range prog {
		c := b[8*i:]
		prog[i] = unix.SockFilter{Code: binary.LittleEndian.Uint16(c), Jt: c[2], Jf: c[3], K: binary.LittleEndian.Uint32(c[4:])}
	}
	if err := validateProgram(prog); err != nil {
		return bad(err.Error())
	}
	*f = Filter{prog: prog, flags: uintptr(flags), listener: listener, actions: actions}
	return nil
}

// validateProgram checks what the kernel's classic BPF checker does and
// more: only the opcodes the compiler emits, loads inside seccomp_data,
// jumps in range, and a return as the last instruction.
func validateProgram(prog []unix.SockFilter) error {
	if len(prog) == 0 || len(prog) > maxInsns {
		return fmt.Errorf("bad program length %d", len(prog))
	}
	for pc, in := range prog {
		switch in.Code {
		case opLdAbsW:
			if in.K%4 != 0 || in.K >= 64 {
				return fmt.Errorf("pc %d: bad load offset %d", pc, in.K)
			}
		case opAndK, opRetK:
		case opJa:
			if uint64(pc)+1+uint64(in.K) >= uint64(len(prog)) {
				return fmt.Errorf("pc %d: ja out of range", pc)
			}
		case opJeqK, opJgtK, opJgeK, opJsetK:
			if pc+1+int(in.Jt) >= len(prog) || pc+1+int(in.Jf) >= len(prog) {
				return fmt.Errorf("pc %d: jump out of range", pc)
			}
		default:
			return fmt.Errorf("pc %d: unexpected opcode %#x", pc, in.Code)
		}
	}
	if prog[len(prog)-1].Code != opRetK {
		return errors.New("last instruction is not a return")
	}
	return nil
}
