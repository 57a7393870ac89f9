// Package spawn is the parent side of starting a container's init or exec
// process: clone flags, id maps, namespace joins, cgroup fd and fd donation.
//
// Namespaces are joined in two places, because Go cannot setns(2) into a user
// or mount namespace once its runtime runs threads:
//   - net, ipc, uts and pid are joined by the parent on a locked OS thread
//     right before the clone; the child inherits them (pid as
//     pid_for_children). The thread is never unlocked, so it dies with its
//     goroutine instead of going back to the scheduler in foreign namespaces.
//   - cgroup, user, mnt and time are joined by the nsenter constructor in the
//     child, before its Go runtime starts (see internal/nsenter); cgroup first,
//     with the host's credentials, and after the child placed itself in its
//     cgroups (Options.Cgroup).
package spawn

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/ipc"
	"berth/internal/linux/cgroups"
	"berth/internal/linux/nsutil"
	"berth/internal/linux/plan"
)

// Options describe one child.
type Options struct {
	// Exe is the runtime binary to re-exec; by default the running binary,
	// sealed read-only (see sealedExe).
	Exe        string
	Cloneflags uintptr
	UIDMaps    []syscall.SysProcIDMap
	GIDMaps    []syscall.SysProcIDMap
	// Join lists namespaces to enter, by path.
	Join []nsutil.Namespace
	// UnshareAfterJoin are new namespaces to create in the child before
	// its runtime starts: after joining a user namespace (so it owns them),
	// and a new time namespace (so its offsets can still be written). A
	// new pid namespace here makes the child fork into it (Process.Forks).
	UnshareAfterJoin uintptr
	// TimeOffsets are written for a new time namespace, in
	// /proc/PID/timens_offsets format.
	TimeOffsets           string
	Stdin, Stdout, Stderr *os.File
	// Keep are donated at fds 3, 4, ... in order (LISTEN_FDS, --preserve-fds).
	Keep []*os.File
	// Extra are donated after Keep; ExtraFd reports where each landed.
	Extra []*os.File
	// Cgroup, when set, places the child: into Cgroup.Dir (v2) at clone time,
	// and into each v1 hierarchy by its own write of "0" to the open tasks
	// files, before its runtime starts (see cgroups.Join). The parent keeps
	// and closes the files.
	Cgroup  *cgroups.Join
	Setpgid bool
	// Affinity, when set, is the CPU mask (u64 words) the child starts
	// with: the spawning thread takes it and the child inherits it, before
	// it is placed in its cgroup (an exec's execCPUAffinity.initial).
	Affinity []uint64
}

// Process is a started child and the parent's end of its protocol socket.
type Process struct {
	Cmd  *exec.Cmd
	Conn *ipc.Conn
	Pid  int
	// Forks: the child goes on as a grandchild in a pid namespace it joined
	// or unshared (see Start); AwaitPid learns its pid.
	Forks bool
}

// ExtraFd returns the child's fd number for o.Extra[i].
func (o *Options) ExtraFd(i int) int { return 3 + len(o.Keep) + 1 + i }

// Start starts `berth init`: its constructor joins the namespaces, then
// runs the plan the caller sends on the returned Conn (seq checks the
// ladder; see internal/ipc).
func Start(o *Options, seq *ipc.Sequence) (*Process, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "init-pipe-parent")
	child := os.NewFile(uintptr(fds[1]), "init-pipe-child")
	defer child.Close()

	cmd := &exec.Cmd{Path: o.Exe, Args: []string{"berth", "init"}}
	// A nil *os.File in the io interfaces would not be nil: the child's
	// stdio would be closed instead of the null device.
	if o.Stdin != nil {
		cmd.Stdin = o.Stdin
	}
	if o.Stdout != nil {
		cmd.Stdout = o.Stdout
	}
	if o.Stderr != nil {
		cmd.Stderr = o.Stderr
	}
	cmd.ExtraFiles = append(append(append([]*os.File(nil), o.Keep...), child), o.Extra...)
	if cmd.Path == "" {
		exe, err := sealedExe()
		if err != nil {
			parent.Close()
			return nil, fmt.Errorf("protecting the runtime binary: %w", err)
		}
		defer exe.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, exe)
		cmd.Path = "/proc/self/fd/" + strconv.Itoa(2+len(cmd.ExtraFiles))
	}
	pipeFd := 3 + len(o.Keep)
	// glibc registers rseq at start-up; in a child cloned from a Go thread
	// that registration can fail fatally ("rseq registration failed"), and
	// nothing in init needs rseq.
	env := []string{"_BERTH_INITPIPE=" + strconv.Itoa(pipeFd), "GLIBC_TUNABLES=glibc.pthread.rseq=0"}

	// A runtime without privileges over the namespaces it joins (rootless,
	// joining its container's user namespace, which owns the others)
	// cannot setns them from here: the child joins them all, user first,
	// and forks into a pid namespace it joined (Process.Forks).
	inChild := os.Geteuid() != 0 && joins(o.Join, specs.UserNamespace)
	var early, late []nsutil.Namespace
	for _, n := range o.Join {
		if inChild || n.Type.JoinedByConstructor() {
			early = append(early, n)
		} else {
			late = append(late, n)
		}
	}
	forks := inChild && joins(o.Join, specs.PIDNamespace) || o.UnshareAfterJoin&unix.CLONE_NEWPID != 0
	var nsFiles []*os.File
	defer func() {
		for _, f := range nsFiles {
			f.Close()
		}
	}()
	if o.Cgroup != nil && len(o.Cgroup.Tasks) > 0 {
		var parts []string
		for _, t := range o.Cgroup.Tasks {
			cmd.ExtraFiles = append(cmd.ExtraFiles, t.File)
			parts = append(parts, fmt.Sprintf("%d:%s", 2+len(cmd.ExtraFiles), t.Controller))
		}
		env = append(env, "_BERTH_CGROUP="+strings.Join(parts, ","))
	}
	if len(early) > 0 {
		// cgroup first, with the host's credentials (a cgroup namespace may
		// belong to the host's user namespace), then user: it grants the
		// capabilities the other joins need.
		var parts []string
		order := constructorOrder(early)
		if inChild {
			order = nsutil.SortForJoin(early)
		}
		for _, n := range order {
			f, err := os.Open(n.Path)
			if err != nil {
				parent.Close()
				return nil, fmt.Errorf("open %s namespace: %w", n.Type, err)
			}
			nsFiles = append(nsFiles, f)
			cmd.ExtraFiles = append(cmd.ExtraFiles, f)
			parts = append(parts, fmt.Sprintf("%d:%d", 2+len(cmd.ExtraFiles), n.Type.CloneFlag()))
		}
		env = append(env, "_BERTH_SETNS="+strings.Join(parts, ","))
	}
	if o.UnshareAfterJoin != 0 {
		env = append(env, "_BERTH_UNSHARE="+strconv.FormatUint(uint64(o.UnshareAfterJoin), 10))
	}
	if o.TimeOffsets != "" {
		env = append(env, "_BERTH_TIMENS="+o.TimeOffsets)
	}
	if forks {
		env = append(env, "_BERTH_FORK=1")
	}
	// An unprivileged runtime may write only the one mapping of its own
	// ids; anything more is newuidmap/newgidmap's (the ranges of
	// /etc/subuid and /etc/subgid). The child waits for them, then runs
	// itself again: only an execve as the namespace's root gives it the
	// capabilities there, which the first one, unmapped, could not.
	uidMaps, gidMaps := o.UIDMaps, o.GIDMaps
	helpers := o.Cloneflags&unix.CLONE_NEWUSER != 0 && os.Geteuid() != 0 &&
		!(selfMapping(o.UIDMaps, os.Geteuid()) && selfMapping(o.GIDMaps, os.Getegid()))
	if helpers {
		uidMaps, gidMaps = nil, nil
		env = append(env, "_BERTH_MAPS=1")
	}
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  o.Cloneflags,
		UidMappings: uidMaps,
		GidMappings: gidMaps,
		// Root may let the container call setgroups; runc denies it only rootless.
		GidMappingsEnableSetgroups: os.Geteuid() == 0,
		Setpgid:                    o.Setpgid,
	}
	if o.Cloneflags&unix.CLONE_NEWUSER != 0 && mapsRoot(uidMaps) && mapsRoot(gidMaps) {
		// The runtime's host uid is not mapped in the new user namespace:
		// become the namespace's root once the maps are written, or execve
		// would drop every capability.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: os.Geteuid() != 0}
	}
	if o.Cgroup != nil && o.Cgroup.Dir != nil {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(o.Cgroup.Dir.Fd())
	}

	if err := startOnThread(cmd, late, o.Affinity); err != nil {
		parent.Close()
		return nil, err
	}
	if helpers {
		err := writeMaps(cmd.Process.Pid, o.UIDMaps, o.GIDMaps)
		if err == nil {
			_, err = parent.Write([]byte{plan.CtlMapped})
		}
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			parent.Close()
			return nil, err
		}
	}
	return &Process{Cmd: cmd, Conn: ipc.NewConn(parent, seq), Pid: cmd.Process.Pid, Forks: forks}, nil
}

func joins(ns []nsutil.Namespace, t specs.LinuxNamespaceType) bool {
	for _, n := range ns {
		if n.Type == nsutil.Type(t) {
			return true
		}
	}
	return false
}

// AwaitPid is for a child that Forks: it reads the pid the child goes on
// as (its first message), reaps the intermediate process and makes the
// Process that one. The caller must be a subreaper (PR_SET_CHILD_SUBREAPER)
// to wait for it later.
func (p *Process) AwaitPid() error {
	m, err := p.Conn.Recv()
	if err != nil {
		return err
	}
	if m.Type != ipc.Pid {
		return fmt.Errorf("protocol error: %q before the process's pid", m.Type)
	}
	var v ipc.PidData
	if err := json.Unmarshal(m.Data, &v); err != nil || v.Pid <= 0 {
		return fmt.Errorf("malformed pid message: %s", m.Data)
	}
	p.Cmd.Wait() // the intermediate, which exited after the fork
	proc, err := os.FindProcess(v.Pid)
	if err != nil {
		return err
	}
	p.Cmd.Process, p.Pid, p.Forks = proc, v.Pid, false
	return nil
}

// constructorOrder sorts the namespaces the constructor joins: cgroup, then
// the usual join order (user first).
func constructorOrder(ns []nsutil.Namespace) []nsutil.Namespace {
	var out, rest []nsutil.Namespace
	for _, n := range ns {
		if n.Type == nsutil.Type(specs.CgroupNamespace) {
			out = append(out, n)
		} else {
			rest = append(rest, n)
		}
	}
	return append(out, nsutil.SortForJoin(rest)...)
}

// startOnThread starts cmd from a fresh locked OS thread that has first
// joined the given namespaces and taken the given CPU affinity.
func startOnThread(cmd *exec.Cmd, join []nsutil.Namespace, affinity []uint64) error {
	if len(join) == 0 && affinity == nil {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: this thread's namespaces and affinity are no
		// longer the process's, so it must exit with the goroutine.
		if affinity != nil {
			var set unix.CPUSet
			for i, w := range affinity {
				for b := 0; b < 64; b++ {
					if w&(1<<uint(b)) != 0 {
						set.Set(i*64 + b)
					}
				}
			}
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errc <- fmt.Errorf("error setting initial CPU affinity: %w", err)
				return
			}
		}
		for _, n := range nsutil.SortForJoin(join) {
			fd, err := unix.Open(n.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				errc <- fmt.Errorf("open %s namespace %s: %w", n.Type, n.Path, err)
				return
			}
			err = unix.Setns(fd, int(n.Type.CloneFlag()))
			unix.Close(fd)
			if err != nil {
				errc <- fmt.Errorf("join %s namespace %s: %w", n.Type, n.Path, err)
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// ErrInitDied is returned when the child exits without reporting.
var ErrInitDied = errors.New("init process exited unexpectedly")

// UserNamespace returns a handle on a new user namespace with the given id
// mappings, which no process holds once it returns (an idmapped mount's
// mapping: MOUNT_ATTR_IDMAP takes a user namespace, not a table). A child
// is started in the namespace, stopped where the executor waits for its
// plan, its namespace opened, and the child killed.
func UserNamespace(uidMaps, gidMaps []syscall.SysProcIDMap) (*os.File, error) {
	p, err := Start(&Options{Cloneflags: unix.CLONE_NEWUSER, UIDMaps: uidMaps, GIDMaps: gidMaps}, nil)
	if err != nil {
		return nil, fmt.Errorf("user namespace for an id mapping: %w", err)
	}
	defer func() {
		p.Cmd.Process.Kill()
		p.Cmd.Wait()
		p.Conn.Close()
	}()
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", p.Pid))
	if err != nil {
		return nil, fmt.Errorf("user namespace for an id mapping: %w", err)
	}
	return f, nil
}

// mapsRoot reports whether id 0 of the namespace is mapped.
func mapsRoot(m []syscall.SysProcIDMap) bool {
	for _, x := range m {
		if x.ContainerID == 0 && x.Size > 0 {
			return true
		}
	}
	return false
}

// selfMapping reports the one mapping an unprivileged process may write
// itself: a single id, its own.
func selfMapping(m []syscall.SysProcIDMap, id int) bool {
	return len(m) == 0 || len(m) == 1 && m[0].HostID == id && m[0].Size == 1
}

// writeMaps runs newuidmap and newgidmap (Debian's uidmap) for pid.
func writeMaps(pid int, uids, gids []syscall.SysProcIDMap) error {
	for _, t := range []struct {
		tool string
		maps []syscall.SysProcIDMap
	}{{"newuidmap", uids}, {"newgidmap", gids}} {
		if len(t.maps) == 0 {
			continue
		}
		path, err := exec.LookPath(t.tool)
		if err != nil {
			return fmt.Errorf("the config maps more ids than this user's own: %s is needed (Debian package uidmap): %w", t.tool, err)
		}
		args := []string{strconv.Itoa(pid)}
		for _, m := range t.maps {
			args = append(args, strconv.Itoa(m.ContainerID), strconv.Itoa(m.HostID), strconv.Itoa(m.Size))
		}
		if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %w: %s", t.tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
