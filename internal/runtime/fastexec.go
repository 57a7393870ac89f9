package runtime

import (
	"encoding/binary"
	"math"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/initproc"
	"berth/internal/linux/caps"
	"berth/internal/linux/seccomp"
)

// The fast path of exec. A Go process costs milliseconds to start here,
// more than everything an exec process does, so when that work is only
// syscalls the child never starts Go: the nsenter constructor reads this
// plan from the init pipe and finishes the process in C
// (internal/nsenter/execplan.c, which mirrors internal/initproc's exec path
// step by step). Anything else (a terminal, an AppArmor or SELinux label, a
// seccomp notify listener, ids or rlimits the Go path would refuse) takes
// the Go path, which also produces those errors.
//
// The wire format is shared with execplan.c: native-endian u32/u64 fields
// and strings as a u32 length, the bytes and a NUL, after a u32 total length.
// EnvNoFastExec=1 sends every exec process down the Go path (for
// comparisons and tests of both).
const EnvNoFastExec = "BERTH_NO_FAST_EXEC"

const (
	planMagic       = 0x42585031
	planNNP         = 1
	planUserNS      = 2
	planUmask       = 4
	planSeccomp     = 8
	planSeccompLate = 16
)

type planWriter struct{ b []byte }

func (w *planWriter) u32(v uint32) { w.b = binary.NativeEndian.AppendUint32(w.b, v) }
func (w *planWriter) u64(v uint64) { w.b = binary.NativeEndian.AppendUint64(w.b, v) }
func (w *planWriter) str(s string) {
	w.u32(uint32(len(s)))
	w.b = append(append(w.b, s...), 0)
}
func (w *planWriter) strs(v []string) {
	w.u32(uint32(len(v)))
	for _, s := range v {
		w.str(s)
	}
}

// fastExecPlan returns the plan for p, or ok=false when p needs the Go path.
// filter is the compiled seccomp filter (nil without one); warnings are what
// the Go path would have reported in Ready.
func fastExecPlan(p *specs.Process, userNS bool, keepFds int, filter *seccomp.Filter) (plan []byte, warnings []string, ok bool) {
	if os.Getenv(EnvNoFastExec) == "1" {
		return nil, nil, false
	}
	w := &planWriter{}
	w.u32(planMagic)
	if warnings, ok = w.process(p, nil, userNS, false, keepFds, filter); !ok {
		return nil, nil, false
	}
	return w.finish(), warnings, true
}

// finish prefixes the plan with its length.
func (w *planWriter) finish() []byte {
	out := binary.NativeEndian.AppendUint32(make([]byte, 0, 4+len(w.b)), uint32(len(w.b)))
	return append(out, w.b...)
}

// process encodes the process section shared by the exec and init plans
// (initproc's finalize and what precedes it), or returns ok=false when p
// needs the Go path. extraEnv is appended to p.Env (LISTEN_FDS); init
// processes get umask 022 unless the config sets one.
func (w *planWriter) process(p *specs.Process, extraEnv []string, userNS, init bool, keepFds int, filter *seccomp.Filter) (warnings []string, ok bool) {
	if p.Terminal || p.ApparmorProfile != "" || p.SelinuxLabel != "" || len(p.Args) == 0 || p.Args[0] == "" {
		return nil, false
	}
	u := p.User
	if u.UID > math.MaxInt32 || u.GID > math.MaxInt32 {
		return nil, false
	}
	if hasNUL(append(append(append([]string{p.Cwd}, p.Args...), p.Env...), extraEnv...)...) {
		return nil, false
	}
	if filter != nil && (filter.NeedsListener() || filter.Loadable() != nil) {
		return nil, false
	}
	var flags uint32
	if p.NoNewPrivileges {
		flags |= planNNP
	}
	if userNS {
		flags |= planUserNS
	}
	var umask uint32
	if u.Umask != nil {
		flags |= planUmask
		umask = *u.Umask
	} else if init {
		flags |= planUmask
		umask = 0o022
	}
	if filter != nil {
		flags |= planSeccomp
		if p.NoNewPrivileges {
			flags |= planSeccompLate
		}
	}
	w.u32(flags)
	w.u32(u.UID)
	w.u32(u.GID)
	w.u32(umask)
	var gids []uint32
	seen := map[uint32]bool{}
	for _, g := range u.AdditionalGids {
		if g > math.MaxInt32 {
			return nil, false
		}
		if !seen[g] { // the config and exec -g may both name a group
			seen[g] = true
			gids = append(gids, g)
		}
	}
	w.u32(uint32(len(gids)))
	for _, g := range gids {
		w.u32(g)
	}
	sets := caps.FromSpec(p.Capabilities)
	for _, name := range sets.Unknown {
		warnings = append(warnings, "ignoring unknown or unavailable capabilities: "+name)
	}
	w.u64(uint64(sets.Effective))
	w.u64(uint64(sets.Permitted))
	w.u64(uint64(sets.Inheritable))
	w.u64(uint64(sets.Ambient))
	last := caps.Last()
	w.u32(uint32(last))
	names := caps.Names()
	var drop []int
	for c := 0; c <= last && c < 64; c++ {
		if !sets.Bounding.Has(c) {
			drop = append(drop, c)
		}
	}
	w.u32(uint32(len(drop)))
	for _, c := range drop {
		w.u32(uint32(c))
		name := "cap " + strconv.Itoa(c)
		if c < len(names) {
			name = names[c]
		}
		w.str(name)
	}
	if len(p.Rlimits) > 64 {
		return nil, false
	}
	w.u32(uint32(len(p.Rlimits)))
	for _, rl := range p.Rlimits {
		t, known := initproc.RlimitType(rl.Type)
		if !known {
			return nil, false
		}
		w.u32(uint32(t))
		w.u64(rl.Soft)
		w.u64(rl.Hard)
	}
	w.u32(uint32(3 + keepFds))
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	w.str(cwd)
	w.str(strconv.Quote(cwd))
	w.str(strconv.Quote(p.Args[0]))
	w.strs(p.Args)
	w.strs(append(append([]string(nil), p.Env...), extraEnv...))
	if filter == nil {
		w.u32(0)
		w.u32(0)
	} else {
		prog := filter.Program()
		w.u32(uint32(filter.Flags()))
		w.u32(uint32(len(prog)))
		for _, in := range prog {
			w.b = binary.NativeEndian.AppendUint16(w.b, in.Code)
			w.b = append(w.b, in.Jt, in.Jf)
			w.u32(in.K)
		}
	}
	return warnings, true
}

func hasNUL(v ...string) bool {
	for _, s := range v {
		if strings.IndexByte(s, 0) >= 0 {
			return true
		}
	}
	return false
}
