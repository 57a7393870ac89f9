package initproc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/cyphar/filepath-securejoin/pathrs-lite/procfs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/ipc"
	"berth/internal/linux/caps"
	"berth/internal/linux/console"
	"berth/internal/linux/rootfs"
)

func init() {
	// Namespaces, capabilities and the cgroup namespace are per-thread state:
	// all setup and the final execve happen on the main thread.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.LockOSThread()
	}
}

// Main is `berth init`. It never returns: it execs the container process or
// exits after reporting a failure to the parent exactly once.
func Main() {
	fd, err := strconv.Atoi(os.Getenv(EnvPipe))
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth init: not started by berth (no "+EnvPipe+")")
		os.Exit(255)
	}
	os.Unsetenv(EnvPipe)
	pipe := os.NewFile(uintptr(fd), "init-pipe")
	conn := ipc.NewConn(pipe, ipc.ChildOfParent())
	reported := false
	fail := func(err error) {
		if !reported {
			reported = true
			_ = conn.Send(ipc.Message{Type: ipc.Error, Error: err.Error()})
		}
		os.Exit(1)
	}
	defer func() {
		if r := recover(); r != nil {
			fail(fmt.Errorf("panic: %v", r))
		}
	}()
	m, err := conn.Recv()
	if err != nil {
		fail(fmt.Errorf("reading bootstrap: %w", err))
	}
	var cfg Config
	if err := decode(m, &cfg); err != nil {
		fail(err)
	}
	if err := run(conn, &cfg); err != nil {
		fail(err)
	}
}

func run(conn *ipc.Conn, c *Config) error {
	p := c.Process
	if p == nil {
		return errors.New("no process in config")
	}
	if err := checkIDs(p.User); err != nil {
		return err
	}
	var warnings []string
	// Our fd table as procfs shows it now: after pivot_root (or a chroot
	// without any /proc) this is still how init reaches exec.fifo.
	fdDir, err := unix.Open("/proc/self/fd", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /proc/self/fd: %w", err)
	}
	if c.WaitPlaced && c.PlacedEarly {
		if err := waitPlaced(conn, c); err != nil {
			return err
		}
	}
	if !c.Exec {
		if err := setupRootfs(conn, c); err != nil {
			return err
		}
	}
	if err := setupConsole(c, p); err != nil {
		return err
	}
	if !c.Exec {
		if err := finalizeRootfs(c); err != nil {
			return err
		}
	}
	if p.OOMScoreAdj != nil && !c.Exec {
		// Through the verified procfs handle, as for the LSM labels.
		if err := writeThreadSelf("oom_score_adj", strconv.Itoa(*p.OOMScoreAdj)); err != nil {
			return fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	if !c.NoNewKeyring && !c.Exec {
		// A fresh session keyring keeps the host's keys out of reach. Some
		// kernels (or seccomp'd hosts) refuse; runc ignores ENOSYS/EACCES too.
		name := "_ses." + c.ID
		if _, err := unix.KeyctlJoinSessionKeyring(name); err != nil && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("join session keyring: %w", err)
		}
	}
	warnings = append(warnings, lsmWarnings(p)...)
	env := buildEnv(p, c.ExtraEnv)
	path, err := lookPath(p.Args, env, p.Cwd)
	if err != nil {
		return err
	}
	sets := caps.FromSpec(p.Capabilities)
	for _, u := range sets.Unknown {
		warnings = append(warnings, "ignoring unknown or unavailable capabilities: "+u)
	}
	if err := markCloexec(3 + c.KeepFds); err != nil {
		return err
	}
	if err := fixStdioOwner(p.User.UID, p.User.GID); err != nil {
		return err
	}
	filter, fwarn, err := compileSeccomp(c, p)
	if err != nil {
		return err
	}
	warnings = append(warnings, fwarn...)
	if err := finalize(conn, c, p, sets, filter); err != nil {
		return err
	}
	if err := conn.SendData(ipc.Ready, Ready{Warnings: warnings}); err != nil {
		return err
	}
	// From here the parent may be gone (create has exited); failures go to
	// stderr and the exit status.
	conn.Close()
	if !c.Exec {
		if err := waitStart(fdDir, c.FifoFd); err != nil {
			fmt.Fprintln(os.Stderr, "berth init:", err)
			os.Exit(255)
		}
		if c.Spec.Hooks != nil && len(c.Spec.Hooks.StartContainer) > 0 {
			if err := runStartContainerHooks(c); err != nil {
				fmt.Fprintln(os.Stderr, "berth init:", err)
				os.Exit(255)
			}
		}
	}
	if filter != nil && filter.late {
		if err := filter.load(nil); err != nil {
			fmt.Fprintln(os.Stderr, "berth init:", err)
			os.Exit(255)
		}
	}
	err = unix.Exec(path, p.Args, env)
	fmt.Fprintf(os.Stderr, "berth init: exec %s: %v\n", path, err)
	os.Exit(255)
	return nil
}

// waitPlaced blocks until the parent has put init in its cgroups (and set
// limits and the network), then unshares the cgroup namespace so its root is
// the container's cgroup.
func waitPlaced(conn *ipc.Conn, c *Config) error {
	m, err := conn.Recv()
	if err != nil {
		return fmt.Errorf("waiting for cgroup placement: %w", err)
	}
	if m.Type != ipc.Placed {
		return fmt.Errorf("unexpected %q while waiting for cgroup placement", m.Type)
	}
	var pi PlacedInfo
	if len(m.Data) > 0 {
		if err := jsonUnmarshal(m.Data, &pi); err != nil {
			return err
		}
	}
	c.SeccompProgram = pi.SeccompProgram
	if c.UnshareCgroupNS {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("unshare cgroup namespace: %w", err)
		}
	}
	return nil
}

func decode(m ipc.Message, v any) error {
	if m.Type != ipc.Bootstrap {
		return fmt.Errorf("expected bootstrap, got %q", m.Type)
	}
	return jsonUnmarshal(m.Data, v)
}

// setupRootfs does the mount-namespace work up to pivot_root, with the
// prestart/createRuntime hook stop in the middle (runc's order).
func setupRootfs(conn *ipc.Conn, c *Config) error {
	s := c.Spec
	rc := &rootfs.Config{Rootfs: c.Rootfs, Spec: s, UserNS: c.UserNS, CgroupNS: c.CgroupNS, CgroupPaths: c.CgroupPaths}
	if c.MountNS {
		if err := rootfs.PrepareRoot(rc); err != nil {
			return err
		}
		if err := rootfs.MountAll(rc); err != nil {
			return err
		}
		if err := rootfs.CreateDevices(rc); err != nil {
			return err
		}
	}
	if c.NewUTSNS {
		if s.Hostname != "" {
			if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
				return fmt.Errorf("sethostname: %w", err)
			}
		}
		if s.Domainname != "" {
			if err := unix.Setdomainname([]byte(s.Domainname)); err != nil {
				return fmt.Errorf("setdomainname: %w", err)
			}
		}
	}
	if c.WaitPlaced && !c.PlacedEarly {
		if err := waitPlaced(conn, c); err != nil {
			return err
		}
	}
	if c.RunHooks {
		if err := conn.Send(ipc.Message{Type: ipc.Hooks}); err != nil {
			return err
		}
		m, err := conn.Recv()
		if err != nil {
			return fmt.Errorf("waiting for hooks: %w", err)
		}
		if m.Type != ipc.Resume {
			return fmt.Errorf("unexpected %q while waiting for hooks", m.Type)
		}
	}
	if s.Hooks != nil && len(s.Hooks.CreateContainer) > 0 {
		if err := runHooks("createContainer", s.Hooks.CreateContainer, c, "created"); err != nil {
			return err
		}
	}
	if c.MountNS && c.Process.Cwd != "" && c.Process.Cwd != "/" {
		// A cwd the image lacks is created, as runc does.
		if err := rootfs.EnsureDir(c.Rootfs, c.Process.Cwd); err != nil {
			return fmt.Errorf("create cwd %s: %w", c.Process.Cwd, err)
		}
	}
	if c.MountNS {
		if c.NoPivot {
			if err := rootfs.MoveRoot(c.Rootfs); err != nil {
				return err
			}
		} else if err := rootfs.PivotRoot(c.Rootfs); err != nil {
			return err
		}
	} else if err := unix.Chroot(c.Rootfs); err != nil {
		// No mount namespace: the rootfs can only be a chroot.
		return fmt.Errorf("chroot %s: %w", c.Rootfs, err)
	} else if err := unix.Chdir("/"); err != nil {
		return err
	}
	return nil
}

func finalizeRootfs(c *Config) error {
	s := c.Spec
	if s.Linux != nil {
		if err := rootfs.Sysctl(s.Linux.Sysctl); err != nil {
			return err
		}
		if c.MountNS {
			if err := rootfs.ReadonlyPaths(s.Linux.ReadonlyPaths); err != nil {
				return err
			}
			if err := rootfs.MaskPaths(s.Linux.MaskedPaths, s.Linux.MountLabel); err != nil {
				return err
			}
		}
	}
	if s.Root != nil && s.Root.Readonly && c.MountNS {
		if err := rootfs.ReadonlyRoot(); err != nil {
			return err
		}
	}
	return nil
}

// setupConsole allocates the pty inside the container, hands the master to
// the console socket, and makes the slave the controlling terminal and stdio.
func setupConsole(c *Config, p *specs.Process) error {
	// init leads a session of its own; an exec process only needs one to
	// take a controlling terminal.
	if !c.Exec || p.Terminal {
		if _, err := unix.Setsid(); err != nil && !c.Exec {
			return fmt.Errorf("setsid: %w", err)
		}
	}
	if !p.Terminal {
		return nil
	}
	if c.ConsoleSocketFd < 0 {
		return errors.New("terminal requested but no console socket")
	}
	sock := os.NewFile(uintptr(c.ConsoleSocketFd), "console-socket")
	defer sock.Close()
	master, slave, err := console.OpenPty("/dev/pts/ptmx")
	if err != nil {
		return err
	}
	defer master.Close()
	defer slave.Close()
	if p.ConsoleSize != nil {
		if err := console.SetSize(slave, uint16(p.ConsoleSize.Height), uint16(p.ConsoleSize.Width)); err != nil {
			return fmt.Errorf("set console size: %w", err)
		}
	}
	if !c.Exec && c.MountNS {
		if err := mountConsole(slave); err != nil {
			return err
		}
	}
	if err := console.SendMaster(sock, master); err != nil {
		return fmt.Errorf("send console master: %w", err)
	}
	for i := 0; i <= 2; i++ {
		if err := unix.Dup3(int(slave.Fd()), i, 0); err != nil {
			return fmt.Errorf("dup2 pty slave: %w", err)
		}
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	return nil
}

func mountConsole(slave *os.File) error {
	fd, err := unix.Open("/dev/console", unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0o600)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return errors.New("/dev/console is a symlink")
		}
		return &os.PathError{Op: "create", Path: "/dev/console", Err: err}
	}
	defer unix.Close(fd)
	src := "/proc/thread-self/fd/" + strconv.Itoa(int(slave.Fd()))
	dst := "/proc/thread-self/fd/" + strconv.Itoa(fd)
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return &os.PathError{Op: "bind mount", Path: "/dev/console", Err: err}
	}
	return nil
}

var rlimitNames = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// RlimitType maps an OCI rlimit name to its resource number.
func RlimitType(name string) (int, bool) { n, ok := rlimitNames[name]; return n, ok }

func setRlimits(rl []specs.POSIXRlimit) error {
	for _, r := range rl {
		t, ok := rlimitNames[r.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit type %q", r.Type)
		}
		if err := unix.Prlimit(0, t, &unix.Rlimit{Cur: r.Soft, Max: r.Hard}, nil); err != nil {
			return fmt.Errorf("error setting rlimit type %d: %w", t, err)
		}
	}
	return nil
}

func lsmWarnings(p *specs.Process) []string {
	var w []string
	if p.ApparmorProfile != "" {
		if _, err := os.Stat("/sys/kernel/security/apparmor"); err != nil {
			w = append(w, "apparmor profile "+p.ApparmorProfile+" requested but AppArmor is not enabled on this host; continuing without it")
		} else if err := writeThreadSelf("attr/apparmor/exec", "exec "+p.ApparmorProfile); err != nil {
			w = append(w, "apparmor profile "+p.ApparmorProfile+": "+err.Error())
		}
	}
	if p.SelinuxLabel != "" {
		if _, err := os.Stat("/sys/fs/selinux/enforce"); err != nil {
			w = append(w, "selinux label "+p.SelinuxLabel+" requested but SELinux is not enabled on this host; continuing without it")
		} else if err := writeThreadSelf("attr/exec", p.SelinuxLabel); err != nil {
			w = append(w, "selinux label: "+err.Error())
		}
	}
	return w
}

// writeThreadSelf writes /proc/thread-self/<sub> through pathrs-lite's
// verified private procfs handle, never through the container's /proc.
// CVE-2025-52881: the container could arrange its /proc so that the label
// write landed in another procfs file (a no-op, or worse), and the process
// ran unconfined while the runtime believed the label was set.
func writeThreadSelf(sub, data string) error {
	proc, err := procfs.OpenProcRoot()
	if err != nil {
		return err
	}
	defer proc.Close()
	h, closer, err := proc.OpenThreadSelf(sub)
	if err != nil {
		return err
	}
	defer closer()
	defer h.Close()
	f, err := pathrs.Reopen(h, unix.O_WRONLY|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(data)
	return err
}

// buildEnv is the process env plus the extras (LISTEN_FDS), with HOME
// filled in from /etc/passwd when missing, as runc does.
func buildEnv(p *specs.Process, extra []string) []string {
	env := append(append([]string(nil), p.Env...), extra...)
	for _, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			return env
		}
	}
	home := "/"
	if h := homeOf(p.User.UID); h != "" {
		home = h
	}
	return append(env, "HOME="+home)
}

// maxPasswdSize bounds the /etc/passwd read (containerd caps it at 10 MiB).
const maxPasswdSize = 10 << 20

// homeOf looks uid up in the container's /etc/passwd. The file is the
// image's: opened non-blocking and read only if it is a regular file, at most
// maxPasswdSize bytes, so a FIFO cannot hang init and a huge file cannot
// exhaust its memory (CVE-2026-47262's class).
func homeOf(uid uint32) string {
	fd, err := unix.Open("/etc/passwd", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	f := os.NewFile(uintptr(fd), "/etc/passwd")
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPasswdSize))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 6 && f[2] == strconv.Itoa(int(uid)) {
			return f[5]
		}
	}
	return ""
}

// lookPath resolves args[0] inside the container (now the root), with the
// exact wording runc and exec.LookPath use: clients map "executable file not
// found" and "no such file or directory" to 127, "permission denied" to 126.
func lookPath(args, env []string, cwd string) (string, error) {
	if len(args) == 0 || args[0] == "" {
		return "", errors.New("args must not be empty")
	}
	name := args[0]
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) && cwd != "" {
			p = filepath.Join(cwd, p)
		}
		if err := checkExec(p); err != nil {
			return "", fmt.Errorf("exec: %q: %w", name, err)
		}
		return name, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			path = e[5:]
		}
	}
	var permErr error
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		err := checkExec(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, os.ErrPermission) && permErr == nil {
			permErr = err
		}
	}
	if permErr != nil {
		return "", fmt.Errorf("exec: %q: %w", name, permErr)
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

func checkExec(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return unwrap(err)
	}
	if st.IsDir() {
		return errors.New("is a directory")
	}
	if err := unix.Access(p, unix.X_OK); err != nil {
		return unwrap(err)
	}
	return nil
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkIDs refuses ids above MaxInt32, as runc does. CVE-2024-40635: such
// ids wrap around; 4294967295 is -1 to setresuid/setresgid, which means
// "leave unchanged", so the container ran as root.
func checkIDs(u specs.User) error {
	const maxID = 1<<31 - 1
	if u.UID > maxID {
		return fmt.Errorf("invalid uid %d: must be at most %d", u.UID, maxID)
	}
	if u.GID > maxID {
		return fmt.Errorf("invalid gid %d: must be at most %d", u.GID, maxID)
	}
	for _, g := range u.AdditionalGids {
		if g > maxID {
			return fmt.Errorf("invalid additional gid %d: must be at most %d", g, maxID)
		}
	}
	return nil
}

// markCloexec marks every fd from `from` up close-on-exec, so nothing the
// runtime held leaks into the container (CVE-2024-21626 leaked a cgroup dir fd).
// close_range needs no /proc, which may belong to another pid namespace
// when the mount namespace was joined.
func markCloexec(from int) error {
	if err := unix.CloseRange(uint(from), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return os.NewSyscallError("close_range", err)
	}
	return nil
}

// fixStdioOwner chowns stdio to the container user, so a non-root process
// can reopen /proc/self/fd/N; the null device and refusals are left alone
// (runc). The null device is recognised by the fd's own type and number,
// never by comparing with the container's /dev/null: a container whose
// /dev/null is a plain file (a /dev bind mount, CVE-2026-88265 / runc #3674)
// made the host's /dev/null, passed as stdin, look foreign, and it was
// chowned to the container user on the host.
func fixStdioOwner(uid, gid uint32) error {
	for fd := 0; fd <= 2; fd++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == 1 && unix.Minor(st.Rdev) == 3 || st.Uid == uid {
			continue
		}
		if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS) || errors.Is(err, unix.EINVAL) {
				continue
			}
			return fmt.Errorf("chown stdio fd %d: %w", fd, err)
		}
	}
	return nil
}

// finalize drops to the container's user and capabilities: bounding set
// first (needs CAP_SETPCAP), then the ids with keepcaps, then capset.
func finalize(conn *ipc.Conn, c *Config, p *specs.Process, sets caps.Sets, filter *seccompFilter) error {
	// CVE-2016-9962: from the capability drop below until execve, init has
	// the container's uid and capabilities but still holds runtime fds (the
	// exec.fifo handle, the init socket); a created container's init waits
	// like that until `start`. While dumpable, container root in the same
	// pid namespace could ptrace it or read /proc/PID/fd and take those fds.
	// execve makes the container's own program dumpable again.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("set non-dumpable: %w", err)
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	// Check the cwd while still privileged and before any seccomp filter
	// (which may deny getcwd): a cwd that resolves outside the root (a
	// leaked fd, CVE-2024-21626) is refused.
	if err := unix.Chdir(cwd); err == nil {
		if wd, err := os.Getwd(); err != nil || !strings.HasPrefix(wd, "/") {
			return fmt.Errorf("current working directory is outside of container mount namespace root -- possible container breakout detected")
		}
	}
	if filter != nil && !filter.late && !p.NoNewPrivileges {
		// Privileged load: still holding CAP_SYS_ADMIN.
		if err := filter.load(conn); err != nil {
			return err
		}
		filter = nil
	}
	if err := sets.DropBounding(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set keepcaps: %w", err)
	}
	// As late as possible while still privileged (raising a hard limit
	// needs CAP_SYS_RESOURCE, and only our own uid may prlimit us later), so
	// a small RLIMIT_AS does not starve the Go runtime during setup.
	if err := setRlimits(p.Rlimits); err != nil {
		return err
	}
	u := p.User
	if !(c.UserNS && len(u.AdditionalGids) == 0 && setgroupsDenied()) {
		gids := make([]int, 0, len(u.AdditionalGids))
		seen := map[uint32]bool{}
		for _, g := range u.AdditionalGids {
			if !seen[g] { // the config and exec -g may both name a group
				seen[g] = true
				gids = append(gids, int(g))
			}
		}
		if err := unix.Setgroups(gids); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
	}
	if err := unix.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", u.GID, err)
	}
	if err := unix.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", u.UID, err)
	}
	if u.Umask != nil {
		unix.Umask(int(*u.Umask))
	} else if !c.Exec {
		unix.Umask(0o022)
	}
	// Again as the container user: the cwd must be reachable by it.
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("chdir to cwd (%q) set in config.json failed: %w", cwd, err)
	}
	if err := sets.Apply(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("clear keepcaps: %w", err)
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if filter != nil && !filter.late {
		return filter.load(conn)
	}
	return nil
}

func closeFd(fd int) error { return unix.Close(fd) }

func setgroupsDenied() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err == nil && strings.TrimSpace(string(b)) == "deny"
}

// waitStart blocks opening exec.fifo for writing until `start` opens it for
// reading. The fd we hold is O_PATH; reopening through our fd dir means
// no path into the host's state dir is ever visible (CVE-2016-9962).
func waitStart(fdDir, fifoFd int) error {
	fd, err := unix.Openat(fdDir, strconv.Itoa(fifoFd), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	unix.Close(fdDir)
	if err != nil {
		return fmt.Errorf("open exec fifo: %w", err)
	}
	f := os.NewFile(uintptr(fd), "exec.fifo")
	if _, err := f.Write([]byte("0")); err != nil {
		f.Close()
		return fmt.Errorf("write exec fifo: %w", err)
	}
	unix.Close(fifoFd)
	return f.Close()
}
