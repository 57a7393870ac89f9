// Package seccomp compiles OCI runtime-spec seccomp profiles to classic BPF
// and loads them, in pure Go (no libseccomp, no cgo, so berth stays static).
//
// Semantics follow runc + libseccomp, since profiles in the wild (moby,
// containers/common, Kubernetes) are written against them:
//
//   - the native architecture is always filtered, plus every listed one;
//     a syscall from any other ABI gets libseccomp's "bad arch" action,
//     SCMP_ACT_KILL (kill the thread);
//   - on x86_64 the x32 ABI (same AUDIT_ARCH, __X32_SYSCALL_BIT set) is a
//     separate architecture: without SCMP_ARCH_X32 its syscalls are bad-arch;
//   - SCMP_ACT_KILL means KILL_THREAD; errnoRet defaults to EPERM for ERRNO
//     and TRACE and is rejected for every other action;
//   - a rule whose action equals the default action is dropped (runc);
//   - conditions of one rule are ANDed, except that conditions repeating an
//     argument index are split into separate rules (ORed), as runc does
//     because libseccomp cannot AND two conditions on one argument;
//   - several rules for one syscall are ORed; when more than one could match,
//     the most restrictive action wins (the kernel's own precedence), so the
//     result never depends on the order of entries in the profile;
//   - a syscall name is resolved per filtered architecture; a real syscall
//     an architecture lacks is skipped there silently, and a name that no
//     architecture has is skipped with a warning (Filter.Warnings), never
//     an error;
//   - on x86 (32-bit), unconditional rules on socket and SysV IPC calls
//     also cover their socketcall(2)/ipc(2) entry points, as in libseccomp;
//   - runc's -ENOSYS stub: unless the default action is permissive (ALLOW,
//     LOG, TRACE) or already ERRNO(ENOSYS), syscall numbers above the highest
//     one the profile names get -ENOSYS instead of the default action, so
//     libc falls back from syscalls newer than the profile (clone3 and co.).
//
// The program is a balanced binary search over ranges of syscall numbers that
// share an outcome, with return instructions shared per outcome, so docker's
// default profile for x86_64+x86+x32 compiles to well under the 4096
// instruction limit and a lookup costs about log2(ranges) comparisons.
package seccomp

import (
	"fmt"
	"slices"
	"sort"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// FlagTsync is the spec string for SECCOMP_FILTER_FLAG_TSYNC, which
// runtime-spec does not define as a constant.
const FlagTsync specs.LinuxSeccompFlag = "SECCOMP_FILTER_FLAG_TSYNC"

// Filter is a compiled profile, ready to Load. It is immutable and safe to
// share; compile it once (in the parent or early in init), load it last.
type Filter struct {
	prog     []unix.SockFilter
	flags    uintptr // seccomp(2) SECCOMP_SET_MODE_FILTER flags
	listener bool
	actions  []uint32 // distinct SECCOMP_RET_* actions the program can return
	warnings []string
}

// Warnings returns what Compile skipped (unknown syscall names, flags that do
// not apply); the caller decides how to log them.
func (f *Filter) Warnings() []string { return append([]string(nil), f.warnings...) }

// Program returns a copy of the BPF program.
func (f *Filter) Program() []unix.SockFilter { return append([]unix.SockFilter(nil), f.prog...) }

// Len is the number of BPF instructions.
func (f *Filter) Len() int { return len(f.prog) }

// Flags returns the seccomp(2) flags Load passes.
func (f *Filter) Flags() uint { return uint(f.flags) }

// NeedsListener reports whether the profile uses SCMP_ACT_NOTIFY, so Load
// returns a listener fd that must be handed to the agent at listenerPath.
func (f *Filter) NeedsListener() bool { return f.listener }

type options struct {
	native       specs.Arch
	notifyBanned []string
}

// Option changes how Compile works.
type Option func(*options)

// WithNativeArch compiles for a machine of another architecture (default:
// NativeArch(), the architecture of the running binary). The result is only
// loadable on a kernel of that architecture; tests and `berth features`-like
// tooling use it.
func WithNativeArch(a specs.Arch) Option { return func(o *options) { o.native = a } }

// WithNotifyForbidden rejects profiles that use SCMP_ACT_NOTIFY on the named
// syscalls: the ones init needs after Load to hand the listener fd to the
// runtime parent, which would otherwise wait for an agent that cannot
// have the fd yet (default: "write", runc's rule, since runc's init writes
// the fd number and the parent takes it with pidfd_getfd).
func WithNotifyForbidden(names ...string) Option {
	return func(o *options) { o.notifyBanned = names }
}

// condition is one argument comparison.
type condition struct {
	index uint
	op    specs.LinuxSeccompOperator
	value uint64 // the mask for MASKED_EQ
	two   uint64 // the datum for MASKED_EQ
}

type rule struct {
	action uint32
	conds  []condition
}

// precedence orders actions like the kernel does when several filters
// disagree: lower sorts first and wins. KILL_PROCESS (0x80000000) is
// negative as an int32, which is exactly the kernel's trick.
func precedence(action uint32) int32 { return int32(action & unix.SECCOMP_RET_ACTION_FULL) }

var actionNames = map[specs.LinuxSeccompAction]uint32{
	specs.ActKill:        unix.SECCOMP_RET_KILL_THREAD,
	specs.ActKillThread:  unix.SECCOMP_RET_KILL_THREAD,
	specs.ActKillProcess: unix.SECCOMP_RET_KILL_PROCESS,
	specs.ActTrap:        unix.SECCOMP_RET_TRAP,
	specs.ActErrno:       unix.SECCOMP_RET_ERRNO,
	specs.ActTrace:       unix.SECCOMP_RET_TRACE,
	specs.ActAllow:       unix.SECCOMP_RET_ALLOW,
	specs.ActLog:         unix.SECCOMP_RET_LOG,
	specs.ActNotify:      unix.SECCOMP_RET_USER_NOTIF,
}

var operators = map[specs.LinuxSeccompOperator]bool{
	specs.OpNotEqual: true, specs.OpLessThan: true, specs.OpLessEqual: true, specs.OpEqualTo: true,
	specs.OpGreaterEqual: true, specs.OpGreaterThan: true, specs.OpMaskedEqual: true,
}

var flagBits = map[specs.LinuxSeccompFlag]uintptr{
	FlagTsync:                              unix.SECCOMP_FILTER_FLAG_TSYNC,
	specs.LinuxSeccompFlagSpecAllow:        unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
	specs.LinuxSeccompFlagLog:              unix.SECCOMP_FILTER_FLAG_LOG,
	specs.LinuxSeccompFlagWaitKillableRecv: unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
}

// actionValue converts an action and its optional errnoRet to SECCOMP_RET_*.
func actionValue(act specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	v, ok := actionNames[act]
	if !ok {
		return 0, fmt.Errorf("unknown action %q", act)
	}
	switch act {
	case specs.ActErrno, specs.ActTrace:
		e := uint(unix.EPERM)
		if errnoRet != nil {
			e = *errnoRet
		}
		if e > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("errnoRet %d of %s does not fit in 16 bits", e, act)
		}
		return v | uint32(e), nil
	default:
		if errnoRet != nil {
			return 0, fmt.Errorf("errnoRet is only valid with %s and %s, not %s", specs.ActErrno, specs.ActTrace, act)
		}
		return v, nil
	}
}

// Compile validates cfg and compiles it to BPF. Errors name the offending
// field; unknown syscall names are not errors but Warnings.
func Compile(cfg *specs.LinuxSeccomp, opts ...Option) (*Filter, error) {
	o := options{native: NativeArch(), notifyBanned: []string{"write"}}
	for _, opt := range opts {
		opt(&o)
	}
	if cfg == nil {
		return nil, fmt.Errorf("seccomp: no profile")
	}
	c := &compiler{cfg: cfg, f: &Filter{}, notifyBanned: o.notifyBanned}
	if err := c.run(o.native); err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	return c.f, nil
}

type compiler struct {
	cfg      *specs.LinuxSeccomp
	f        *Filter
	defAct   uint32
	badArch  uint32
	enosys   bool
	arches   []*archInfo
	native   *archInfo
	rules    []namedRule
	actions  map[uint32]bool
	warnSeen map[string]bool

	notifyBanned []string
}

type namedRule struct {
	name string
	idx  int      // in sysNames, -1 if no arch has the name
	mux  *muxCall // how x86 reaches it through socketcall/ipc, if it does
	rule
	dropped bool // same as the default action: counts for the stub, emits nothing
}

func (c *compiler) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if c.warnSeen[msg] {
		return
	}
	c.warnSeen[msg] = true
	c.f.warnings = append(c.f.warnings, msg)
}

func (c *compiler) run(native specs.Arch) error {
	c.warnSeen = map[string]bool{}
	c.actions = map[uint32]bool{}
	cfg := c.cfg
	var err error
	if c.defAct, err = actionValue(cfg.DefaultAction, cfg.DefaultErrnoRet); err != nil {
		return fmt.Errorf("defaultAction: %w", err)
	}
	if cfg.DefaultAction == specs.ActNotify {
		// The notify listener has to be passed on by syscalls made after
		// the filter is loaded; notifying all of them would deadlock init.
		return fmt.Errorf("defaultAction: %s cannot be the default action", specs.ActNotify)
	}
	c.badArch = unix.SECCOMP_RET_KILL_THREAD
	c.actions[c.defAct] = true
	switch cfg.DefaultAction {
	case specs.ActAllow, specs.ActLog, specs.ActTrace:
		// Permissive defaults: a new syscall already works; a tracer
		// should see it rather than a fabricated -ENOSYS.
	default:
		c.enosys = c.defAct != unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)
	}
	if cfg.ListenerMetadata != "" && cfg.ListenerPath == "" {
		return fmt.Errorf("listenerMetadata is set without listenerPath")
	}

	// Flags.
	for _, fl := range cfg.Flags {
		bit, ok := flagBits[fl]
		if !ok {
			return fmt.Errorf("flags: unknown seccomp flag %q", fl)
		}
		c.f.flags |= bit
	}

	// Architectures: native first, then the listed ones in order.
	nat := lookupArch(native)
	if nat == nil || nat.table == nil {
		return fmt.Errorf("native architecture %q is not supported", native)
	}
	c.native = nat
	c.arches = []*archInfo{nat}
	for _, name := range cfg.Architectures {
		a := lookupArch(name)
		if a == nil {
			return fmt.Errorf("architectures: unknown architecture %q", name)
		}
		if a.table == nil {
			return fmt.Errorf("architectures: %s is not supported by berth (no syscall table for it)", name)
		}
		dup := false
		for _, have := range c.arches {
			dup = dup || have == a
		}
		if !dup {
			c.arches = append(c.arches, a)
		}
	}

	// Rules.
	n := 0
	for _, sc := range cfg.Syscalls {
		n += len(sc.Names)
	}
	c.rules = make([]namedRule, 0, n)
	for i, sc := range cfg.Syscalls {
		if err := c.addSyscall(i, sc); err != nil {
			return err
		}
	}
	if c.f.listener && cfg.ListenerPath == "" {
		return fmt.Errorf("%s is used but listenerPath is empty: nothing could answer the notifications", specs.ActNotify)
	}
	if c.f.flags&unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV != 0 && !c.f.listener {
		// The kernel rejects the flag without a listener; it means nothing then.
		c.warn("seccomp flag %s ignored: no syscall uses %s", specs.LinuxSeccompFlagWaitKillableRecv, specs.ActNotify)
		c.f.flags &^= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
	}
	// TSYNC always, as libseccomp-golang does for runc: a Go process is
	// multi-threaded, and a filter on one thread only would be lost if
	// execve ran on another. With a listener the kernel needs TSYNC_ESRCH to
	// report sync failures as an error instead of the listener fd slot.
	c.f.flags |= unix.SECCOMP_FILTER_FLAG_TSYNC
	if c.f.listener {
		c.f.flags |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
	}

	prog, err := c.generate()
	if err != nil {
		return err
	}
	c.f.prog = prog
	for a := range c.actions {
		c.f.actions = append(c.f.actions, a&unix.SECCOMP_RET_ACTION_FULL)
	}
	sort.Slice(c.f.actions, func(i, j int) bool { return c.f.actions[i] < c.f.actions[j] })
	c.f.actions = dedupe(c.f.actions)
	return nil
}

func dedupe(s []uint32) []uint32 {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func (c *compiler) addSyscall(i int, sc specs.LinuxSyscall) error {
	where := fmt.Sprintf("syscalls[%d]", i)
	if len(sc.Names) == 0 {
		return fmt.Errorf("%s: names must contain at least one syscall", where)
	}
	act, err := actionValue(sc.Action, sc.ErrnoRet)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	conds := make([]condition, 0, len(sc.Args))
	var seen [6]int
	split := false
	for j, a := range sc.Args {
		if a.Index >= 6 {
			return fmt.Errorf("%s.args[%d]: index %d out of range (a syscall has 6 arguments)", where, j, a.Index)
		}
		if !operators[a.Op] {
			return fmt.Errorf("%s.args[%d]: unknown operator %q", where, j, a.Op)
		}
		seen[a.Index]++
		split = split || seen[a.Index] > 1
		conds = append(conds, condition{index: a.Index, op: a.Op, value: a.Value, two: a.ValueTwo})
	}
	var rules []rule
	if split {
		for _, cd := range conds {
			rules = append(rules, rule{action: act, conds: []condition{cd}})
		}
	} else {
		rules = []rule{{action: act, conds: conds}}
	}
	for _, name := range sc.Names {
		if name == "" {
			return fmt.Errorf("%s: empty syscall name", where)
		}
		if sc.Action == specs.ActNotify && slices.Contains(c.notifyBanned, name) {
			// init reports the listener with this syscall after
			// loading; notifying it would hang the start.
			return fmt.Errorf("%s: %s cannot be used for the %s syscall", where, specs.ActNotify, name)
		}
		dropped := act == c.defAct
		if !dropped {
			c.actions[act] = true
			if sc.Action == specs.ActNotify {
				c.f.listener = true
			}
		}
		idx := nameIndex(name)
		var mux *muxCall
		if m, ok := muxCalls[name]; ok {
			mux = &m
		}
		for _, r := range rules {
			c.rules = append(c.rules, namedRule{name: name, idx: idx, mux: mux, rule: r, dropped: dropped})
		}
	}
	return nil
}
