package seccomp

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// subsection is the part of the program for one ABI: x86_64 and x32 share
// an AUDIT_ARCH value and split the syscall number space at bit 30.
type subsection struct {
	arch    *archInfo
	lo, hi  uint64    // syscall numbers this subsection sees, inclusive
	entries []sysRule // filled in profile order, then sorted by nr (stable)
	maxNr   uint32
	haveMax bool
	entry   label
}

// sysRule is one rule for one syscall number of a subsection.
type sysRule struct {
	nr uint32
	rule
}

// outcome of a syscall number: a return value, or a conditional block.
type outcome struct {
	ret   uint32
	block int // -1 for a plain return
}

type interval struct {
	lo  uint64
	out outcome
}

// retPool shares one return instruction per value within a region, emitted
// after the region's code (cBPF jumps only forward).
type retPool struct {
	labels map[uint32]label
	order  []uint32
}

func newRetPool() *retPool { return &retPool{labels: map[uint32]label{}} }

func (p *retPool) get(a *assembler, v uint32) label {
	if l, ok := p.labels[v]; ok {
		return l
	}
	l := a.newLabel()
	p.labels[v] = l
	p.order = append(p.order, v)
	return l
}

func (p *retPool) flush(a *assembler) {
	for _, v := range p.order {
		a.bind(p.labels[v])
		a.ret(v)
	}
	p.labels = map[uint32]label{}
	p.order = nil
}

func (c *compiler) buildSubsections() [][]*subsection {
	// Group ABIs by AUDIT_ARCH value, native first.
	var groups [][]*subsection
	index := map[uint32]int{}
	for _, a := range c.arches {
		s := &subsection{arch: a, lo: 0, hi: 0xffffffff, entries: make([]sysRule, 0, len(c.rules)+8)}
		if a.audit == unix.AUDIT_ARCH_X86_64 {
			if a.name == specs.ArchX32 {
				s.lo = x32SyscallBit
			} else {
				s.hi = x32SyscallBit - 1
			}
		}
		if g, ok := index[a.audit]; ok {
			groups[g] = append(groups[g], s)
		} else {
			index[a.audit] = len(groups)
			groups = append(groups, []*subsection{s})
		}
	}
	unknown := map[string]bool{}
	for _, r := range c.rules {
		known := false
		for _, g := range groups {
			for _, s := range g {
				if r.mux != nil && s.arch.muxed && len(r.conds) == 0 {
					// Argument conditions cannot follow a call into
					// the multiplexer (its arguments are in memory),
					// so only unconditional rules are mirrored.
					if via, ok := s.arch.number(r.mux.via); ok {
						known = true
						if !r.dropped {
							s.entries = append(s.entries, sysRule{via, rule{action: r.action, conds: []condition{r.mux.condition()}}})
						}
					}
				}
				nr, ok := s.arch.numberAt(r.idx)
				if !ok {
					continue
				}
				known = true
				if !s.haveMax || nr > s.maxNr {
					s.maxNr, s.haveMax = nr, true
				}
				if !r.dropped {
					s.entries = append(s.entries, sysRule{nr, r.rule})
				}
			}
		}
		// Like runc with libseccomp, which knows every arch's names: a
		// real syscall that the filtered arches lack (open on arm64) is
		// skipped silently; only a name no arch has is worth a warning.
		if !known && r.idx < 0 && !unknown[r.name] {
			unknown[r.name] = true
			c.warn("unknown syscall %q skipped", r.name)
		}
	}
	for _, g := range groups {
		for _, s := range g {
			// Stable: rules of one syscall keep profile order, which
			// breaks ties between equally restrictive actions.
			slices.SortStableFunc(s.entries, func(a, b sysRule) int { return cmp.Compare(a.nr, b.nr) })
		}
	}
	return groups
}

func (c *compiler) generate() ([]unix.SockFilter, error) {
	groups := c.buildSubsections()
	a := &assembler{}

	// Architecture dispatch.
	a.load(offArch)
	for _, g := range groups {
		for _, s := range g {
			s.entry = a.newLabel()
		}
		a.jcond(opJeqK, g[0].arch.audit, g[0].entry, next)
	}
	a.ret(c.badArch)

	for _, g := range groups {
		pool := newRetPool()
		if g[0].arch.audit == unix.AUDIT_ARCH_X86_64 {
			// Split x86_64 and x32 by the number, like libseccomp (JGE
			// on the bit, so "negative" numbers count as x32).
			var x64, x32 *subsection
			for _, s := range g {
				if s.lo == 0 {
					x64 = s
				} else {
					x32 = s
				}
			}
			entry := g[0].entry
			a.bind(entry)
			a.load(offNr)
			var lx64, lx32 label
			var subs []*subsection
			if x64 != nil {
				x64.entry = a.newLabel()
				lx64 = x64.entry
				subs = append(subs, x64)
			} else {
				lx64 = pool.get(a, c.badArch)
			}
			if x32 != nil {
				x32.entry = a.newLabel()
				lx32 = x32.entry
				subs = append(subs, x32)
			} else {
				lx32 = pool.get(a, c.badArch)
			}
			a.jcond(opJgeK, x32SyscallBit, lx32, lx64)
			pool.flush(a)
			for _, s := range subs {
				if err := c.emitSubsection(a, s, false); err != nil {
					return nil, err
				}
			}
			continue
		}
		for _, s := range g {
			if err := c.emitSubsection(a, s, true); err != nil {
				return nil, err
			}
		}
	}
	return a.assemble()
}

// point is the outcome of one syscall number the profile has rules for.
type point struct {
	nr  uint32
	out outcome
}

// intervals splits [s.lo, s.hi] into ranges of equal outcome; points are
// sorted by number and inside the range.
func (c *compiler) intervals(s *subsection, points []point) []interval {

	enosys := outcome{ret: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS), block: -1}
	def := outcome{ret: c.defAct, block: -1}
	stub := c.enosys && s.haveMax
	var out []interval
	add := func(lo uint64, o outcome) {
		if n := len(out); n > 0 && out[n-1].out == o {
			return
		}
		out = append(out, interval{lo: lo, out: o})
	}
	// base fills [from, to) with the default (or -ENOSYS) outcome.
	base := func(from, to uint64) {
		if from >= to {
			return
		}
		if stub && s.arch.multiplexZero && from == 0 {
			add(0, enosys)
			from = 1
			if from >= to {
				return
			}
		}
		limit := to
		if stub {
			limit = min(to, uint64(s.maxNr)+1)
		}
		if from < limit {
			add(from, def)
		}
		if limit < to {
			add(max(from, limit), enosys)
		}
	}
	cur := s.lo
	for _, p := range points {
		base(cur, uint64(p.nr))
		add(uint64(p.nr), p.out)
		cur = uint64(p.nr) + 1
	}
	base(cur, s.hi+1)
	return out
}

func (c *compiler) emitSubsection(a *assembler, s *subsection, loadNr bool) error {
	// Normalise each syscall's rules and share identical rule sets.
	type block struct {
		rules []rule
		label label
	}
	var blocks []*block
	var byKey map[string]int
	points := make([]point, 0, len(s.entries))
	rules := make([]rule, 0, 8)
	for i := 0; i < len(s.entries); {
		nr := s.entries[i].nr
		rules = rules[:0]
		for ; i < len(s.entries) && s.entries[i].nr == nr; i++ {
			rules = append(rules, s.entries[i].rule)
		}
		if uint64(nr) < s.lo || uint64(nr) > s.hi {
			continue
		}
		rs := normalise(rules)
		if len(rs[0].conds) == 0 {
			points = append(points, point{nr, outcome{ret: rs[0].action, block: -1}})
			continue
		}
		rs = slices.Clone(rs) // rules is reused
		key := rulesKey(rs)
		if byKey == nil {
			byKey = map[string]int{}
		}
		bi, ok := byKey[key]
		if !ok {
			bi = len(blocks)
			byKey[key] = bi
			blocks = append(blocks, &block{rules: rs, label: a.newLabel()})
		}
		points = append(points, point{nr, outcome{block: bi}})
	}
	ivs := c.intervals(s, points)

	pool := newRetPool()
	target := func(o outcome) label {
		if o.block >= 0 {
			return blocks[o.block].label
		}
		return pool.get(a, o.ret)
	}

	a.bind(s.entry)
	if loadNr {
		a.load(offNr)
	}
	// Balanced search tree: each node is one jge on the first number of
	// its right half; leaves are the outcomes themselves.
	var emit func(lo, hi int, self label)
	nodeLabel := func(lo, hi int) label {
		if hi-lo == 1 {
			return target(ivs[lo].out)
		}
		return a.newLabel()
	}
	emit = func(lo, hi int, self label) {
		if hi-lo == 1 {
			return
		}
		mid := (lo + hi) / 2
		left, right := nodeLabel(lo, mid), nodeLabel(mid, hi)
		a.bind(self)
		a.jcond(opJgeK, uint32(ivs[mid].lo), right, left)
		emit(lo, mid, left)
		emit(mid, hi, right)
	}
	if len(ivs) == 1 {
		a.jump(target(ivs[0].out))
	} else {
		emit(0, len(ivs), a.newLabel())
	}
	pool.flush(a)

	// Conditional blocks, each followed by its own returns so that no
	// jump out of a block has to cross other blocks.
	for _, b := range blocks {
		a.bind(b.label)
		for i, r := range b.rules {
			var nextRule label
			if i == len(b.rules)-1 {
				nextRule = pool.get(a, c.defAct)
			} else {
				nextRule = a.newLabel()
			}
			success := pool.get(a, r.action)
			if len(r.conds) == 0 {
				// Only the last rule can be unconditional (normalise).
				a.jump(success)
			}
			for j, cd := range r.conds {
				// Not next: a condition is several instructions, and
				// its true branch must skip the rest of them.
				t := success
				if j != len(r.conds)-1 {
					t = a.newLabel()
				}
				if err := emitCondition(a, s.arch, c.native.bigEndian, cd, t, nextRule); err != nil {
					return err
				}
				if t != success {
					a.bind(t)
				}
			}
			if i != len(b.rules)-1 {
				a.bind(nextRule)
			}
		}
		pool.flush(a)
	}
	return nil
}

// normalise orders rules most restrictive first and drops those an earlier
// unconditional rule makes unreachable.
func normalise(rules []rule) []rule {
	if len(rules) == 1 {
		return rules // the common case: one rule per syscall
	}
	rs := append([]rule(nil), rules...)
	sort.SliceStable(rs, func(i, j int) bool { return precedence(rs[i].action) < precedence(rs[j].action) })
	for i, r := range rs {
		if len(r.conds) == 0 {
			// Conditional rules right before it with the same action
			// are redundant: matching or not, the result is the same.
			j := i
			for j > 0 && rs[j-1].action == r.action {
				j--
			}
			return append(rs[:j], r)
		}
	}
	return rs
}

func rulesKey(rs []rule) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%x:", r.action)
		for _, cd := range r.conds {
			fmt.Fprintf(&b, "%d%s%x,%x;", cd.index, cd.op, cd.value, cd.two)
		}
		b.WriteByte('|')
	}
	return b.String()
}

// emitCondition jumps to t when the condition holds and to f otherwise.
// 64-bit values are compared as (high, low) pairs of 32-bit words: the high
// words decide unless they are equal, then the low words do.
// seccomp_data is in the byte order of the kernel, i.e. of the native
// architecture, whichever ABI made the call.
func emitCondition(a *assembler, arch *archInfo, bigEndian bool, cd condition, t, f label) error {
	lo := uint32(offArgs + 8*cd.index)
	hi := lo + 4
	if bigEndian {
		lo, hi = hi, lo
	}
	vlo, vhi := uint32(cd.value), uint32(cd.value>>32)
	if arch.args32 {
		// 32-bit ABIs: only the low word carries the argument.
		a.load(lo)
		switch cd.op {
		case "SCMP_CMP_EQ":
			a.jcond(opJeqK, vlo, t, f)
		case "SCMP_CMP_NE":
			a.jcond(opJeqK, vlo, f, t)
		case "SCMP_CMP_GT":
			a.jcond(opJgtK, vlo, t, f)
		case "SCMP_CMP_GE":
			a.jcond(opJgeK, vlo, t, f)
		case "SCMP_CMP_LT":
			a.jcond(opJgeK, vlo, f, t)
		case "SCMP_CMP_LE":
			a.jcond(opJgtK, vlo, f, t)
		case "SCMP_CMP_MASKED_EQ":
			a.and(vlo)
			a.jcond(opJeqK, uint32(cd.two), t, f)
		default:
			return fmt.Errorf("unknown operator %q", cd.op)
		}
		return nil
	}
	switch cd.op {
	case "SCMP_CMP_EQ":
		a.load(hi)
		a.jcond(opJeqK, vhi, next, f)
		a.load(lo)
		a.jcond(opJeqK, vlo, t, f)
	case "SCMP_CMP_NE":
		a.load(hi)
		a.jcond(opJeqK, vhi, next, t)
		a.load(lo)
		a.jcond(opJeqK, vlo, f, t)
	case "SCMP_CMP_GT", "SCMP_CMP_GE":
		a.load(hi)
		a.jcond(opJgtK, vhi, t, next)
		a.jcond(opJeqK, vhi, next, f)
		a.load(lo)
		op := uint16(opJgtK)
		if cd.op == "SCMP_CMP_GE" {
			op = opJgeK
		}
		a.jcond(op, vlo, t, f)
	case "SCMP_CMP_LT", "SCMP_CMP_LE":
		a.load(hi)
		a.jcond(opJgtK, vhi, f, next)
		a.jcond(opJeqK, vhi, next, t)
		a.load(lo)
		// LT is !GE, LE is !GT.
		op := uint16(opJgeK)
		if cd.op == "SCMP_CMP_LE" {
			op = opJgtK
		}
		a.jcond(op, vlo, f, t)
	case "SCMP_CMP_MASKED_EQ":
		mlo, mhi := vlo, vhi
		dlo, dhi := uint32(cd.two), uint32(cd.two>>32)
		a.load(hi)
		a.and(mhi)
		a.jcond(opJeqK, dhi, next, f)
		a.load(lo)
		a.and(mlo)
		a.jcond(opJeqK, dlo, t, f)
	default:
		return fmt.Errorf("unknown operator %q", cd.op)
	}
	return nil
}
