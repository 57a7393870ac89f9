package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// A small classic-BPF assembler. Code is emitted with symbolic labels;
// assemble lays it out and, because a conditional jump can only skip 255
// instructions, inserts a trampoline (an unconditional ja, which has a 32-bit
// offset) after any conditional jump whose target ended up further away.
// cBPF only jumps forward, so every label must be bound after its users.

// maxInsns is BPF_MAXINSNS: the kernel rejects longer seccomp programs.
const maxInsns = 4096

const (
	opLdAbsW = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	opAndK   = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	opJa     = unix.BPF_JMP | unix.BPF_JA
	opJeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	opJgtK   = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
	opJgeK   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	opJsetK  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	opRetK   = unix.BPF_RET | unix.BPF_K
)

// offsets into struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

type label int

// next targets the instruction emitted right after the jump, however far
// trampolines later push it.
const next label = -1

type insn struct {
	code   uint16
	k      uint32
	jt, jf label // conditional jumps; jt is the target of a ja
}

type assembler struct {
	insns   []insn
	labelAt []int   // label -> index of the instruction it is bound to
	pending []label // labels waiting for the next emitted instruction
}

func (a *assembler) newLabel() label {
	a.labelAt = append(a.labelAt, -1)
	return label(len(a.labelAt) - 1)
}

// bind attaches l to the next instruction emitted.
func (a *assembler) bind(l label) { a.pending = append(a.pending, l) }

func (a *assembler) emit(code uint16, k uint32, jt, jf label) {
	idx := len(a.insns)
	for _, l := range a.pending {
		a.labelAt[l] = idx
	}
	a.pending = a.pending[:0]
	a.insns = append(a.insns, insn{code: code, k: k, jt: jt, jf: jf})
}

func (a *assembler) load(off uint32)                         { a.emit(opLdAbsW, off, 0, 0) }
func (a *assembler) and(k uint32)                            { a.emit(opAndK, k, 0, 0) }
func (a *assembler) ret(k uint32)                            { a.emit(opRetK, k, 0, 0) }
func (a *assembler) jump(l label)                            { a.emit(opJa, 0, l, 0) }
func (a *assembler) jcond(op uint16, k uint32, jt, jf label) { a.emit(op, k, jt, jf) }

func isCond(code uint16) bool {
	return code&0x07 == unix.BPF_JMP && code != opJa
}

// node is one instruction in layout order; targets are node ids.
type node struct {
	insn
	tt, tf int
}

func (a *assembler) assemble() ([]unix.SockFilter, error) {
	if len(a.pending) != 0 {
		return nil, fmt.Errorf("internal error: label bound past the end of the program")
	}
	n := len(a.insns)
	resolve := func(i int, l label) (int, error) {
		if l == next {
			return i + 1, nil
		}
		t := a.labelAt[l]
		if t < 0 {
			return 0, fmt.Errorf("internal error: unbound label %d", l)
		}
		return t, nil
	}
	nodes := make([]node, n, n+64)
	for i, in := range a.insns {
		nodes[i].insn = in
		var err error
		switch {
		case in.code == opJa:
			nodes[i].tt, err = resolve(i, in.jt)
		case isCond(in.code):
			if nodes[i].tt, err = resolve(i, in.jt); err == nil {
				nodes[i].tf, err = resolve(i, in.jf)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	pos := make([]int, 0, n+64)
	for {
		pos = pos[:0]
		pos = append(pos, make([]int, len(nodes))...)
		for p, id := range order {
			pos[id] = p
		}
		var fixed []int // new layout, only built when a trampoline is needed
		changed := false
		for p, id := range order {
			var tramps []int
			if isCond(nodes[id].code) {
				for _, onFalse := range [2]bool{false, true} {
					target := nodes[id].tt
					if onFalse {
						target = nodes[id].tf
					}
					if d := pos[target] - p - 1; d > 255 {
						// The append may move nodes: index it afresh, never
						// through a pointer taken before.
						nodes = append(nodes, node{insn: insn{code: opJa}, tt: target})
						tramp := len(nodes) - 1
						if onFalse {
							nodes[id].tf = tramp
						} else {
							nodes[id].tt = tramp
						}
						tramps = append(tramps, tramp)
					}
				}
			}
			if len(tramps) > 0 && !changed {
				changed = true
				fixed = append(fixed, order[:p]...)
			}
			if changed {
				fixed = append(fixed, id)
				fixed = append(fixed, tramps...)
			}
		}
		if !changed {
			break
		}
		order = fixed
	}
	if len(order) > maxInsns {
		return nil, fmt.Errorf("seccomp program has %d instructions, more than the kernel's limit of %d", len(order), maxInsns)
	}
	out := make([]unix.SockFilter, len(order))
	for p, id := range order {
		nd := nodes[id]
		f := unix.SockFilter{Code: nd.code, K: nd.k}
		switch {
		case nd.code == opJa:
			d := pos[nd.tt] - p - 1
			if d < 0 {
				return nil, fmt.Errorf("internal error: backward jump at %d", p)
			}
			f.K = uint32(d)
		case isCond(nd.code):
			dt, df := pos[nd.tt]-p-1, pos[nd.tf]-p-1
			if dt < 0 || df < 0 || dt > 255 || df > 255 {
				return nil, fmt.Errorf("internal error: bad conditional jump at %d", p)
			}
			f.Jt, f.Jf = uint8(dt), uint8(df)
		}
		out[p] = f
	}
	return out, nil
}

// Disassemble renders the program one instruction a line, for debug logs.
func (f *Filter) Disassemble() string {
	var b []byte
	for pc, in := range f.prog {
		b = fmt.Appendf(b, "%04d ", pc)
		switch in.Code {
		case opLdAbsW:
			b = fmt.Appendf(b, "ld [%d]", in.K)
		case opAndK:
			b = fmt.Appendf(b, "and #%#x", in.K)
		case opRetK:
			b = fmt.Appendf(b, "ret #%#x", in.K)
		case opJa:
			b = fmt.Appendf(b, "ja %d", pc+1+int(in.K))
		case opJeqK, opJgtK, opJgeK, opJsetK:
			name := map[uint16]string{opJeqK: "jeq", opJgtK: "jgt", opJgeK: "jge", opJsetK: "jset"}[in.Code]
			b = fmt.Appendf(b, "%s #%#x, %d, %d", name, in.K, pc+1+int(in.Jt), pc+1+int(in.Jf))
		default:
			b = fmt.Appendf(b, "op %#x k %#x jt %d jf %d", in.Code, in.K, in.Jt, in.Jf)
		}
		b = append(b, '\n')
	}
	return string(b)
}
