package devices

import "encoding/binary"

// Insn is one eBPF instruction (struct bpf_insn).
type Insn struct {
	Code uint8
	Dst  uint8
	Src  uint8
	Off  int16
	Imm  int32
}

// Opcodes used by the device program (linux/bpf.h, linux/bpf_common.h).
const (
	opLdxMemW  = 0x61 // BPF_LDX | BPF_MEM | BPF_W
	opAnd32K   = 0x54 // BPF_ALU | BPF_AND | BPF_K
	opRsh32K   = 0x74 // BPF_ALU | BPF_RSH | BPF_K
	opMov32X   = 0xbc // BPF_ALU | BPF_MOV | BPF_X
	opMov64K   = 0xb7 // BPF_ALU64 | BPF_MOV | BPF_K
	opJneK     = 0x55 // BPF_JMP | BPF_JNE | BPF_K
	opJeqK     = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	opExit     = 0x95 // BPF_JMP | BPF_EXIT
	devcgBlock = 1    // BPF_DEVCG_DEV_BLOCK
	devcgChar  = 2    // BPF_DEVCG_DEV_CHAR
)

// Registers the program keeps the request in, loaded once from the context
// (struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }).
const (
	rCtx    = 1
	rType   = 2 // access_type & 0xffff
	rAccess = 3 // access_type >> 16
	rMajor  = 4
	rMinor  = 5
	rTmp    = 6
)

// Program compiles s into a BPF_PROG_TYPE_CGROUP_DEVICE program returning 1
// (allow) or 0 (deny), with the same answers as State.Allowed: each exception
// is a block of checks that jumps to the next block on mismatch and returns
// the exception's verdict on match; falling off the end returns the default.
func Program(s State) []Insn {
	p := []Insn{
		{Code: opLdxMemW, Dst: rType, Src: rCtx, Off: 0},
		{Code: opAnd32K, Dst: rType, Imm: 0xffff},
		{Code: opLdxMemW, Dst: rAccess, Src: rCtx, Off: 0},
		{Code: opRsh32K, Dst: rAccess, Imm: 16},
		{Code: opLdxMemW, Dst: rMajor, Src: rCtx, Off: 4},
		{Code: opLdxMemW, Dst: rMinor, Src: rCtx, Off: 8},
	}
	verdict := int32(0)
	if !s.DefaultAllow {
		verdict = 1
	}
	for _, e := range s.Exceptions {
		var checks []Insn // each check's Off is patched to jump past the block
		if e.Type != 'a' {
			t := int32(devcgChar)
			if e.Type == 'b' {
				t = devcgBlock
			}
			checks = append(checks, Insn{Code: opJneK, Dst: rType, Imm: t})
		}
		if e.Access != AccAll || s.DefaultAllow {
			checks = append(checks, Insn{Code: opMov32X, Dst: rTmp, Src: rAccess})
			if s.DefaultAllow {
				// Deny when any requested bit is named: skip if none is.
				checks = append(checks,
					Insn{Code: opAnd32K, Dst: rTmp, Imm: int32(e.Access)},
					Insn{Code: opJeqK, Dst: rTmp, Imm: 0})
			} else {
				// Allow only when every requested bit is granted.
				checks = append(checks,
					Insn{Code: opAnd32K, Dst: rTmp, Imm: int32(^e.Access & AccAll)},
					Insn{Code: opJneK, Dst: rTmp, Imm: 0})
			}
		}
		if e.Major != Wildcard {
			checks = append(checks, Insn{Code: opJneK, Dst: rMajor, Imm: u32imm(e.Major)})
		}
		if e.Minor != Wildcard {
			checks = append(checks, Insn{Code: opJneK, Dst: rMinor, Imm: u32imm(e.Minor)})
		}
		block := append(checks, Insn{Code: opMov64K, Dst: 0, Imm: verdict}, Insn{Code: opExit})
		for i := range block {
			if c := block[i].Code; c == opJneK || c == opJeqK {
				block[i].Off = int16(len(block) - i - 1)
			}
		}
		p = append(p, block...)
	}
	def := int32(0)
	if s.DefaultAllow {
		def = 1
	}
	return append(p, Insn{Code: opMov64K, Dst: 0, Imm: def}, Insn{Code: opExit})
}

// u32imm gives a device number as an immediate. FromSpec bounds majors to 12
// and minors to 20 bits (the kernel's dev_t), so the value is never negative
// after the sign extension the 64-bit compare applies.
func u32imm(v int64) int32 { return int32(v) }

// Encode returns the program in the kernel's byte layout.
func Encode(p []Insn) []byte {
	b := make([]byte, 8*len(p))
	for i, in := range p {
		o := b[8*i:]
		o[0] = in.Code
		o[1] = in.Dst&0x0f | in.Src<<4
		binary.LittleEndian.PutUint16(o[2:], uint16(in.Off))
		binary.LittleEndian.PutUint32(o[4:], uint32(in.Imm))
	}
	return b
}

// Run interprets p the way the kernel would for one request; the tests use it
// to check Program against State.Allowed without loading anything.
func Run(p []Insn, typ byte, major, minor uint32, access uint32) (uint64, bool) {
	var reg [11]uint64
	t := uint32(devcgChar)
	if typ == 'b' {
		t = devcgBlock
	}
	ctx := [3]uint32{access<<16 | t, major, minor}
	for pc := 0; pc < len(p); pc++ {
		in := p[pc]
		switch in.Code {
		case opLdxMemW:
			if in.Src != rCtx || in.Off%4 != 0 || in.Off < 0 || in.Off > 8 {
				return 0, false
			}
			reg[in.Dst] = uint64(ctx[in.Off/4])
		case opAnd32K:
			reg[in.Dst] = uint64(uint32(reg[in.Dst]) & uint32(in.Imm))
		case opRsh32K:
			reg[in.Dst] = uint64(uint32(reg[in.Dst]) >> uint32(in.Imm))
		case opMov32X:
			reg[in.Dst] = uint64(uint32(reg[in.Src]))
		case opMov64K:
			reg[in.Dst] = uint64(int64(in.Imm))
		case opJneK:
			if reg[in.Dst] != uint64(int64(in.Imm)) {
				pc += int(in.Off)
			}
		case opJeqK:
			if reg[in.Dst] == uint64(int64(in.Imm)) {
				pc += int(in.Off)
			}
		case opExit:
			return reg[0], true
		default:
			return 0, false
		}
	}
	return 0, false
}
