package plan

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/caps"
	"berth/internal/linux/seccomp"
)

type processSpec struct {
	p        *specs.Process
	linux    *specs.Linux // personality, memory policy, the cpuset (may be nil)
	extraEnv []string
	userNS   bool
	init     bool // a container's init: umask 022 unless the config sets one
	keepFds  int
	filter   *seccomp.Filter
}

// attrs adds the process attributes that need privileges or must precede
// the seccomp filter (which may deny personality(2)): the CPU affinity
// (an exec's final one, or the reset of what the runtime's own affinity
// would leave: runc resets it to all CPUs, within the cgroup's cpuset),
// scheduler, I/O priority, personality and memory policy.
func (c *compiler) attrs(ps processSpec) error {
	p, l := ps.p, ps.linux
	aff, err := ExecAffinity(p.ExecCPUAffinity)
	if err != nil {
		return err
	}
	switch {
	case ps.init || aff.Initial == nil && aff.Final == nil:
		c.add(Affinity{Mask: allCPUs(), WarnOnly: true, Err: "resetting the CPU affinity failed -- the container process may inherit the runtime's CPU affinity"})
	case aff.Final != nil:
		c.add(Affinity{Mask: aff.Final, Err: "error setting final CPU affinity"})
	}
	cpuset := ""
	if l != nil && l.Resources != nil && l.Resources.CPU != nil {
		cpuset = l.Resources.CPU.Cpus
	}
	sched, err := scheduler(p.Scheduler, cpuset)
	if err != nil {
		return err
	}
	if sched != nil {
		c.add(*sched)
	}
	io, err := ioPriority(p.IOPriority)
	if err != nil {
		return err
	}
	if io != nil {
		c.add(*io)
	}
	if l == nil {
		return nil
	}
	pers, warning, err := personality(l.Personality)
	if err != nil {
		return err
	}
	if warning != "" {
		c.warn("%s", warning)
	}
	if pers != nil {
		c.add(*pers)
	}
	mp, err := memoryPolicy(l.MemoryPolicy)
	if err != nil {
		return err
	}
	if mp != nil {
		c.add(*mp)
	}
	return nil
}

// rlimits maps an OCI rlimit name to its resource number.
var rlimits = map[string]uint32{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// process adds the process section, shared by init and exec processes:
// the environment, the executable lookup, fds and stdio, then the drop to
// the container's credentials (non-dumpable, cwd check, the bounding set,
// rlimits, groups and ids with keepcaps, umask, cwd, capabilities,
// no_new_privs), Ready, what runs between Ready and execve (after: init's
// wait on exec.fifo and startContainer hooks) and execve. The seccomp
// filter loads before the capability drop without no_new_privs (loading
// needs CAP_SYS_ADMIN then), right before execve with it, and before Ready
// when its notify listener must reach the runtime.
func (c *compiler) process(ps processSpec, after func() error) error {
	p, u := ps.p, ps.p.User
	if len(p.Args) == 0 || p.Args[0] == "" {
		return fmt.Errorf("args must not be empty")
	}
	// CVE-2024-40635: ids above MaxInt32 wrap around; 4294967295 is -1 to
	// setresuid/setresgid, which means "leave unchanged": root.
	const maxID = math.MaxInt32
	if u.UID > maxID {
		return fmt.Errorf("invalid uid %d: must be at most %d", u.UID, maxID)
	}
	if u.GID > maxID {
		return fmt.Errorf("invalid gid %d: must be at most %d", u.GID, maxID)
	}
	gids := make([]uint32, 0, len(u.AdditionalGids))
	seen := map[uint32]bool{}
	for _, g := range u.AdditionalGids {
		if g > maxID {
			return fmt.Errorf("invalid additional gid %d: must be at most %d", g, maxID)
		}
		if !seen[g] { // the config and exec -g may both name a group
			seen[g] = true
			gids = append(gids, g)
		}
	}
	env, fillHome, err := prepareEnv(append(append([]string(nil), p.Env...), ps.extraEnv...))
	if err != nil {
		return err
	}
	if err := noNUL("process", append([]string{p.Cwd}, p.Args...)...); err != nil {
		return err
	}
	var limits []Rlimit
	for _, rl := range p.Rlimits {
		t, ok := rlimits[rl.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit type %q", rl.Type)
		}
		limits = append(limits, Rlimit{Resource: t, Soft: rl.Soft, Hard: rl.Hard, Err: fmt.Sprintf("error setting rlimit type %d", t)})
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	c.add(
		Env{Env: env, FillHome: fillHome, UID: u.UID},
		Lookup{Args: p.Args, Cwd: p.Cwd, Quote: strconv.Quote(p.Args[0])},
		// CVE-2024-21626: nothing the runtime held (it leaked a cgroup dir
		// fd) may survive execve; close_range needs no /proc.
		CloexecFrom{From: uint32(3 + ps.keepFds)},
		FixStdio{UID: u.UID, GID: u.GID},
		// CVE-2016-9962: from the capability drop until execve the process
		// has the container's uid and capabilities but still holds runtime
		// fds (exec.fifo, the init pipe); while dumpable, container root
		// could ptrace it or read /proc/PID/fd.
		NonDumpable{},
		// Checked while privileged and before any seccomp filter (which may
		// deny getcwd): a cwd outside the root is a leaked fd.
		CheckCwd{Cwd: cwd, Err: "current working directory is outside of container mount namespace root -- possible container breakout detected"},
	)
	if err := c.attrs(ps); err != nil {
		return err
	}
	filter, err := c.seccomp(ps.filter)
	if err != nil {
		return err
	}
	late := filter != nil && p.NoNewPrivileges && !filter.Listener
	if filter != nil && !late && !p.NoNewPrivileges {
		c.add(*filter) // a privileged load: still holding CAP_SYS_ADMIN
	}
	sets := caps.FromSpec(p.Capabilities, c.host.CapLast)
	for _, name := range sets.Unknown {
		c.warn("ignoring unknown or unavailable capabilities: %s", name)
	}
	last := c.host.CapLast
	names := caps.Names()
	var drop []Cap
	for n := 0; n <= last && n < 64; n++ {
		if !sets.Bounding.Has(n) {
			name := "cap " + strconv.Itoa(n)
			if n < len(names) {
				name = names[n]
			}
			drop = append(drop, Cap{Number: uint32(n), Name: name})
		}
	}
	c.add(DropBounding{Caps: drop}, KeepCaps{On: true})
	// Rlimits as late as possible while still privileged: raising a hard
	// limit needs CAP_SYS_RESOURCE.
	if len(limits) > 0 {
		c.add(Rlimits{Limits: limits})
	}
	c.add(
		Setgroups{SkipIfDenied: ps.userNS, Gids: gids},
		Setresgid{ID: u.GID, Err: fmt.Sprintf("setgid %d", u.GID)},
		Setresuid{ID: u.UID, Err: fmt.Sprintf("setuid %d", u.UID)},
	)
	if u.Umask != nil {
		c.add(Umask{Mask: *u.Umask})
	} else if ps.init {
		c.add(Umask{Mask: 0o022})
	}
	c.add(
		// Again as the container user: the cwd must be reachable by it.
		Chdir{Dir: cwd, Err: fmt.Sprintf("chdir to cwd (%q) set in config.json failed", cwd)},
		Capset{Effective: uint64(sets.Effective), Permitted: uint64(sets.Permitted), Inheritable: uint64(sets.Inheritable), Ambient: uint64(sets.Ambient), Last: uint32(last)},
		KeepCaps{On: false},
	)
	if p.NoNewPrivileges {
		c.add(NoNewPrivs{})
		if filter != nil && !late {
			c.add(*filter)
		}
	}
	c.add(Ready{})
	if after != nil {
		if err := after(); err != nil {
			return err
		}
	}
	if late {
		c.add(*filter)
	}
	c.add(Execve{})
	return nil
}

// seccomp turns the compiled filter into its step, with the load errors
// worded as the seccomp package words them. A filter needing an action
// this kernel lacks is refused here, before anything runs.
func (c *compiler) seccomp(f *seccomp.Filter) (*Seccomp, error) {
	if f == nil {
		return nil, nil
	}
	if err := f.Loadable(); err != nil {
		return nil, err
	}
	return &Seccomp{
		Flags: uint32(f.Flags()), Listener: f.NeedsListener(),
		EACCES:   f.LoadError(unix.EACCES).Error(),
		ESRCH:    f.LoadError(unix.ESRCH).Error(),
		EINVAL:   f.LoadError(unix.EINVAL).Error(),
		OtherErr: "seccomp: loading filter",
		Program:  f.Program(),
	}, nil
}

// prepareEnv is runc's: each variable once, its last value at the place of
// its last occurrence; an empty HOME counts as unset (HOME comes from the
// container's /etc/passwd then: fillHome).
func prepareEnv(env []string) (out []string, fillHome bool, err error) {
	fillHome = true
	seen := make(map[string]bool, len(env))
	for n := len(env) - 1; n >= 0; n-- {
		kv := env[n]
		i := strings.IndexByte(kv, '=')
		switch {
		case i < 0:
			return nil, false, errors.New("invalid environment variable: missing '='")
		case i == 0:
			return nil, false, errors.New("invalid environment variable: name cannot be empty")
		}
		key, val := kv[:i], kv[i+1:]
		if seen[key] {
			continue
		}
		seen[key] = true
		if strings.IndexByte(kv, 0) >= 0 {
			return nil, false, fmt.Errorf("invalid environment variable %q: contains nul byte (\\x00)", key)
		}
		if key == "HOME" {
			if val == "" {
				continue
			}
			fillHome = false
		}
		out = append(out, kv)
	}
	slices.Reverse(out)
	return out, fillHome, nil
}
