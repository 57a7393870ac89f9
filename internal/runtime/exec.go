package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/ipc"
	"berth/internal/linux/cgroups"
	"berth/internal/linux/console"
	"berth/internal/linux/nsutil"
	"berth/internal/linux/plan"
	"berth/internal/spawn"
	"berth/internal/spec"
	"berth/internal/state"
)

// ExecOptions are exec's flags; Process is already built (from -p or from
// the config plus overrides).
type ExecOptions struct {
	Process       *specs.Process
	ConsoleSocket string
	PidFile       string
	PidfdSocket   string
	Detach        bool
	PreserveFds   int
	IgnorePaused  bool
	// Cgroup maps a controller ("" for all) to a sub-cgroup of the container's.
	Cgroup                map[string]string
	Stdin, Stdout, Stderr *os.File
	// KeepONLCR: as CreateOptions'.
	KeepONLCR bool
}

// Exec runs a new process inside a running (or created) container: it joins
// every namespace of the container's init, its cgroup, and gets the process's
// capabilities, rlimits, user and the container's seccomp profile. It returns
// the process's exit status in the foreground (128+signal when killed).
func (r *Runtime) Exec(id string, o ExecOptions) (int, error) {
	ph := r.phases()
	var rl *relay
	if !o.Detach {
		// Subscribed while the process is set up (see relay).
		rl = startRelay(64)
		defer func() { <-rl.stop() }()
		// The process may be our grandchild (spawn's Forks): we adopt it.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return 255, os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err)
		}
	}
	c, err := r.Load(id)
	if err != nil {
		return 255, err
	}
	ph.done("load state")
	switch c.Status() {
	case state.Created, state.Running:
	case state.Paused:
		if !o.IgnorePaused {
			c.Release()
			return 255, errors.New("cannot exec in a paused container (use --ignore-paused to override)")
		}
	default:
		c.Release()
		return 255, errors.New("cannot exec a container that has stopped")
	}
	p := o.Process
	if err := spec.ValidateProcess(p); err != nil {
		c.Release()
		return 255, err
	}
	if r.Rootless && len(p.User.AdditionalGids) > 0 {
		c.Release()
		return 255, errors.New("cannot set any additional groups in a rootless container")
	}
	if p.Terminal && o.Detach && o.ConsoleSocket == "" {
		c.Release()
		return 255, errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if o.ConsoleSocket != "" && !(p.Terminal && o.Detach) {
		c.Release()
		return 255, errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	// The container cannot go away under a started exec: keep the lock
	// until the process is placed, then let go so `kill`/`state` work.
	proc, master, err := r.spawnExec(c, o)
	c.Release()
	if err != nil {
		return 255, err
	}
	ph.done("exec process started, placed and ready")
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, proc.Pid); err != nil {
			proc.Cmd.Process.Kill()
			proc.Cmd.Wait()
			return 255, err
		}
	}
	if o.PidfdSocket != "" {
		if err := sendPidfd(o.PidfdSocket, proc.Pid); err != nil {
			proc.Cmd.Process.Kill()
			proc.Cmd.Wait()
			return 255, err
		}
	}
	if o.Detach {
		proc.Cmd.Process.Release()
		return 0, nil
	}
	rl.wait()
	sigc := rl.c
	var restore func()
	if master != nil {
		defer master.Close()
		restore = relayTerminal(master, o.Stdin, o.Stdout, o.KeepONLCR)
	}
	waitc := make(chan int, 1)
	go func() {
		st, _ := proc.Cmd.Process.Wait()
		code := 255
		if st != nil {
			if ws, ok := st.Sys().(unix.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			} else {
				code = st.ExitCode()
			}
		}
		waitc <- code
	}()
	for {
		select {
		case code := <-waitc:
			if restore != nil {
				restore()
			}
			ph.done("process ran")
			return code, nil
		case sig := <-sigc:
			switch sig {
			case unix.SIGCHLD, unix.SIGURG:
			case unix.SIGWINCH:
				if master != nil {
					resize(master, o.Stdin)
				}
			default:
				_ = unix.Kill(proc.Pid, sig.(unix.Signal))
			}
		}
	}
}

func (r *Runtime) spawnExec(c *Container, o ExecOptions) (_ *spawn.Process, master *os.File, retErr error) {
	s := c.Config
	p := o.Process
	join, err := c.execJoin(o.Cgroup)
	if err != nil {
		return nil, nil, err
	}
	defer join.Close()
	so := &spawn.Options{Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr, Cgroup: join}
	for _, n := range s.Linux.Namespaces {
		t := nsutil.Type(n.Type)
		so.Join = append(so.Join, nsutil.Namespace{Type: t, Path: fmt.Sprintf("/proc/%d/ns/%s", c.InitPid, t.ProcName())})
	}
	for i := 0; i < o.PreserveFds; i++ {
		fd := 3 + i
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, nil, fmt.Errorf("unable to stat preserved-fd %d (of %d): %w", i, o.PreserveFds, err)
		}
		so.Keep = append(so.Keep, os.NewFile(uintptr(fd), "preserved-"+strconv.Itoa(fd)))
	}
	consoleFd := -1
	var consoleParent *os.File
	if p.Terminal {
		var sock *os.File
		if o.ConsoleSocket != "" {
			f, err := dialConsole(o.ConsoleSocket)
			if err != nil {
				return nil, nil, err
			}
			sock = f
		} else {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return nil, nil, os.NewSyscallError("socketpair", err)
			}
			consoleParent = os.NewFile(uintptr(fds[0]), "console-parent")
			sock = os.NewFile(uintptr(fds[1]), "console-child")
			defer func() {
				if retErr != nil {
					consoleParent.Close()
				}
			}()
		}
		defer sock.Close()
		so.Extra = append(so.Extra, sock)
		consoleFd = so.ExtraFd(0)
	}
	aff, err := plan.ExecAffinity(p.ExecCPUAffinity)
	if err != nil {
		return nil, nil, err
	}
	so.Affinity = aff.Initial
	proc, err := spawn.Start(so, ipc.ExecLadder())
	if err != nil {
		return nil, nil, fmt.Errorf("exec failed: %w", err)
	}
	defer func() {
		if retErr != nil {
			proc.Cmd.Process.Kill()
			proc.Cmd.Wait()
			proc.Conn.Close()
		}
	}()
	// Compiled while the child starts up; its constructor waits for it.
	filter, err := r.compileFilter(s)
	if err != nil {
		return nil, nil, err
	}
	res, err := plan.CompileExec(&plan.Exec{
		Process: p, Linux: s.Linux, UserNS: hasNS(s, specs.UserNamespace),
		ConsoleFd: consoleFd, KeepFds: len(so.Keep), Filter: filter, Host: plan.Probe(),
	})
	var cfgErr *plan.ConfigError
	if errors.As(err, &cfgErr) {
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("exec failed: unable to start container process: %w", err)
	}
	if err := r.sendPlan(proc, res); err != nil {
		return nil, nil, fmt.Errorf("exec failed: %w", err)
	}
	if proc.Forks {
		if err := proc.AwaitPid(); err != nil {
			return nil, nil, fmt.Errorf("exec failed: %w", err)
		}
	}
	err = r.follow(proc, handlers{seccomp: func(sf ipc.SeccompFd) error {
		return handOverListener(proc, sf, s, c.OCIState(state.Running))
	}})
	if err != nil {
		var ce *childError
		if errors.As(err, &ce) {
			return nil, nil, fmt.Errorf("exec failed: unable to start container process: %w", err)
		}
		return nil, nil, fmt.Errorf("exec failed: %w", err)
	}
	proc.Conn.Close()
	if consoleParent != nil {
		defer consoleParent.Close()
		master, err = console.RecvMaster(consoleParent)
		if err != nil {
			return nil, nil, err
		}
	}
	return proc, master, nil
}

func hasNS(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	for _, n := range s.Linux.Namespaces {
		if n.Type == t {
			return true
		}
	}
	return false
}

// execJoin opens what an exec process needs to be placed, from its first
// instruction, in the container's cgroups or in the sub-cgroups named by
// --cgroup (see cgroups.Join). nil when the container has no cgroup.
func (c *Container) execJoin(sub map[string]string) (*cgroups.Join, error) {
	if len(c.CgroupPaths) == 0 {
		return nil, nil
	}
	targets := make(map[string]string, len(c.CgroupPaths))
	for ctrl, dir := range c.CgroupPaths {
		rel, ok := sub[ctrl]
		if !ok {
			rel, ok = sub[""]
		}
		targets[ctrl] = dir
		if ok {
			targets[ctrl] = filepath.Join(dir, filepath.Clean("/"+rel))
		}
	}
	j, err := cgroups.OpenJoin(targets)
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	return j, nil
}

// ParseCgroupFlag parses exec --cgroup values: "path" or "ctrl[,ctrl]:path".
func ParseCgroupFlag(vals []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vals {
		ctrls, path, found := strings.Cut(v, ":")
		if !found {
			if _, dup := out[""]; dup {
				return nil, errors.New("--cgroup: only one path without controllers may be given")
			}
			out[""] = v
			continue
		}
		if path == "" {
			return nil, fmt.Errorf("--cgroup %q: empty path", v)
		}
		for _, ctrl := range strings.Split(ctrls, ",") {
			if _, dup := out[ctrl]; dup {
				return nil, fmt.Errorf("--cgroup: controller %q given twice", ctrl)
			}
			out[ctrl] = path
		}
	}
	return out, nil
}
