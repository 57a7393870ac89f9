package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/ipc"
	"berth/internal/linux/cgroups"
	"berth/internal/linux/nsutil"
	"berth/internal/linux/plan"
	"berth/internal/linux/rootfs"
	"berth/internal/spawn"
	"berth/internal/spec"
	"berth/internal/state"
)

// CreateOptions are create's (and run's) flags.
type CreateOptions struct {
	Bundle        string
	ConsoleSocket string
	PidFile       string // absolute
	PidfdSocket   string
	NoPivot       bool
	NoNewKeyring  bool
	PreserveFds   int
	// Stdio for the container when it has no terminal (the caller's own),
	// and the ends of a foreground terminal's relay when it has one.
	Stdin, Stdout, Stderr *os.File
	// KeepONLCR: a foreground terminal keeps turning "\n" into "\r\n", as
	// a terminal emulator's pty does (podman, docker); runc clears it.
	KeepONLCR bool
	// consoleConn, when set, receives the pty master instead of ConsoleSocket
	// (foreground run with a terminal).
	consoleConn *os.File
}

// created is a container whose init waits on exec.fifo, plus what the
// creating process still holds.
type created struct {
	c    *Container
	proc *spawn.Process
}

// Create creates a container: on return its init exists in its namespaces
// and cgroup, blocked until Start, and the pid file is written.
func (r *Runtime) Create(id string, o CreateOptions) error {
	cr, err := r.create(id, o)
	if err != nil {
		return err
	}
	cr.proc.Cmd.Process.Release()
	cr.c.Release()
	return nil
}

func (r *Runtime) create(id string, o CreateOptions) (cr *created, retErr error) {
	ph := r.phases()
	bundle, err := filepath.Abs(o.Bundle)
	if err != nil {
		return nil, err
	}
	s, err := spec.Load(bundle)
	if err != nil {
		return nil, err
	}
	for _, w := range spec.Warnings(s) {
		r.warn("%s", w)
	}
	if err := state.ValidateID(id); err != nil {
		return nil, err
	}
	if r.Rootless && len(s.Process.User.AdditionalGids) > 0 {
		return nil, errors.New("cannot set any additional groups in a rootless container")
	}
	if s.Process.Terminal && o.ConsoleSocket == "" && o.consoleConn == nil {
		return nil, errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if !s.Process.Terminal && o.ConsoleSocket != "" {
		return nil, errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	st, err := state.New(r.Root, id)
	if err != nil {
		return nil, err
	}
	unlock, err := state.Lock(st.Dir())
	if err != nil {
		os.RemoveAll(st.Dir())
		return nil, err
	}
	c := &Container{State: st, unlock: unlock}
	var proc *spawn.Process
	var cg cgroups.Manager
	defer func() {
		if retErr == nil {
			return
		}
		if proc != nil {
			proc.Cmd.Process.Kill()
			proc.Cmd.Wait()
			proc.Conn.Close()
		}
		if st.NetworkAttached {
			if err := r.Network.Detach(context.Background(), id); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("cleanup: %w", err))
			}
		}
		if cg != nil {
			if err := cg.Destroy(); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("cleanup: %w", err))
			}
		}
		if err := removeDir(st.Dir()); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("cleanup: %w", err))
		}
		c.Release()
	}()

	st.Bundle = bundle
	st.Rootfs = spec.RootfsPath(s, bundle)
	st.Config = s
	st.Created = time.Now().UTC()

	ph.done("load config, state dir")
	ns, err := planNamespaces(s)
	if err != nil {
		return nil, err
	}
	if err := rootfs.ValidateSysctl(s, ns.has); err != nil {
		return nil, err
	}
	st.OwnPidNS = ns.has(specs.PIDNamespace) && ns.paths[specs.PIDNamespace] == ""

	// The create/start barrier. 0622 and owned by the container's root so a
	// user-namespaced init can open it for writing.
	fifoPath := filepath.Join(st.Dir(), state.FifoName)
	if err := unix.Mkfifo(fifoPath, 0o622); err != nil {
		return nil, &os.PathError{Op: "mkfifo", Path: fifoPath, Err: err}
	}
	if err := os.Chmod(fifoPath, 0o622); err != nil {
		return nil, err
	}
	if err := os.Chown(fifoPath, ns.rootUID, ns.rootGID); err != nil {
		return nil, err
	}
	fifo, err := os.OpenFile(fifoPath, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer fifo.Close()

	cgPath := ""
	if s.Linux.CgroupsPath != "" {
		cgPath = s.Linux.CgroupsPath
	}
	m, err := r.newCgroup(s, cgPath, id)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	// Another container's cgroup is never shared, nor removed on the way
	// out: refused before it becomes ours to clean up (runc's check).
	if err := m.CheckEmpty(); err != nil {
		return nil, err
	}
	cg = m
	// init is born into its cgroup, limits already written: the cgroup is
	// created and its limits set while it is still empty (a device list is
	// written rule by rule, deny all then each allow, and init must never sit
	// in it between those writes), then the child is placed without a
	// migration by the parent (see cgroups.Join: clone3 CLONE_INTO_CGROUP on
	// v2, the child's own write to the v1 tasks files). The cgroup exists
	// before init does: record it first, so a create killed right here still
	// leaves nothing behind.
	rec := creatingRecord{CgroupPaths: cg.Paths()}
	if err := writeCreating(st.Dir(), rec); err != nil {
		return nil, err
	}
	if err := cg.Create(); err != nil {
		if !r.Rootless || cgPath != "" || !permissionError(err) {
			return nil, fmt.Errorf("unable to apply cgroup configuration: %w", err)
		}
		// Rootless without a cgroup of its own to write to: runc's rule,
		// no cgroup, if nothing needed one.
		if derr := cg.Destroy(); derr != nil {
			return nil, fmt.Errorf("unable to apply cgroup configuration: %w", errors.Join(err, derr))
		}
		if serr := cgroups.Disabled().Set(effectiveResources(s)); serr != nil {
			return nil, fmt.Errorf("rootless needs no limits + no cgrouppath when no permission is granted for cgroups: %w", err)
		}
		if !ns.newNS(specs.PIDNamespace) {
			r.warn("Creating a rootless container with no cgroup and no private pid namespace. " +
				"Such configuration is strongly discouraged (as it is impossible to properly kill all container's processes)")
		}
		cg = cgroups.Disabled()
		rec.CgroupPaths = nil
		if err := writeCreating(st.Dir(), rec); err != nil {
			return nil, err
		}
	}
	if err := cg.Set(effectiveResources(s)); err != nil {
		return nil, fmt.Errorf("unable to apply cgroup configuration: %w", err)
	}
	join, err := cgroups.OpenJoin(cg.Paths())
	if err != nil {
		return nil, fmt.Errorf("unable to apply cgroup configuration: %w", err)
	}
	defer join.Close() // idempotent: also closed right after the spawn
	ph.done("exec.fifo, cgroup, limits")

	so := &spawn.Options{
		Cloneflags:       ns.cloneflags,
		UIDMaps:          ns.uidMaps,
		GIDMaps:          ns.gidMaps,
		Join:             ns.join,
		UnshareAfterJoin: ns.unshareAfter,
		TimeOffsets:      ns.timeOffsets,
		Stdin:            o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr,
		Cgroup: join,
	}
	listen, listenEnv := listenFds()
	so.Keep = append(so.Keep, listen...)
	for i := 0; i < o.PreserveFds; i++ {
		fd := 3 + len(listen) + i
		var stt unix.Stat_t
		if err := unix.Fstat(fd, &stt); err != nil {
			return nil, fmt.Errorf("unable to stat preserved-fd %d (of %d): %w", i, o.PreserveFds, err)
		}
		so.Keep = append(so.Keep, os.NewFile(uintptr(fd), "preserved-"+strconv.Itoa(fd)))
	}
	so.Extra = append(so.Extra, fifo)
	fifoFd := so.ExtraFd(0)
	consoleFd := -1
	if s.Process.Terminal {
		sock := o.consoleConn
		if sock == nil {
			sock, err = dialConsole(o.ConsoleSocket)
			if err != nil {
				return nil, err
			}
			defer sock.Close()
		}
		so.Extra = append(so.Extra, sock)
		consoleFd = so.ExtraFd(len(so.Extra) - 1)
	}
	sources := newMountSources(s, bundle, ns)
	defer sources.Close()

	st.CgroupPaths = cg.Paths()
	hasHooks := s.Hooks != nil && (len(s.Hooks.Prestart) > 0 || len(s.Hooks.CreateRuntime) > 0)
	proc, err = spawn.Start(so, ipc.InitLadder())
	join.Close() // the child has its copies
	if err != nil {
		return nil, fmt.Errorf("unable to start container process: %w", err)
	}
	ph.done("spawn init")
	// The plan is compiled while the child starts up; its constructor waits
	// for it.
	st.InitPid = proc.Pid
	if start, _, err := state.ProcStart(proc.Pid); err == nil {
		st.InitStart = start
	}
	st.NamespacePaths = map[string]string{}
	for _, t := range nsutil.All() {
		st.NamespacePaths[string(t)] = fmt.Sprintf("/proc/%d/ns/%s", proc.Pid, t.ProcName())
	}
	filter, err := r.compileFilter(s)
	if err != nil {
		return nil, err
	}
	res, err := plan.CompileInit(&plan.Init{
		ID: id, Bundle: bundle, Rootfs: st.Rootfs, Spec: s,
		MountNS:         ns.has(specs.MountNamespace),
		NewUTSNS:        ns.newNS(specs.UTSNamespace),
		UserNS:          ns.has(specs.UserNamespace),
		CgroupNS:        ns.has(specs.CgroupNamespace),
		UnshareCgroupNS: ns.newNS(specs.CgroupNamespace),
		CgroupPaths:     st.CgroupPaths,
		MountSources:    os.Geteuid() == 0,
		PlacedEarly:     cg.Mode() == cgroups.ModeUnified,
		NoPivot:         o.NoPivot, NoNewKeyring: o.NoNewKeyring,
		ParentHooks: hasHooks,
		FifoFd:      fifoFd, ConsoleFd: consoleFd, KeepFds: len(so.Keep),
		ExtraEnv: listenEnv,
		Filter:   filter,
		Host:     plan.Probe(),
	})
	var cfgErr *plan.ConfigError
	if errors.As(err, &cfgErr) {
		return nil, err // refused as runc's config validation refuses it
	}
	if err != nil {
		return nil, fmt.Errorf("unable to start container process: error during container init: %w", err)
	}
	if err := r.sendPlan(proc, res); err != nil {
		return nil, fmt.Errorf("unable to start container process: %w", err)
	}
	if proc.Forks {
		// init is the child's child, in the pid namespace it joined.
		if err := proc.AwaitPid(); err != nil {
			return nil, fmt.Errorf("unable to start container process: %w", err)
		}
		st.InitPid = proc.Pid
		if start, _, err := state.ProcStart(proc.Pid); err == nil {
			st.InitStart = start
		}
		for _, t := range nsutil.All() {
			st.NamespacePaths[string(t)] = fmt.Sprintf("/proc/%d/ns/%s", proc.Pid, t.ProcName())
		}
	}
	ph.done("plan compiled and sent")
	rec.InitPid, rec.InitStart = st.InitPid, st.InitStart
	if err := writeCreating(st.Dir(), rec); err != nil {
		return nil, err
	}
	if err := r.place(proc, st, ns); err != nil {
		// init may have failed on its own meanwhile (a bad mount): its
		// report says more than a broken pipe or a vanished pid. Kill it
		// first so reading ends at what it had already sent.
		proc.Cmd.Process.Kill()
		if cerr := childFailure(proc); cerr != nil {
			return nil, initError(cerr)
		}
		return nil, err
	}
	ph.done("network; placed")
	// The state is complete: encode it on the other CPU while init finishes.
	type encoded struct {
		b   []byte
		err error
	}
	enc := make(chan encoded, 1)
	go func() {
		b, err := st.Marshal()
		enc <- encoded{b, err}
	}()
	sources.pid = proc.Pid
	if err := r.waitReady(proc, st, s, sources); err != nil {
		return nil, err
	}
	ph.done("init setup until ready")
	e := <-enc
	if e.err != nil {
		return nil, e.err
	}
	if err := st.SaveEncoded(e.b); err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(st.Dir(), creatingFile))
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, proc.Pid); err != nil {
			return nil, err
		}
	}
	if o.PidfdSocket != "" {
		if err := sendPidfd(o.PidfdSocket, proc.Pid); err != nil {
			return nil, err
		}
	}
	ph.done("state, pid file")
	return &created{c: c, proc: proc}, nil
}

// waitReady follows the init ladder until Ready, opening the mount
// sources init asks for, running the prestart and createRuntime hooks
// when init stops for them and handing a seccomp listener to its agent.
func (r *Runtime) waitReady(proc *spawn.Process, st *state.State, s *specs.Spec, sources *mountSources) error {
	err := r.follow(proc, handlers{hooks: func() error {
		hs := st.OCIState(state.Creating)
		hs.Pid = proc.Pid
		if err := r.runHooks("prestart", s.Hooks.Prestart, hs); err != nil {
			return err
		}
		return r.runHooks("createRuntime", s.Hooks.CreateRuntime, hs)
	}, seccomp: func(sf ipc.SeccompFd) error {
		return handOverListener(proc, sf, s, st.OCIState(state.Creating))
	}, sources: sources})
	if err != nil {
		return initError(err)
	}
	return nil
}

// initError words a failure of a container's init as runc does: what the
// executor reported is "error during container init" (so is what
// compiling its plan refuses: the same checks runc's init makes).
func initError(err error) error {
	var ce *childError
	var me *mountRequestError
	if errors.As(err, &ce) || errors.As(err, &me) || errors.Is(err, spawn.ErrInitDied) {
		return fmt.Errorf("unable to start container process: error during container init: %w", err)
	}
	return fmt.Errorf("unable to start container process: %w", err)
}

// nsPlan is how each namespace of the config is obtained.
type nsPlan struct {
	types        map[specs.LinuxNamespaceType]bool
	paths        map[specs.LinuxNamespaceType]string
	cloneflags   uintptr
	unshareAfter uintptr
	join         []nsutil.Namespace
	uidMaps      []syscall.SysProcIDMap
	gidMaps      []syscall.SysProcIDMap
	timeOffsets  string
	rootUID      int // host uid of the container's root
	rootGID      int
}

func (p *nsPlan) has(t specs.LinuxNamespaceType) bool { return p.types[t] }
func (p *nsPlan) newNS(t specs.LinuxNamespaceType) bool {
	return p.types[t] && p.paths[t] == ""
}

func planNamespaces(s *specs.Spec) (*nsPlan, error) {
	p := &nsPlan{types: map[specs.LinuxNamespaceType]bool{}, paths: map[specs.LinuxNamespaceType]string{}}
	for _, n := range s.Linux.Namespaces {
		p.types[n.Type] = true
		p.paths[n.Type] = n.Path
		t := nsutil.Type(n.Type)
		if n.Path != "" {
			if err := checkNSPath(n.Path, t); err != nil {
				return nil, err
			}
			p.join = append(p.join, nsutil.Namespace{Type: t, Path: n.Path})
			continue
		}
		if n.Type == specs.CgroupNamespace {
			// Unshared by init once it is in its cgroup, so the namespace
			// root is the container's cgroup.
			continue
		}
		p.cloneflags |= t.CloneFlag()
	}
	if p.cloneflags&unix.CLONE_NEWTIME != 0 {
		// Offsets can only be set before a process is in the namespace,
		// so it is unshared (not cloned) and entered at execve.
		p.cloneflags &^= unix.CLONE_NEWTIME
		p.unshareAfter |= unix.CLONE_NEWTIME
		for name, off := range s.Linux.TimeOffsets {
			switch name {
			case "monotonic", "boottime":
				p.timeOffsets += fmt.Sprintf("%s %d %d\n", name, off.Secs, off.Nanosecs)
			default:
				return nil, fmt.Errorf("timeOffsets: unknown clock %q (monotonic or boottime)", name)
			}
		}
	}
	joinedUser := p.types[specs.UserNamespace] && p.paths[specs.UserNamespace] != ""
	if joinedUser {
		// New namespaces must belong to the joined user namespace, or the
		// container's root could not use them (mount its proc, set its
		// hostname): they are unshared after the join, a new pid namespace
		// by a fork into it (spawn's Forks), as runc's nsexec does.
		p.unshareAfter |= p.cloneflags
		p.cloneflags = 0
	}
	p.uidMaps, p.gidMaps = sysMaps(s.Linux.UIDMappings), sysMaps(s.Linux.GIDMappings)
	for _, m := range s.Linux.UIDMappings {
		if m.ContainerID == 0 {
			p.rootUID = int(m.HostID)
		}
	}
	for _, m := range s.Linux.GIDMappings {
		if m.ContainerID == 0 {
			p.rootGID = int(m.HostID)
		}
	}
	if joinedUser {
		p.uidMaps, p.gidMaps = nil, nil
	}
	return p, nil
}

// checkNSPath makes sure path is a namespace file of type t (runc checks the
// same, so a typo'd path fails clearly instead of at setns).
func checkNSPath(path string, t nsutil.Type) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("namespace %s path %q: %w", t, path, err)
	}
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("namespace %s path %q is not a namespace file", t, path)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("namespace %s path %q: %w", t, path, err)
	}
	defer unix.Close(fd)
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err == nil && uintptr(typ) != t.CloneFlag() {
		return fmt.Errorf("namespace path %q is not a %s namespace", path, t)
	}
	return nil
}

// listenFds implements socket activation: when LISTEN_PID is us, fds 3..3+N-1
// pass through and the container sees LISTEN_FDS=N LISTEN_PID=1.
func listenFds() ([]*os.File, []string) {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil, nil
	}
	var files []*os.File
	for i := 0; i < n; i++ {
		files = append(files, os.NewFile(uintptr(3+i), "listen-fd-"+strconv.Itoa(3+i)))
	}
	env := []string{"LISTEN_FDS=" + strconv.Itoa(n), "LISTEN_PID=1"}
	if names := os.Getenv("LISTEN_FDNAMES"); names != "" {
		env = append(env, "LISTEN_FDNAMES="+names)
	}
	return files, env
}

func dialConsole(path string) (*os.File, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("failed to connect to console socket: %w", err)
	}
	defer conn.Close()
	f, err := conn.(*net.UnixConn).File()
	if err != nil {
		return nil, err
	}
	return f, nil
}

// writePidFile writes the pid atomically, with no newline (go-runc Atoi's it):
// create ".<name>" beside it, then rename.
func writePidFile(path string, pid int) error {
	dir, name := filepath.Split(path)
	tmp := filepath.Join(dir, "."+name)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_SYNC, 0o666)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// sendPidfd sends a pidfd of pid over the unix socket at path (--pidfd-socket).
func sendPidfd(path string, pid int) error {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pfd)
	conn, err := net.Dial("unix", path)
	if err != nil {
		return fmt.Errorf("failed to connect to pidfd socket: %w", err)
	}
	defer conn.Close()
	f, err := conn.(*net.UnixConn).File()
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Sendmsg(int(f.Fd()), []byte("pidfd"), unix.UnixRights(pfd), nil, 0)
}

// place wires init's network and tells init it may go on (Placed); init
// is in its cgroups from its first instruction.
func (r *Runtime) place(proc *spawn.Process, st *state.State, ns *nsPlan) error {
	if r.Network != nil && ns.newNS(specs.NetworkNamespace) {
		if err := r.Network.Attach(context.Background(), st.ID, st.NamespacePaths[string(specs.NetworkNamespace)], st.Rootfs); err != nil {
			return fmt.Errorf("attach network: %w", err)
		}
		st.NetworkAttached = true
	}
	if err := proc.Conn.Send(ipc.Placed); err != nil {
		return fmt.Errorf("unable to start container process: %w", err)
	}
	return nil
}

// permissionError reports a cgroup the caller may not create (a rootless
// runtime without a delegated cgroup).
func permissionError(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EROFS)
}
