// Package plan compiles a container's setup into one typed plan: every
// step of a container's init (its root filesystem, names, hooks, console,
// sysctls, masks) and of its process (environment, executable lookup,
// capabilities, ids, rlimits, seccomp, cwd), in order, with resolved flags
// and the error text each step reports. The parent (internal/runtime)
// compiles and sends it; one executor in the nsenter constructor
// (internal/nsenter) carries it out before the Go runtime would start, for
// every configuration, so there is one implementation of each step.
//
// The brain is here: which steps run, in which order, with which values
// and error texts, is decided by pure Go that unit tests run without root.
// The executor only performs steps and fills in errno texts.
package plan

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/rootfs"
	"berth/internal/linux/seccomp"
)

// Init is what the runtime knows about a container's init when it
// compiles its plan.
type Init struct {
	ID, Bundle, Rootfs string
	Spec               *specs.Spec
	// Namespaces: the container has a mount namespace (new or joined); a
	// new UTS namespace; a user namespace (new or joined); a cgroup
	// namespace; a new cgroup namespace init unshares once placed.
	MountNS, NewUTSNS, UserNS, CgroupNS, UnshareCgroupNS bool
	// MountSources: the parent answers the executor's mount source
	// requests (it has the host's privileges: not rootless). Without it
	// idmapped mounts are refused.
	MountSources bool
	// CgroupPaths maps a v1 controller, or "" for the unified hierarchy, to
	// the container's cgroup directory.
	CgroupPaths map[string]string
	// PlacedEarly: wait for placement before the mounts (a unified host,
	// where the cgroup namespace must exist before cgroup2 is mounted).
	PlacedEarly  bool
	NoPivot      bool
	NoNewKeyring bool
	// ParentHooks: prestart or createRuntime hooks exist; init stops for
	// the parent to run them.
	ParentHooks bool
	// File descriptors in the child: exec.fifo, the console socket (-1
	// without a terminal), how many from 3 up stay open (LISTEN_FDS and
	// --preserve-fds).
	FifoFd, ConsoleFd, KeepFds int
	// ExtraEnv is appended to the process env (LISTEN_FDS).
	ExtraEnv []string
	// Filter is the compiled seccomp filter, nil without one.
	Filter *seccomp.Filter
	Host   *Host
}

// Exec is what the runtime knows about an exec process.
type Exec struct {
	Process *specs.Process
	// Linux is the container's config (personality, memory policy and the
	// cpuset apply to its exec processes too).
	Linux *specs.Linux
	// UserNS: the container has a user namespace.
	UserNS    bool
	ConsoleFd int
	KeepFds   int
	Filter    *seccomp.Filter
	Host      *Host
}

// Result is a compiled plan and the warnings compiling it found (the
// runtime logs them, as runc logs the same).
type Result struct {
	Plan     *Plan
	Warnings []string
}

type compiler struct {
	steps    []Step
	warnings []string
	host     *Host
	// devReadonly: the config's /dev tmpfs is read-only, made so after
	// pivot_root.
	devReadonly bool
}

func (c *compiler) add(s ...Step) { c.steps = append(c.steps, s...) }

func (c *compiler) warn(format string, a ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf(format, a...))
}

func (c *compiler) result() *Result {
	return &Result{Plan: &Plan{Steps: c.steps}, Warnings: c.warnings}
}

// CompileInit compiles the plan of a container's init. The order is
// runc's: mounts, devices and names; placement in the cgroups; the
// prestart/createRuntime stop; createContainer hooks; pivot_root; the
// session and console; sysctls, read-only and masked paths, read-only
// root; oom score, keyring, LSM labels; then the process section, Ready,
// the wait on exec.fifo, startContainer hooks and execve.
func CompileInit(in *Init) (*Result, error) {
	s, p := in.Spec, in.Spec.Process
	if p == nil {
		return nil, errors.New("no process in config")
	}
	if s.Linux == nil {
		return nil, errors.New("linux section is missing in config.json")
	}
	if err := checkStrings(s); err != nil {
		return nil, err
	}
	c := &compiler{host: in.Host}
	c.add(FdDir{})
	placed := WaitPlaced{UnshareErr: "unshare cgroup namespace", Unexpected: "unexpected message while waiting for cgroup placement"}
	if in.UnshareCgroupNS {
		placed.Unshare = unix.CLONE_NEWCGROUP
	}
	if in.PlacedEarly {
		c.add(placed)
	}
	if in.MountNS {
		if err := c.rootfs(in); err != nil {
			return nil, err
		}
	}
	if in.NewUTSNS {
		if s.Hostname != "" {
			c.add(Sethostname{Name: s.Hostname, Err: "sethostname"})
		}
		if s.Domainname != "" {
			c.add(Setdomainname{Name: s.Domainname, Err: "setdomainname"})
		}
	}
	if !in.PlacedEarly {
		c.add(placed)
	}
	if in.ParentHooks {
		c.add(HooksSync{})
	}
	hs := s.Hooks
	if hs != nil {
		if err := c.hooks("createContainer", hs.CreateContainer, hookState(in), false); err != nil {
			return nil, err
		}
	}
	switch {
	case !in.MountNS:
		c.add(Chroot{Rootfs: in.Rootfs})
	default:
		if p.Cwd != "" && p.Cwd != "/" {
			// A cwd the image lacks is created, as runc does.
			c.add(MkdirInRoot{Path: p.Cwd, Err: "create cwd " + p.Cwd})
		}
		if in.NoPivot {
			mounts, err := in.Host.Mounts()
			if err != nil {
				return nil, fmt.Errorf("read mount table: %w", err)
			}
			c.add(MoveRoot{Rootfs: in.Rootfs, Detach: rootfs.HostProcSys(filepath.Clean(in.Rootfs), mounts)})
		} else {
			c.add(PivotRoot{Rootfs: in.Rootfs})
		}
	}
	// init leads a session of its own.
	c.add(Setsid{})
	if p.Terminal {
		c.console(in.ConsoleFd, p, in.MountNS)
	}
	keys := make([]string, 0, len(s.Linux.Sysctl))
	for k := range s.Linux.Sysctl {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.add(Sysctl{Key: k, Path: rootfs.SysctlPath(k), Value: s.Linux.Sysctl[k]})
	}
	if in.MountNS {
		for _, path := range s.Linux.ReadonlyPaths {
			c.add(ReadonlyPath{Path: path})
		}
		if len(s.Linux.MaskedPaths) > 0 {
			mp := MaskPaths{Paths: dedupePaths(s.Linux.MaskedPaths)}
			if s.Linux.MountLabel != "" {
				mp.TmpfsData = "context=" + s.Linux.MountLabel
			}
			c.add(mp)
		}
		if c.devReadonly {
			c.add(RemountReadonly{Path: "/dev"})
		}
		if s.Root != nil && s.Root.Readonly {
			c.add(RemountReadonly{Path: "/"})
		}
	}
	if p.OOMScoreAdj != nil {
		c.add(ProcWrite{Path: "oom_score_adj", Data: strconv.Itoa(*p.OOMScoreAdj), Err: "set oom_score_adj"})
	}
	if !in.NoNewKeyring {
		c.add(JoinKeyring{Name: "_ses." + in.ID})
	}
	c.labels(p)
	ps := processSpec{p: p, linux: s.Linux, extraEnv: in.ExtraEnv, userNS: in.UserNS, init: true, keepFds: in.KeepFds, filter: in.Filter}
	after := func() error {
		c.add(WaitStart{FifoFd: uint32(in.FifoFd)})
		if hs != nil {
			return c.hooks("startContainer", hs.StartContainer, hookState(in), false)
		}
		return nil
	}
	if err := c.process(ps, after); err != nil {
		return nil, err
	}
	return c.result(), nil
}

// CompileExec compiles the plan of an exec process: it has joined every
// namespace of the container (so its root is the container's) and sets up
// only the process.
func CompileExec(in *Exec) (*Result, error) {
	p := in.Process
	if p == nil {
		return nil, errors.New("no process")
	}
	c := &compiler{host: in.Host}
	if p.Terminal {
		// Only to take a controlling terminal: an exec process may already
		// lead its session (a failure is harmless then).
		c.add(Setsid{IgnoreError: true})
		c.console(in.ConsoleFd, p, false)
	}
	c.labels(p)
	ps := processSpec{p: p, linux: in.Linux, userNS: in.UserNS, keepFds: in.KeepFds, filter: in.Filter}
	if err := c.process(ps, nil); err != nil {
		return nil, err
	}
	return c.result(), nil
}

// CompileHooks compiles a plan that runs hooks where the runtime runs
// (prestart, createRuntime, poststart, poststop: in the runtime's
// namespaces) and exits; the state's Pid is kept as given.
func CompileHooks(kind string, hs []specs.Hook, st specs.State) (*Result, error) {
	c := &compiler{}
	if err := c.hooks(kind, hs, st, true); err != nil {
		return nil, err
	}
	c.add(Ready{}, Exit{})
	return c.result(), nil
}

func hookState(in *Init) specs.State {
	return specs.State{
		Version: specs.Version, ID: in.ID, Status: specs.StateCreated,
		Bundle: in.Bundle, Annotations: in.Spec.Annotations,
	}
}

// hooks adds one RunHook per hook. The error prefix names the hook kind
// and index the way runc's does ("error running prestart hook #0: ..."),
// which tests and users match.
func (c *compiler) hooks(kind string, hs []specs.Hook, st specs.State, keepPid bool) error {
	for i, h := range hs {
		prefix := fmt.Sprintf("error running %s hook #%d", kind, i)
		var timeout uint32
		if h.Timeout != nil {
			if *h.Timeout <= 0 {
				return fmt.Errorf("%s: timeout must be positive", prefix)
			}
			timeout = uint32(*h.Timeout)
		}
		args := h.Args
		if len(args) == 0 {
			args = []string{h.Path}
		}
		if err := noNUL("hook", append([]string{h.Path}, append(args, h.Env...)...)...); err != nil {
			return fmt.Errorf("%s: %w", prefix, err)
		}
		// runc's historical behaviour, not the spec's: a startContainer
		// hook without an env gets the container process's.
		c.add(RunHook{Err: prefix, Path: h.Path, Args: args, Env: h.Env, Timeout: timeout, State: st, KeepPid: keepPid,
			ProcessEnv: kind == "startContainer" && h.Env == nil})
	}
	return nil
}

// console adds the terminal: a pty from the container's /dev/pts/ptmx, its
// master sent over the console socket, the slave as stdio and controlling
// terminal (and bind-mounted on /dev/console for init).
func (c *compiler) console(fd int, p *specs.Process, mountConsole bool) {
	st := Console{SocketFd: uint32(fd), MountConsole: mountConsole}
	if p.ConsoleSize != nil {
		st.Rows, st.Cols = uint32(uint16(p.ConsoleSize.Height)), uint32(uint16(p.ConsoleSize.Width))
	}
	c.add(st)
}

// labels adds the LSM label writes (a label the host cannot apply is a
// warning, as runc's is).
func (c *compiler) labels(p *specs.Process) {
	if p.ApparmorProfile != "" {
		if !c.host.AppArmor() {
			c.warn("apparmor profile %s requested but AppArmor is not enabled on this host; continuing without it", p.ApparmorProfile)
		} else {
			c.add(ProcWrite{Path: "attr/apparmor/exec", Data: "exec " + p.ApparmorProfile, WarnOnly: true, Err: "apparmor profile " + p.ApparmorProfile})
		}
	}
	if p.SelinuxLabel != "" {
		if !c.host.SELinux() {
			c.warn("selinux label %s requested but SELinux is not enabled on this host; continuing without it", p.SelinuxLabel)
		} else {
			c.add(ProcWrite{Path: "attr/exec", Data: p.SelinuxLabel, WarnOnly: true, Err: "selinux label"})
		}
	}
}

// checkStrings refuses NUL bytes in every config string the executor
// uses as a C string: there a NUL would silently cut the string short.
func checkStrings(s *specs.Spec) error {
	if err := noNUL("hostname", s.Hostname, s.Domainname); err != nil {
		return err
	}
	for _, m := range s.Mounts {
		if err := noNUL("mount", append([]string{m.Source, m.Destination, m.Type}, m.Options...)...); err != nil {
			return err
		}
	}
	if l := s.Linux; l != nil {
		if err := noNUL("readonlyPaths", l.ReadonlyPaths...); err != nil {
			return err
		}
		if err := noNUL("maskedPaths", l.MaskedPaths...); err != nil {
			return err
		}
		if err := noNUL("mountLabel", l.MountLabel); err != nil {
			return err
		}
		for k, v := range l.Sysctl {
			if err := noNUL("sysctl", k, v); err != nil {
				return err
			}
		}
		for _, d := range l.Devices {
			if err := noNUL("device", d.Path); err != nil {
				return err
			}
		}
	}
	return nil
}

func noNUL(what string, v ...string) error {
	for _, s := range v {
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%s: %q contains a NUL byte", what, s)
		}
	}
	return nil
}

// dedupePaths drops repeats (by clean path): a path masked twice would be
// mounted on twice (runc masks each once).
func dedupePaths(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		c := filepath.Clean("/" + p)
		if !seen[c] {
			seen[c] = true
			out = append(out, p)
		}
	}
	return out
}
