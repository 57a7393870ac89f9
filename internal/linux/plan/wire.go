package plan

// The wire format, defined once: the executor's C header
// (internal/nsenter/plan_gen.h) is generated from the tables in this file
// by `go generate` (see header.go), and TestHeaderCurrent fails when the
// checked-in header differs from what these tables produce.
//
// A plan on the wire:
//
//	u32 length of what follows
//	u32 Magic
//	u32 Version
//	steps, each: u32 op, u32 payload length, payload
//
// Payload fields are native-endian u32/u64; a string is a u32 length, its
// bytes and a NUL (so the executor uses it in place); a list is a u32 count
// and its elements; bytes are a u32 length and the raw bytes. The executor
// reads each step's payload through a reader bounded by the step's length,
// and a step that leaves bytes unread, or reads past its end, fails the
// plan: a parent and an executor that disagree about a step's layout can
// never run on.

// Magic opens every plan ("PLAN" read as a little-endian u32).
const Magic = 0x4e414c50

// Version is the plan format; the executor refuses any other.
const Version = 1

// MaxSize bounds a plan on the wire; the executor refuses a larger length.
const MaxSize = 64 << 20

// Op is a step kind.
type Op uint32

// The step kinds. Each comment is the payload layout; "str" is a string,
// "[]X" a list. Values are part of the wire format: append, never renumber.
const (
	opInvalid Op = iota
	// OpFdDir: (none). Opens /proc/self/fd (O_PATH) for WaitStart: after
	// pivot_root it is still how init reaches exec.fifo.
	OpFdDir
	// OpWaitPlaced: u32 unshare flags, str unshare error prefix, str
	// unexpected-message error. Blocks for the parent's CtlPlaced byte, then
	// unshares (a new cgroup namespace once init is in its cgroups).
	OpWaitPlaced
	// OpHostMount: str source, str target, str fstype, u64 flags, str data,
	// str error prefix. mount(2) on host paths, before any root is open.
	OpHostMount
	// OpOpenRoot: str path. The in-root anchor for every later path the
	// bundle controls.
	OpOpenRoot
	// OpMount: u32 kind (Mount*), u32 mount flags (MountF*), str error
	// prefix, str source, str destination (clean, absolute), str fstype,
	// str data, u64 mount(2) flags, []u64 propagation flags, u64
	// mount_setattr attr_set, u64 attr_clr, u32 fd of a detached mount
	// (MountAttach).
	OpMount
	// OpMountCgroup: str error prefix, str destination, u64 flags, u32
	// mode (Cgroup*); CgroupV2Bind: str unified dir; CgroupV1Binds:
	// [](str name, str source).
	OpMountCgroup
	// OpDevices: u32 bind (a user namespace: bind the host nodes instead of
	// mknod), [](str error prefix, str clean path, u32 mode, u64 dev, u32
	// uid, u32 gid), [](str target, str name) links in /dev.
	OpDevices
	// OpSethostname, OpSetdomainname: str name, str error prefix.
	OpSethostname
	OpSetdomainname
	// OpHooksSync: (none). Sends the hooks message and blocks for the
	// parent's CtlResume byte (prestart and createRuntime hooks ran).
	OpHooksSync
	// OpRunHook: str error prefix, str path, []str args, []str env, u32
	// use the process env (OpEnv's) instead, u32 timeout in seconds (0:
	// none), str state JSON for its stdin.
	OpRunHook
	// OpMkdirInRoot: str path, str error prefix. Creates a missing
	// directory inside the root (the process cwd, as runc does).
	OpMkdirInRoot
	// OpPivotRoot: str rootfs. pivot_root(".", ".") and the old root
	// detached; closes the in-root anchor.
	OpPivotRoot
	// OpMoveRoot: str rootfs, []str mounts to detach first. --no-pivot.
	OpMoveRoot
	// OpChroot: str rootfs. No mount namespace: the root is a chroot.
	OpChroot
	// OpSetsid: u32 ignore failure.
	OpSetsid
	// OpConsole: u32 console socket fd, u32 rows, u32 cols (0: leave),
	// u32 mount the slave on /dev/console.
	OpConsole
	// OpSysctl: str key, str path below the procfs root, str value.
	OpSysctl
	// OpReadonlyPath: str path.
	OpReadonlyPath
	// OpMaskPaths: []str paths, str tmpfs data for masked directories.
	OpMaskPaths
	// OpRemountReadonly: str path (the new root).
	OpRemountReadonly
	// OpProcWrite: str path below /proc/thread-self, str data, u32 warn
	// only, str error prefix. Through a private procfs instance.
	OpProcWrite
	// OpJoinKeyring: str name.
	OpJoinKeyring
	// OpEnv: []str env, u32 fill HOME, u32 uid whose home it is.
	OpEnv
	// OpLookup: []str args, str cwd, str quoted args[0]. Resolves the
	// executable with the env's PATH.
	OpLookup
	// OpCloexecFrom: u32 first fd. Every fd from it up is close-on-exec.
	OpCloexecFrom
	// OpFixStdio: u32 uid, u32 gid.
	OpFixStdio
	// OpNonDumpable: (none).
	OpNonDumpable
	// OpCheckCwd: str cwd, str breakout error.
	OpCheckCwd
	// OpSeccomp: u32 filter flags, u32 listener, str EACCES, ESRCH and
	// EINVAL messages, str other-errno prefix, bytes program (8-byte
	// sock_filter instructions).
	OpSeccomp
	// OpDropBounding: [](u32 cap, str name).
	OpDropBounding
	// OpKeepCaps: u32 on.
	OpKeepCaps
	// OpRlimits: [](u32 resource, u64 soft, u64 hard, str error prefix).
	OpRlimits
	// OpSetgroups: u32 skip when /proc/self/setgroups is "deny" and the
	// list is empty, []u32 gids.
	OpSetgroups
	// OpSetresgid, OpSetresuid: u32 id, str error prefix.
	OpSetresgid
	OpSetresuid
	// OpUmask: u32 mask.
	OpUmask
	// OpChdir: str dir, str error prefix.
	OpChdir
	// OpCapset: u64 effective, permitted, inheritable, ambient; u32 last cap.
	OpCapset
	// OpNoNewPrivs: (none).
	OpNoNewPrivs
	// OpReady: (none). Sends ready; from here failures go to stderr with
	// exit status 255, the parent may be gone.
	OpReady
	// OpWaitStart: u32 exec.fifo fd. Blocks opening it for writing until
	// `start` opens it for reading.
	OpWaitStart
	// OpExec: (none). execve of what OpLookup resolved, with OpEnv's env.
	OpExec
	// OpExit: (none). Exits 0 (a plan that only runs hooks).
	OpExit
	// OpAffinity: bytes CPU mask (u64 words), u32 warn only, str error
	// prefix. sched_setaffinity of the process.
	OpAffinity
	// OpScheduler: u32 policy, u64 flags, u32 nice (signed), u32 priority,
	// u64 runtime, u64 deadline, u64 period, str error when EPERM comes
	// from a cpuset ("" for none). sched_setattr of the process.
	OpScheduler
	// OpIOPriority: u32 ioprio (class << 13 | level). ioprio_set of the
	// process group.
	OpIOPriority
	// OpPersonality: u32 persona.
	OpPersonality
	// OpMemoryPolicy: u32 mode with flags, bytes node mask (u64 words).
	OpMemoryPolicy
	// OpReadonlyTree: str path inside the root. Every mount at and below
	// it read-only (mount_setattr AT_RECURSIVE); nothing there, nothing done.
	OpReadonlyTree
	opCount
)

// opNames are the steps' names in error messages ("plan: step mount: ...").
var opNames = [...]string{
	opInvalid: "invalid", OpFdDir: "fd-dir", OpWaitPlaced: "wait-placed", OpHostMount: "host-mount",
	OpOpenRoot: "open-root", OpMount: "mount", OpMountCgroup: "mount-cgroup", OpDevices: "devices",
	OpSethostname: "sethostname", OpSetdomainname: "setdomainname", OpHooksSync: "hooks-sync",
	OpRunHook: "run-hook", OpMkdirInRoot: "mkdir-in-root", OpPivotRoot: "pivot-root", OpMoveRoot: "move-root",
	OpChroot: "chroot", OpSetsid: "setsid", OpConsole: "console", OpSysctl: "sysctl",
	OpReadonlyPath: "readonly-path", OpMaskPaths: "mask-paths", OpRemountReadonly: "remount-readonly",
	OpProcWrite: "proc-write", OpJoinKeyring: "join-keyring", OpEnv: "env", OpLookup: "lookup",
	OpCloexecFrom: "cloexec-from", OpFixStdio: "fix-stdio", OpNonDumpable: "non-dumpable",
	OpCheckCwd: "check-cwd", OpSeccomp: "seccomp", OpDropBounding: "drop-bounding", OpKeepCaps: "keep-caps",
	OpRlimits: "rlimits", OpSetgroups: "setgroups", OpSetresgid: "setresgid", OpSetresuid: "setresuid",
	OpUmask: "umask", OpChdir: "chdir", OpCapset: "capset", OpNoNewPrivs: "no-new-privs", OpReady: "ready",
	OpWaitStart: "wait-start", OpExec: "exec", OpExit: "exit", OpAffinity: "affinity", OpScheduler: "scheduler",
	OpIOPriority: "io-priority", OpPersonality: "personality", OpMemoryPolicy: "memory-policy",
	OpReadonlyTree: "readonly-tree",
}

func (o Op) String() string {
	if o < opCount {
		return opNames[o]
	}
	return "unknown"
}

// Mount kinds (OpMount).
const (
	// MountBind: a bind mount of a host path, then a remount for the flags
	// a first bind ignores.
	MountBind = 0
	// MountFS: a new filesystem instance (tmpfs, devpts, mqueue, ...).
	MountFS = 1
	// MountKernel: procfs or sysfs, on an ordinary directory only.
	MountKernel = 2
	// MountTmpCopyUp: a tmpfs that starts with a copy of what it covers.
	MountTmpCopyUp = 3
	// MountAttach: a detached mount the parent makes when the executor
	// asks for it (an idmapped bind: CtlMountSource), attached with
	// move_mount, then remounted for its flags as a bind.
	MountAttach = 4
)

// Mount flags (OpMount).
const (
	// MountFMqueueUserNS: a user namespace without an ipc namespace of its
	// own cannot mount mqueue; bind the host's /dev/mqueue instead (runc).
	MountFMqueueUserNS = 1
	// MountFInheritMode: a tmpfs without a mode= of its own takes the mode
	// of the directory it covers, when that was there before (runc; a
	// target the executor had to create keeps tmpfs's default, 1777).
	MountFInheritMode = 2
	// MountFAskSource: a bind whose source the executor cannot stat (a user
	// namespace's root may not reach it) asks the parent, which opens it
	// from the container's mount namespace with the host's privileges
	// (runc's mount source requests); the executor binds the fd it gets.
	MountFAskSource = 4
)

// Cgroup mount modes (OpMountCgroup).
const (
	CgroupV1Binds = 0 // a tmpfs of bind mounts of the container's v1 cgroups
	CgroupV2NS    = 1 // cgroup2 in the container's cgroup namespace
	CgroupV2Bind  = 2 // a bind mount of the container's unified cgroup
)

// Control bytes the parent writes on the init pipe after the plan.
const (
	CtlPlaced      = 'P' // init is in its cgroups; limits and network are set
	CtlResume      = 'R' // prestart and createRuntime hooks ran
	CtlSeccompDone = 'S' // the parent took the seccomp listener
	// CtlMapped comes before the plan, to a child in a user namespace whose
	// maps newuidmap and newgidmap wrote (see internal/spawn).
	CtlMapped = 'M'
	// CtlMountSource answers the executor's mount source request; its one
	// SCM_RIGHTS fd is the source (an open_tree mount or an O_PATH file).
	// It may come after CtlPlaced, which the executor then remembers.
	CtlMountSource = 'F'
)
