package plan

import (
	"encoding/binary"
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Step is one thing the executor does. Each type below is one Op; its
// fields are the payload, in wire order (see wire.go).
type Step interface {
	Op() Op
	encode(e *encoder)
}

// Plan is a container setup compiled by the parent: the steps the executor
// carries out, in order. HookState steps carry the container state for
// hooks; Encode fills in the init pid, which exists only once the process
// the plan is for has been started.
type Plan struct {
	Steps []Step
}

// Encode returns the plan in wire form; pid is the pid hooks see in the
// state (the container's init as the runtime sees it).
func (p *Plan) Encode(pid int) []byte {
	e := &encoder{pid: pid}
	e.u32(Magic)
	e.u32(Version)
	for _, s := range p.Steps {
		e.u32(uint32(s.Op()))
		at := len(e.b)
		e.u32(0)
		s.encode(e)
		binary.NativeEndian.PutUint32(e.b[at:], uint32(len(e.b)-at-4))
	}
	out := binary.NativeEndian.AppendUint32(make([]byte, 0, 4+len(e.b)), uint32(len(e.b)))
	return append(out, e.b...)
}

type encoder struct {
	b   []byte
	pid int
}

func (e *encoder) u32(v uint32) { e.b = binary.NativeEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.NativeEndian.AppendUint64(e.b, v) }
func (e *encoder) flag(v bool) {
	if v {
		e.u32(1)
	} else {
		e.u32(0)
	}
}
func (e *encoder) str(s string) {
	e.u32(uint32(len(s)))
	e.b = append(append(e.b, s...), 0)
}
func (e *encoder) strs(v []string) {
	e.u32(uint32(len(v)))
	for _, s := range v {
		e.str(s)
	}
}
func (e *encoder) bytes(b []byte) {
	e.u32(uint32(len(b)))
	e.b = append(e.b, b...)
}

// FdDir opens /proc/self/fd for WaitStart.
type FdDir struct{}

func (FdDir) Op() Op          { return OpFdDir }
func (FdDir) encode(*encoder) {}

// WaitPlaced blocks for CtlPlaced, then unshares Unshare (0 for nothing).
type WaitPlaced struct {
	Unshare    uint32
	UnshareErr string
	Unexpected string
}

func (WaitPlaced) Op() Op { return OpWaitPlaced }
func (s WaitPlaced) encode(e *encoder) {
	e.u32(s.Unshare)
	e.str(s.UnshareErr)
	e.str(s.Unexpected)
}

// HostMount is mount(2) on host paths.
type HostMount struct {
	Source, Target, FSType string
	Flags                  uint64
	Data                   string
	Err                    string
}

func (HostMount) Op() Op { return OpHostMount }
func (s HostMount) encode(e *encoder) {
	e.str(s.Source)
	e.str(s.Target)
	e.str(s.FSType)
	e.u64(s.Flags)
	e.str(s.Data)
	e.str(s.Err)
}

// OpenRoot sets the anchor of in-root resolution.
type OpenRoot struct{ Path string }

func (OpenRoot) Op() Op              { return OpOpenRoot }
func (s OpenRoot) encode(e *encoder) { e.str(s.Path) }

// Mount is one of the config's mounts.
type Mount struct {
	Kind               uint32
	MountFlags         uint32
	Err                string
	Source, Dest       string
	FSType, Data       string
	Flags              uint64
	Propagation        []uint64
	AttrSet, AttrClear uint64
	// Index is the mount's place in the config, which a request for its
	// source names (MountAttach, MountFAskSource).
	Index uint32
}

func (Mount) Op() Op { return OpMount }
func (s Mount) encode(e *encoder) {
	e.u32(s.Kind)
	e.u32(s.MountFlags)
	e.str(s.Err)
	e.str(s.Source)
	e.str(s.Dest)
	e.str(s.FSType)
	e.str(s.Data)
	e.u64(s.Flags)
	e.u32(uint32(len(s.Propagation)))
	for _, f := range s.Propagation {
		e.u64(f)
	}
	e.u64(s.AttrSet)
	e.u64(s.AttrClear)
	e.u32(s.Index)
}

// CgroupBind is one v1 hierarchy inside the container's /sys/fs/cgroup.
type CgroupBind struct{ Name, Source string }

// MountCgroup is the container's cgroup mount.
type MountCgroup struct {
	Err     string
	Dest    string
	Flags   uint64
	Mode    uint32
	Unified string       // CgroupV2Bind
	Binds   []CgroupBind // CgroupV1Binds
}

func (MountCgroup) Op() Op { return OpMountCgroup }
func (s MountCgroup) encode(e *encoder) {
	e.str(s.Err)
	e.str(s.Dest)
	e.u64(s.Flags)
	e.u32(s.Mode)
	switch s.Mode {
	case CgroupV2Bind:
		e.str(s.Unified)
	case CgroupV1Binds:
		e.u32(uint32(len(s.Binds)))
		for _, b := range s.Binds {
			e.str(b.Name)
			e.str(b.Source)
		}
	}
}

// Device is one node in the container's /dev.
type Device struct {
	Err      string
	Path     string // clean, under /dev
	Mode     uint32 // type and permission bits
	Dev      uint64
	UID, GID uint32
}

// Link is a symlink in /dev: Name -> Target.
type Link struct{ Target, Name string }

// Devices makes the container's device nodes and /dev links.
type Devices struct {
	Bind    bool
	Devices []Device
	Links   []Link
}

func (Devices) Op() Op { return OpDevices }
func (s Devices) encode(e *encoder) {
	e.flag(s.Bind)
	e.u32(uint32(len(s.Devices)))
	for _, d := range s.Devices {
		e.str(d.Err)
		e.str(d.Path)
		e.u32(d.Mode)
		e.u64(d.Dev)
		e.u32(d.UID)
		e.u32(d.GID)
	}
	e.u32(uint32(len(s.Links)))
	for _, l := range s.Links {
		e.str(l.Target)
		e.str(l.Name)
	}
}

// Sethostname and Setdomainname set the new UTS namespace's names.
type Sethostname struct{ Name, Err string }
type Setdomainname struct{ Name, Err string }

func (Sethostname) Op() Op                { return OpSethostname }
func (s Sethostname) encode(e *encoder)   { e.str(s.Name); e.str(s.Err) }
func (Setdomainname) Op() Op              { return OpSetdomainname }
func (s Setdomainname) encode(e *encoder) { e.str(s.Name); e.str(s.Err) }

// HooksSync stops init while the parent runs prestart/createRuntime hooks.
type HooksSync struct{}

func (HooksSync) Op() Op          { return OpHooksSync }
func (HooksSync) encode(*encoder) {}

// RunHook runs one OCI hook with the container state on its stdin.
type RunHook struct {
	Err     string // "error running createContainer hook #0"
	Path    string
	Args    []string
	Env     []string
	Timeout uint32
	// State is the container state the hook reads; its Pid is set at
	// Encode (the plan is compiled before the process exists).
	State specs.State
	// KeepPid: State.Pid is already right (hooks the runtime runs for a
	// container that exists).
	KeepPid bool
	// ProcessEnv: the hook runs with the container process's environment
	// (a startContainer hook without an env of its own, as in runc).
	ProcessEnv bool
}

func (RunHook) Op() Op { return OpRunHook }
func (s RunHook) encode(e *encoder) {
	st := s.State
	if !s.KeepPid {
		st.Pid = e.pid
	}
	b, _ := json.Marshal(st) // specs.State marshals without error
	e.str(s.Err)
	e.str(s.Path)
	e.strs(s.Args)
	e.strs(s.Env)
	e.flag(s.ProcessEnv)
	e.u32(s.Timeout)
	e.str(string(b))
}

// MkdirInRoot creates a missing directory inside the root.
type MkdirInRoot struct{ Path, Err string }

func (MkdirInRoot) Op() Op              { return OpMkdirInRoot }
func (s MkdirInRoot) encode(e *encoder) { e.str(s.Path); e.str(s.Err) }

// PivotRoot makes Rootfs the root and detaches the old one.
type PivotRoot struct{ Rootfs string }

func (PivotRoot) Op() Op              { return OpPivotRoot }
func (s PivotRoot) encode(e *encoder) { e.str(s.Rootfs) }

// MoveRoot is --no-pivot: Detach (full procfs/sysfs mounts outside the
// rootfs, deepest first) are detached or covered, then the rootfs is moved
// over / and chrooted into.
type MoveRoot struct {
	Rootfs string
	Detach []string
}

func (MoveRoot) Op() Op              { return OpMoveRoot }
func (s MoveRoot) encode(e *encoder) { e.str(s.Rootfs); e.strs(s.Detach) }

// Chroot is the root of a container without a mount namespace.
type Chroot struct{ Rootfs string }

func (Chroot) Op() Op              { return OpChroot }
func (s Chroot) encode(e *encoder) { e.str(s.Rootfs) }

// Setsid makes the process a session leader.
type Setsid struct{ IgnoreError bool }

func (Setsid) Op() Op              { return OpSetsid }
func (s Setsid) encode(e *encoder) { e.flag(s.IgnoreError) }

// Console opens a pty inside the container, sends its master over the
// console socket and makes the slave the process's stdio and controlling
// terminal.
type Console struct {
	SocketFd     uint32
	Rows, Cols   uint32
	MountConsole bool
}

func (Console) Op() Op { return OpConsole }
func (s Console) encode(e *encoder) {
	e.u32(s.SocketFd)
	e.u32(s.Rows)
	e.u32(s.Cols)
	e.flag(s.MountConsole)
}

// Sysctl writes one linux.sysctl entry through a private procfs.
type Sysctl struct{ Key, Path, Value string }

func (Sysctl) Op() Op              { return OpSysctl }
func (s Sysctl) encode(e *encoder) { e.str(s.Key); e.str(s.Path); e.str(s.Value) }

// ReadonlyPath bind-mounts a path on itself read-only.
type ReadonlyPath struct{ Path string }

func (ReadonlyPath) Op() Op              { return OpReadonlyPath }
func (s ReadonlyPath) encode(e *encoder) { e.str(s.Path) }

// MaskPaths covers files with /dev/null and directories with an empty
// read-only tmpfs.
type MaskPaths struct {
	Paths     []string
	TmpfsData string
}

func (MaskPaths) Op() Op              { return OpMaskPaths }
func (s MaskPaths) encode(e *encoder) { e.strs(s.Paths); e.str(s.TmpfsData) }

// RemountReadonly makes the new root read-only.
type RemountReadonly struct{ Path string }

func (RemountReadonly) Op() Op              { return OpRemountReadonly }
func (s RemountReadonly) encode(e *encoder) { e.str(s.Path) }

// ProcWrite writes a /proc/thread-self file through a private procfs;
// WarnOnly turns a failure into a warning.
type ProcWrite struct {
	Path, Data string
	WarnOnly   bool
	Err        string
}

func (ProcWrite) Op() Op { return OpProcWrite }
func (s ProcWrite) encode(e *encoder) {
	e.str(s.Path)
	e.str(s.Data)
	e.flag(s.WarnOnly)
	e.str(s.Err)
}

// JoinKeyring joins a fresh session keyring.
type JoinKeyring struct{ Name string }

func (JoinKeyring) Op() Op              { return OpJoinKeyring }
func (s JoinKeyring) encode(e *encoder) { e.str(s.Name) }

// Env is the process environment; FillHome adds HOME from the container's
// /etc/passwd entry of UID ("/" without one).
type Env struct {
	Env      []string
	FillHome bool
	UID      uint32
}

func (Env) Op() Op { return OpEnv }
func (s Env) encode(e *encoder) {
	e.strs(s.Env)
	e.flag(s.FillHome)
	e.u32(s.UID)
}

// Lookup resolves Args[0] as exec.LookPath does, with the env's PATH.
type Lookup struct {
	Args  []string
	Cwd   string
	Quote string
}

func (Lookup) Op() Op              { return OpLookup }
func (s Lookup) encode(e *encoder) { e.strs(s.Args); e.str(s.Cwd); e.str(s.Quote) }

// CloexecFrom marks every fd from From up close-on-exec.
type CloexecFrom struct{ From uint32 }

func (CloexecFrom) Op() Op              { return OpCloexecFrom }
func (s CloexecFrom) encode(e *encoder) { e.u32(s.From) }

// FixStdio chowns stdio to the process user.
type FixStdio struct{ UID, GID uint32 }

func (FixStdio) Op() Op              { return OpFixStdio }
func (s FixStdio) encode(e *encoder) { e.u32(s.UID); e.u32(s.GID) }

// NonDumpable clears the dumpable flag until execve.
type NonDumpable struct{}

func (NonDumpable) Op() Op          { return OpNonDumpable }
func (NonDumpable) encode(*encoder) {}

// CheckCwd refuses a cwd that resolves outside the root.
type CheckCwd struct{ Cwd, Err string }

func (CheckCwd) Op() Op              { return OpCheckCwd }
func (s CheckCwd) encode(e *encoder) { e.str(s.Cwd); e.str(s.Err) }

// Seccomp loads a compiled filter; with Listener the notify fd goes to the
// parent (seccomp message) and the step waits for CtlSeccompDone.
type Seccomp struct {
	Flags                 uint32
	Listener              bool
	EACCES, ESRCH, EINVAL string
	OtherErr              string
	Program               []unix.SockFilter
}

func (Seccomp) Op() Op { return OpSeccomp }
func (s Seccomp) encode(e *encoder) {
	e.u32(s.Flags)
	e.flag(s.Listener)
	e.str(s.EACCES)
	e.str(s.ESRCH)
	e.str(s.EINVAL)
	e.str(s.OtherErr)
	b := make([]byte, 0, 8*len(s.Program))
	for _, in := range s.Program {
		b = binary.NativeEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.NativeEndian.AppendUint32(b, in.K)
	}
	e.bytes(b)
}

// Cap is one capability dropped from the bounding set.
type Cap struct {
	Number uint32
	Name   string
}

// DropBounding drops capabilities from the bounding set.
type DropBounding struct{ Caps []Cap }

func (DropBounding) Op() Op { return OpDropBounding }
func (s DropBounding) encode(e *encoder) {
	e.u32(uint32(len(s.Caps)))
	for _, c := range s.Caps {
		e.u32(c.Number)
		e.str(c.Name)
	}
}

// KeepCaps sets or clears PR_SET_KEEPCAPS.
type KeepCaps struct{ On bool }

func (KeepCaps) Op() Op              { return OpKeepCaps }
func (s KeepCaps) encode(e *encoder) { e.flag(s.On) }

// Rlimit is one process rlimit.
type Rlimit struct {
	Resource   uint32
	Soft, Hard uint64
	Err        string
}

// Rlimits sets the process rlimits.
type Rlimits struct{ Limits []Rlimit }

func (Rlimits) Op() Op { return OpRlimits }
func (s Rlimits) encode(e *encoder) {
	e.u32(uint32(len(s.Limits)))
	for _, l := range s.Limits {
		e.u32(l.Resource)
		e.u64(l.Soft)
		e.u64(l.Hard)
		e.str(l.Err)
	}
}

// Setgroups sets the supplementary groups; SkipIfDenied leaves them when
// the user namespace denies setgroups and the list is empty.
type Setgroups struct {
	SkipIfDenied bool
	Gids         []uint32
}

func (Setgroups) Op() Op { return OpSetgroups }
func (s Setgroups) encode(e *encoder) {
	e.flag(s.SkipIfDenied)
	e.u32(uint32(len(s.Gids)))
	for _, g := range s.Gids {
		e.u32(g)
	}
}

// Setresgid and Setresuid set all three ids.
type Setresgid struct {
	ID  uint32
	Err string
}
type Setresuid struct {
	ID  uint32
	Err string
}

func (Setresgid) Op() Op              { return OpSetresgid }
func (s Setresgid) encode(e *encoder) { e.u32(s.ID); e.str(s.Err) }
func (Setresuid) Op() Op              { return OpSetresuid }
func (s Setresuid) encode(e *encoder) { e.u32(s.ID); e.str(s.Err) }

// Umask sets the file mode creation mask.
type Umask struct{ Mask uint32 }

func (Umask) Op() Op              { return OpUmask }
func (s Umask) encode(e *encoder) { e.u32(s.Mask) }

// Chdir changes to the process cwd (as the container user).
type Chdir struct{ Dir, Err string }

func (Chdir) Op() Op              { return OpChdir }
func (s Chdir) encode(e *encoder) { e.str(s.Dir); e.str(s.Err) }

// Capset sets the effective, permitted and inheritable sets, then raises
// the ambient ones.
type Capset struct {
	Effective, Permitted, Inheritable, Ambient uint64
	Last                                       uint32
}

func (Capset) Op() Op { return OpCapset }
func (s Capset) encode(e *encoder) {
	e.u64(s.Effective)
	e.u64(s.Permitted)
	e.u64(s.Inheritable)
	e.u64(s.Ambient)
	e.u32(s.Last)
}

// NoNewPrivs sets PR_SET_NO_NEW_PRIVS.
type NoNewPrivs struct{}

func (NoNewPrivs) Op() Op          { return OpNoNewPrivs }
func (NoNewPrivs) encode(*encoder) {}

// Ready tells the parent the process is set up.
type Ready struct{}

func (Ready) Op() Op          { return OpReady }
func (Ready) encode(*encoder) {}

// WaitStart blocks on exec.fifo until `start`.
type WaitStart struct{ FifoFd uint32 }

func (WaitStart) Op() Op              { return OpWaitStart }
func (s WaitStart) encode(e *encoder) { e.u32(s.FifoFd) }

// Execve execs the container process.
type Execve struct{}

func (Execve) Op() Op          { return OpExec }
func (Execve) encode(*encoder) {}

// Exit ends a plan that only runs hooks.
type Exit struct{}

func (Exit) Op() Op          { return OpExit }
func (Exit) encode(*encoder) {}

func (e *encoder) words(w []uint64) {
	b := make([]byte, 0, 8*len(w))
	for _, x := range w {
		b = binary.NativeEndian.AppendUint64(b, x)
	}
	e.bytes(b)
}

// Affinity sets the process's CPU affinity; WarnOnly turns a failure into
// a warning (the reset of an inherited affinity).
type Affinity struct {
	Mask     []uint64
	WarnOnly bool
	Err      string
}

func (Affinity) Op() Op { return OpAffinity }
func (s Affinity) encode(e *encoder) {
	e.words(s.Mask)
	e.flag(s.WarnOnly)
	e.str(s.Err)
}

// Scheduler is sched_setattr(2) of the process.
type Scheduler struct {
	Policy                    uint32
	Flags                     uint64
	Nice                      int32
	Priority                  uint32
	Runtime, Deadline, Period uint64
	// CpusetErr is the error when the kernel refuses with EPERM because
	// the cgroup restricts the CPUs ("" when it does not).
	CpusetErr string
}

func (Scheduler) Op() Op { return OpScheduler }
func (s Scheduler) encode(e *encoder) {
	e.u32(s.Policy)
	e.u64(s.Flags)
	e.u32(uint32(s.Nice))
	e.u32(s.Priority)
	e.u64(s.Runtime)
	e.u64(s.Deadline)
	e.u64(s.Period)
	e.str(s.CpusetErr)
}

// IOPriority is ioprio_set(2) of the process group.
type IOPriority struct{ Value uint32 }

func (IOPriority) Op() Op              { return OpIOPriority }
func (s IOPriority) encode(e *encoder) { e.u32(s.Value) }

// Personality is personality(2).
type Personality struct{ Persona uint32 }

func (Personality) Op() Op              { return OpPersonality }
func (s Personality) encode(e *encoder) { e.u32(s.Persona) }

// MemoryPolicy is set_mempolicy(2).
type MemoryPolicy struct {
	Mode  uint32
	Nodes []uint64
}

func (MemoryPolicy) Op() Op { return OpMemoryPolicy }
func (s MemoryPolicy) encode(e *encoder) {
	e.u32(s.Mode)
	e.words(s.Nodes)
}

// ReadonlyTree makes every mount at and below Path (inside the root)
// read-only.
type ReadonlyTree struct{ Path string }

func (ReadonlyTree) Op() Op              { return OpReadonlyTree }
func (s ReadonlyTree) encode(e *encoder) { e.str(s.Path) }
