// Package devices turns OCI device cgroup rules into the state the kernel
// enforces: a default (allow or deny) plus exceptions. The same reduction
// drives both drivers, so a rule list means the same on v1 (devices.allow /
// devices.deny writes) and on v2 (an eBPF program, see Program).
package devices

import (
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Wildcard is the major/minor value meaning "any".
const Wildcard int64 = -1

// Access bits, as the kernel's BPF_DEVCG_ACC_* values.
const (
	AccMknod uint32 = 1
	AccRead  uint32 = 2
	AccWrite uint32 = 4
	AccAll          = AccMknod | AccRead | AccWrite
)

// Rule is one normalised device rule.
type Rule struct {
	Type   byte // 'a', 'b' or 'c'
	Major  int64
	Minor  int64
	Access uint32
	Allow  bool
}

// String renders the rule as a v1 devices.allow/deny line ("c 1:3 rwm").
func (r Rule) String() string {
	num := func(n int64) string {
		if n == Wildcard {
			return "*"
		}
		return fmt.Sprint(n)
	}
	var acc strings.Builder
	if r.Access&AccRead != 0 {
		acc.WriteByte('r')
	}
	if r.Access&AccWrite != 0 {
		acc.WriteByte('w')
	}
	if r.Access&AccMknod != 0 {
		acc.WriteByte('m')
	}
	return fmt.Sprintf("%c %s:%s %s", r.Type, num(r.Major), num(r.Minor), acc.String())
}

func (r Rule) isReset() bool {
	return r.Type == 'a' && r.Major == Wildcard && r.Minor == Wildcard && r.Access == AccAll
}

func (r Rule) sameDevice(o Rule) bool {
	return r.Type == o.Type && r.Major == o.Major && r.Minor == o.Minor
}

// covers reports whether r names every device o names.
func (r Rule) covers(o Rule) bool {
	if r.Type != 'a' && r.Type != o.Type {
		return false
	}
	if r.Major != Wildcard && r.Major != o.Major {
		return false
	}
	return r.Minor == Wildcard || r.Minor == o.Minor
}

// FromSpec validates and normalises OCI rules.
func FromSpec(in []specs.LinuxDeviceCgroup) ([]Rule, error) {
	out := make([]Rule, 0, len(in))
	for i, d := range in {
		r := Rule{Allow: d.Allow, Major: Wildcard, Minor: Wildcard}
		switch d.Type {
		case "", "a":
			r.Type = 'a'
		case "b", "c":
			r.Type = d.Type[0]
		default:
			return nil, fmt.Errorf("device rule %d: invalid type %q (want a, b or c)", i, d.Type)
		}
		if d.Major != nil {
			if *d.Major < 0 && *d.Major != Wildcard {
				return nil, fmt.Errorf("device rule %d: invalid major %d", i, *d.Major)
			}
			r.Major = *d.Major
		}
		if d.Minor != nil {
			if *d.Minor < 0 && *d.Minor != Wildcard {
				return nil, fmt.Errorf("device rule %d: invalid minor %d", i, *d.Minor)
			}
			r.Minor = *d.Minor
		}
		// dev_t has 12 bits of major and 20 of minor.
		if r.Major > 0xfff || r.Minor > 0xfffff {
			return nil, fmt.Errorf("device rule %d: major %d / minor %d out of range", i, r.Major, r.Minor)
		}
		acc := d.Access
		if acc == "" {
			acc = "rwm"
		}
		for _, ch := range acc {
			switch ch {
			case 'r':
				r.Access |= AccRead
			case 'w':
				r.Access |= AccWrite
			case 'm':
				r.Access |= AccMknod
			default:
				return nil, fmt.Errorf("device rule %d: invalid access %q (want letters of rwm)", i, d.Access)
			}
		}
		// "a" means every device: majors and minors cannot narrow it (the
		// kernel rejects "a 1:3"), so reject it here with a clear message.
		if r.Type == 'a' && (r.Major != Wildcard || r.Minor != Wildcard) {
			return nil, fmt.Errorf("device rule %d: type \"a\" cannot have a major or minor", i)
		}
		out = append(out, r)
	}
	return out, nil
}

// State is what the kernel enforces: DefaultAllow, with each exception
// flipping that answer for the devices and access bits it names. Exceptions
// all have Allow == !DefaultAllow.
type State struct {
	DefaultAllow bool
	Exceptions   []Rule
}

// Reduce applies rules in order, starting from deny-all (runc's starting point
// on both drivers), with the v1 kernel's semantics: a full "a *:* rwm" rule
// resets the default and drops every exception; a rule that agrees with the
// default removes access from the exactly matching exception; a rule that
// disagrees adds an exception.
//
// A rule that agrees with the default but names a subset of a wildcard
// exception ("allow c *:* rwm" then "deny c 1:1 rwm" in deny-by-default mode)
// cannot be expressed: the v1 kernel silently keeps the wider exception, which
// would leave /dev/mem open. It is rejected instead.
func Reduce(rules []Rule) (State, error) {
	var s State
	for i, r := range rules {
		if r.isReset() {
			s = State{DefaultAllow: r.Allow}
			continue
		}
		if r.Allow != s.DefaultAllow {
			merged := false
			for j := range s.Exceptions {
				if s.Exceptions[j].sameDevice(r) {
					s.Exceptions[j].Access |= r.Access
					merged = true
					break
				}
			}
			if !merged {
				r.Allow = !s.DefaultAllow
				s.Exceptions = append(s.Exceptions, r)
			}
			continue
		}
		kept := s.Exceptions[:0]
		for _, e := range s.Exceptions {
			// A rule covering the exception (same device, or a wildcard
			// over it) takes its access bits away.
			if r.covers(e) {
				e.Access &^= r.Access
				if e.Access == 0 {
					continue
				}
			} else if e.covers(r) && e.Access&r.Access != 0 {
				return State{}, fmt.Errorf("device rule %d (%s %s) punches a hole in the wider rule %q, which cgroups cannot express",
					i, verb(r.Allow), r, e.String())
			}
			kept = append(kept, e)
		}
		s.Exceptions = kept
	}
	return s, nil
}

func verb(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// Allowed evaluates s for one access, as the kernel does: in deny-by-default
// mode an exception must grant every requested bit; in allow-by-default mode
// any requested bit named by an exception denies.
func (s State) Allowed(typ byte, major, minor int64, access uint32) bool {
	dev := Rule{Type: typ, Major: major, Minor: minor}
	for _, e := range s.Exceptions {
		if !e.covers(dev) {
			continue
		}
		if s.DefaultAllow {
			if e.Access&access != 0 {
				return false
			}
		} else if access&^e.Access == 0 {
			return true
		}
	}
	return s.DefaultAllow
}

// DefaultAllowed are the devices runc lets every container use on top of its
// spec's rules (runc specconv's AllowedDevices): mknod of anything, the
// /dev/null family, ttys, ptys and /dev/net/tun. A runtime appends them to the
// spec's rules before Set, as runc does.
var DefaultAllowed = []specs.LinuxDeviceCgroup{
	{Allow: true, Type: "c", Major: i64(Wildcard), Minor: i64(Wildcard), Access: "m"},
	{Allow: true, Type: "b", Major: i64(Wildcard), Minor: i64(Wildcard), Access: "m"},
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(3), Access: "rwm"},          // /dev/null
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(8), Access: "rwm"},          // /dev/random
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(7), Access: "rwm"},          // /dev/full
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(0), Access: "rwm"},          // /dev/tty
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(5), Access: "rwm"},          // /dev/zero
	{Allow: true, Type: "c", Major: i64(1), Minor: i64(9), Access: "rwm"},          // /dev/urandom
	{Allow: true, Type: "c", Major: i64(136), Minor: i64(Wildcard), Access: "rwm"}, // /dev/pts/*
	{Allow: true, Type: "c", Major: i64(5), Minor: i64(2), Access: "rwm"},          // /dev/ptmx
	{Allow: true, Type: "c", Major: i64(10), Minor: i64(200), Access: "rwm"},       // /dev/net/tun
}

func i64(v int64) *int64 { return &v }
