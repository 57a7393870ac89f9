package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/hooks"
	"berth/internal/initproc"
	"berth/internal/ipc"
	"berth/internal/linux/cgroups"
	"berth/internal/linux/nsutil"
	"berth/internal/linux/rootfs"
	"berth/internal/linux/seccomp"
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
	// Stdio for the container when it has no terminal (the caller's own).
	Stdin, Stdout, Stderr *os.File
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
	if err := state.ValidateID(id); err != nil {
		return nil, err
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
	plan, err := planNamespaces(s)
	if err != nil {
		return nil, err
	}
	if err := rootfs.ValidateSysctl(s, plan.has); err != nil {
		return nil, err
	}
	st.OwnPidNS = plan.has(specs.PIDNamespace) && plan.paths[specs.PIDNamespace] == ""

	// The create/start barrier. 0622 and owned by the container's root so a
	// user-namespaced init can open it for writing.
	fifoPath := filepath.Join(st.Dir(), state.FifoName)
	if err := unix.Mkfifo(fifoPath, 0o622); err != nil {
		return nil, &os.PathError{Op: "mkfifo", Path: fifoPath, Err: err}
	}
	if err := os.Chmod(fifoPath, 0o622); err != nil {
		return nil, err
	}
	if err := os.Chown(fifoPath, plan.rootUID, plan.rootGID); err != nil {
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
	cg, err = cgroups.New(cgPath, id)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
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
		return nil, fmt.Errorf("unable to apply cgroup configuration: %w", err)
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
		Cloneflags:       plan.cloneflags,
		UIDMaps:          plan.uidMaps,
		GIDMaps:          plan.gidMaps,
		Join:             plan.join,
		UnshareAfterJoin: plan.unshareAfter,
		TimeOffsets:      plan.timeOffsets,
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

	st.CgroupPaths = cg.Paths()
	hasHooks := s.Hooks != nil && (len(s.Hooks.Prestart) > 0 || len(s.Hooks.CreateRuntime) > 0)
	cfg := &initproc.Config{
		ID: id, Bundle: bundle, Rootfs: st.Rootfs, Spec: s, Process: s.Process,
		NoPivot: o.NoPivot, NoNewKeyring: o.NoNewKeyring,
		MountNS:         plan.has(specs.MountNamespace),
		NewUTSNS:        plan.newNS(specs.UTSNamespace),
		UserNS:          plan.has(specs.UserNamespace),
		CgroupNS:        plan.has(specs.CgroupNamespace),
		UnshareCgroupNS: plan.newNS(specs.CgroupNamespace),
		CgroupPaths:     st.CgroupPaths,
		WaitPlaced:      true,
		PlacedEarly:     cg.Mode() == cgroups.ModeUnified,
		RunHooks:        hasHooks,
		FifoFd:          fifoFd, ConsoleSocketFd: consoleFd,
		KeepFds:  len(so.Keep),
		ExtraEnv: listenEnv,
	}
	// The fast path needs the seccomp program in its plan; the Go path gets
	// it compiled while init starts up (place).
	var filter *seccomp.Filter
	var initPlan []byte
	var planWarnings []string
	if fastInitCandidate(cfg, plan.newNS(specs.MountNamespace)) {
		if filter, err = r.compileFilter(s); err != nil {
			return nil, err
		}
		initPlan, planWarnings, so.Plan = fastInitPlan(cfg, filter)
	}

	proc, err = spawn.Start(so, ipc.ParentOfInit())
	join.Close() // the child has its copies
	if err != nil {
		return nil, fmt.Errorf("unable to start container process: %w", err)
	}
	ph.done("spawn init")
	// init builds its mounts while we wire its network and compile its
	// seccomp filter; it waits for Placed before its cgroup namespace, the
	// hooks and the container process.
	st.InitPid = proc.Pid
	if start, _, err := state.ProcStart(proc.Pid); err == nil {
		st.InitStart = start
	}
	st.NamespacePaths = map[string]string{}
	for _, t := range nsutil.All() {
		st.NamespacePaths[string(t)] = fmt.Sprintf("/proc/%d/ns/%s", proc.Pid, t.ProcName())
	}
	cfg.HostPid = proc.Pid
	if so.Plan {
		r.debugf("init: set up by the child's constructor from a plan (no Go runtime in the child)")
		if err := proc.Conn.WriteRaw(initPlan); err != nil {
			return nil, fmt.Errorf("unable to start container process: %w", err)
		}
		for _, w := range planWarnings {
			r.warn("%s", w)
		}
	} else if err := proc.Conn.SendData(ipc.Bootstrap, cfg); err != nil {
		return nil, fmt.Errorf("unable to start container process: %w", err)
	}
	rec.InitPid, rec.InitStart = st.InitPid, st.InitStart
	if err := writeCreating(st.Dir(), rec); err != nil {
		return nil, err
	}
	if err := r.place(proc, s, st, plan, filter, so.Plan); err != nil {
		// init may have failed on its own meanwhile (a bad mount): its
		// report says more than a broken pipe or a vanished pid. Kill it
		// first so reading ends at what it had already sent.
		proc.Cmd.Process.Kill()
		if cerr := childFailure(proc); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	ph.done("network, seccomp; placed")
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
	if err := r.waitReady(proc, st, s, hasHooks); err != nil {
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

// waitReady follows the init ladder until Ready, running the prestart and
// createRuntime hooks when init stops for them.
func (r *Runtime) waitReady(proc *spawn.Process, st *state.State, s *specs.Spec, hasHooks bool) error {
	for {
		m, err := proc.Conn.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				werr := proc.Cmd.Wait()
				return fmt.Errorf("unable to start container process: error during container init: %w (%v)", spawn.ErrInitDied, werr)
			}
			return fmt.Errorf("unable to start container process: %w", err)
		}
		switch m.Type {
		case ipc.Log:
			r.warn("%s", m.Msg)
		case ipc.Error:
			return fmt.Errorf("unable to start container process: error during container init: %s", m.Error)
		case ipc.Seccomp:
			if err := handOverListener(proc, m, s, st.OCIState(state.Creating)); err != nil {
				return fmt.Errorf("unable to start container process: %w", err)
			}
		case ipc.Hooks:
			hs := st.OCIState(state.Creating)
			hs.Pid = proc.Pid
			if err := hooks.RunAll("prestart", s.Hooks.Prestart, hs); err != nil {
				return fmt.Errorf("unable to start container process: %w", err)
			}
			if err := hooks.RunAll("createRuntime", s.Hooks.CreateRuntime, hs); err != nil {
				return fmt.Errorf("unable to start container process: %w", err)
			}
			if err := proc.Conn.Send(ipc.Message{Type: ipc.Resume}); err != nil {
				return fmt.Errorf("unable to start container process: %w", err)
			}
		case ipc.Ready:
			var rd initproc.Ready
			if len(m.Data) > 0 {
				if err := json.Unmarshal(m.Data, &rd); err != nil {
					return err
				}
			}
			for _, w := range rd.Warnings {
				r.warn("%s", w)
			}
			return nil
		}
	}
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
		// New namespaces must belong to the joined user namespace: create
		// them after the join (pid excepted: it needs a fork, and a pid
		// namespace owned by the host user namespace still works).
		p.unshareAfter |= p.cloneflags &^ unix.CLONE_NEWPID
		p.cloneflags &= unix.CLONE_NEWPID
	}
	for _, m := range s.Linux.UIDMappings {
		p.uidMaps = append(p.uidMaps, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		if m.ContainerID == 0 {
			p.rootUID = int(m.HostID)
		}
	}
	for _, m := range s.Linux.GIDMappings {
		p.gidMaps = append(p.gidMaps, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
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

// place wires init's network and tells init it may go on (Placed, carrying
// the compiled seccomp program); init is in its cgroups from its first
// instruction. filter is the program already compiled, if any; an init set
// up from a plan has it in its plan and gets a single byte instead.
func (r *Runtime) place(proc *spawn.Process, s *specs.Spec, st *state.State, plan *nsPlan, filter *seccomp.Filter, fromPlan bool) error {
	if r.Network != nil && plan.newNS(specs.NetworkNamespace) {
		if err := r.Network.Attach(context.Background(), st.ID, st.NamespacePaths[string(specs.NetworkNamespace)], st.Rootfs); err != nil {
			return fmt.Errorf("attach network: %w", err)
		}
		st.NetworkAttached = true
	}
	if fromPlan {
		if err := proc.Conn.WriteRaw([]byte{'P'}); err != nil {
			return fmt.Errorf("unable to start container process: %w", err)
		}
		return nil
	}
	// Compiled here, off the critical path, while init's runtime starts.
	var err error
	if filter == nil {
		if filter, err = r.compileFilter(s); err != nil {
			return err
		}
	}
	var placed initproc.PlacedInfo
	if filter != nil {
		if placed.SeccompProgram, err = filter.MarshalBinary(); err != nil {
			return err
		}
	}
	if err := proc.Conn.SendData(ipc.Placed, placed); err != nil {
		return fmt.Errorf("unable to start container process: %w", err)
	}
	return nil
}

// childFailure returns init's own error report, if it sent one before it
// exited (it reports exactly once; see internal/ipc). Call it only once init
// is dead or dying: it reads until the stream ends.
func childFailure(proc *spawn.Process) error {
	for {
		m, err := proc.Conn.Recv()
		if err != nil {
			return nil
		}
		if m.Type == ipc.Error {
			return fmt.Errorf("unable to start container process: error during container init: %s", m.Error)
		}
	}
}
