package plan

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/rootfs"
	"berth/internal/linux/seccomp"
	"berth/internal/spec"
)

func uptr(v uint) *uint { return &v }

// testHost is a v1 hybrid host with every LSM, in tests: nothing is read
// from the machine the tests run on.
func testHost() *Host {
	return &Host{
		CapLast: 40, Kcore: true,
		AppArmor: func() bool { return true }, SELinux: func() bool { return true },
		Mounts: func() ([]rootfs.MountInfo, error) {
			return []rootfs.MountInfo{
				{Root: "/", Point: "/", FSType: "ext4", Optional: "shared:1"},
				{Root: "/", Point: "/proc", FSType: "proc"},
				{Root: "/", Point: "/sys", FSType: "sysfs"},
				{Root: "/", Point: "/sys/fs/cgroup", FSType: "tmpfs"},
				{Root: "/", Point: "/sys/fs/cgroup/memory", FSType: "cgroup"},
				{Root: "/", Point: "/sys/fs/cgroup/cpu,cpuacct", FSType: "cgroup"},
				{Root: "/", Point: "/sys/fs/cgroup/unified", FSType: "cgroup2"},
				{Root: "/", Point: "/var/lib/b", FSType: "ext4", Optional: "shared:2"},
				{Root: "/sys", Point: "/proc/sys", FSType: "proc"},
			}, nil
		},
	}
}

// testInit is the Init the runtime would build for s on testHost, with a
// new mount, UTS and cgroup namespace, v1 cgroups and s's seccomp profile
// compiled.
func testInit(s *specs.Spec) (*Init, error) {
	in := &Init{
		ID: "ct", Bundle: "/b", Rootfs: s.Root.Path, Spec: s,
		MountNS: true, NewUTSNS: true, CgroupNS: true, UnshareCgroupNS: true,
		CgroupPaths: map[string]string{"memory": "/sys/fs/cgroup/memory/ct", "cpu": "/sys/fs/cgroup/cpu,cpuacct/ct"},
		FifoFd:      5, ConsoleFd: -1, KeepFds: 0, Host: testHost(),
	}
	if s.Process != nil && s.Process.Terminal {
		in.ConsoleFd = 6
	}
	if s.Linux != nil && s.Linux.Seccomp != nil {
		f, err := seccomp.Compile(s.Linux.Seccomp)
		if err != nil {
			return nil, err
		}
		in.Filter = f
	}
	return in, nil
}

func mustInit(t *testing.T, s *specs.Spec, edit func(*Init)) *Result {
	t.Helper()
	in, err := testInit(s)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(in)
	}
	res, err := CompileInit(in)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// ops lists the steps' kinds.
func ops(p *Plan) []Op {
	var out []Op
	for _, s := range p.Steps {
		out = append(out, s.Op())
	}
	return out
}

func find[T Step](p *Plan) []T {
	var out []T
	for _, s := range p.Steps {
		if v, ok := s.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestCompileMounts: every mount kind and option as the one classification
// decides it.
func TestCompileMounts(t *testing.T) {
	const prefix = `error mounting "%s" to rootfs at "%s"`
	_ = prefix
	for _, tt := range []struct {
		name string
		m    specs.Mount
		want Mount
	}{
		{"bind", specs.Mount{Destination: "/data", Type: "bind", Source: "/host", Options: []string{"rbind", "ro", "nosuid"}},
			Mount{Kind: MountBind, Source: "/host", Dest: "/data", FSType: "bind", Flags: unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY | unix.MS_NOSUID}},
		{"bind by option", specs.Mount{Destination: "/data", Type: "none", Source: "/host", Options: []string{"bind"}},
			Mount{Kind: MountBind, Source: "/host", Dest: "/data", FSType: "none", Flags: unix.MS_BIND}},
		{"relative destination", specs.Mount{Destination: "data/../x", Type: "bind", Source: "/h", Options: []string{"bind"}},
			Mount{Kind: MountBind, Source: "/h", Dest: "/x", FSType: "bind", Flags: unix.MS_BIND}},
		{"tmpfs with data", specs.Mount{Destination: "/tmp", Type: "tmpfs", Options: []string{"nodev", "mode=1777", "size=1m"}},
			Mount{Kind: MountFS, Source: "tmpfs", Dest: "/tmp", FSType: "tmpfs", Data: "mode=1777,size=1m", Flags: unix.MS_NODEV}},
		{"tmpcopyup", specs.Mount{Destination: "/etc", Type: "tmpfs", Source: "tmpfs", Options: []string{"tmpcopyup", "ro"}},
			Mount{Kind: MountTmpCopyUp, Source: "tmpfs", Dest: "/etc", FSType: "tmpfs", Flags: unix.MS_RDONLY}},
		{"proc", specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"},
			Mount{Kind: MountKernel, Source: "proc", Dest: "/proc", FSType: "proc"}},
		{"sysfs", specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"ro", "nosuid"}},
			Mount{Kind: MountKernel, Source: "sysfs", Dest: "/sys", FSType: "sysfs", Flags: unix.MS_RDONLY | unix.MS_NOSUID}},
		{"propagation and recursive attributes", specs.Mount{Destination: "/m", Type: "bind", Source: "/h", Options: []string{"rbind", "rslave", "shared", "rro", "rnosuid", "rexec"}},
			Mount{Kind: MountBind, Source: "/h", Dest: "/m", FSType: "bind", Flags: unix.MS_BIND | unix.MS_REC,
				Propagation: []uint64{unix.MS_SLAVE | unix.MS_REC, unix.MS_SHARED},
				AttrSet:     unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID, AttrClear: unix.MOUNT_ATTR_NOEXEC}},
		{"rw clears ro", specs.Mount{Destination: "/m", Type: "tmpfs", Options: []string{"ro", "rw", "noexec", "exec", "strictatime"}},
			Mount{Kind: MountFS, MountFlags: MountFInheritMode, Source: "tmpfs", Dest: "/m", FSType: "tmpfs", Flags: unix.MS_STRICTATIME}},
		{"mqueue", specs.Mount{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid"}},
			Mount{Kind: MountFS, Source: "mqueue", Dest: "/dev/mqueue", FSType: "mqueue", Flags: unix.MS_NOSUID}},
		{"x- options are for helpers", specs.Mount{Destination: "/m", Type: "tmpfs", Options: []string{"x-systemd.automount", "size=1k"}},
			Mount{Kind: MountFS, MountFlags: MountFInheritMode, Source: "tmpfs", Dest: "/m", FSType: "tmpfs", Data: "size=1k"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := spec.Default(false)
			s.Mounts = []specs.Mount{tt.m}
			res := mustInit(t, s, nil)
			got := find[Mount](res.Plan)
			tt.want.Err = `error mounting "` + tt.m.Source + `" to rootfs at "` + tt.m.Destination + `"`
			if !strings.HasPrefix(tt.m.Destination, "/") {
				tt.want.Err = `error mounting "` + tt.m.Source + `" to rootfs at "/` + tt.m.Destination + `"`
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestCompileMountSources: which mounts ask the runtime for their source
// (an idmapped mount always, a bind in a user namespace when the executor
// cannot reach it and a privileged runtime can), under their index in the
// config; destinations inside the rootfs path are stripped of it (runc).
func TestCompileMountSources(t *testing.T) {
	s := spec.Default(false)
	mapping := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	s.Mounts = []specs.Mount{
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"},
		{Destination: "/data", Type: "bind", Source: "/host", Options: []string{"bind"}},
		{Destination: "/b/rootfs/mnt/x", Type: "bind", Source: "/b/rootfs/x", Options: []string{"rbind"}, UIDMappings: mapping, GIDMappings: mapping},
		{Destination: "/b/rootfs", Type: "bind", Source: "/other", Options: []string{"bind"}},
		{Destination: "/b/rootfsx/y", Type: "bind", Source: "/other", Options: []string{"bind"}},
	}
	type got struct {
		Kind, MountFlags, Index uint32
		Dest                    string
	}
	summary := func(res *Result) []got {
		var out []got
		for _, m := range find[Mount](res.Plan) {
			out = append(out, got{m.Kind, m.MountFlags, m.Index, m.Dest})
		}
		return out
	}
	edit := func(userns, sources bool) func(*Init) {
		return func(in *Init) { in.Rootfs, in.UserNS, in.MountSources = "/b/rootfs", userns, sources }
	}
	res := mustInit(t, s, edit(true, true))
	want := []got{
		{MountFS, MountFInheritMode, 0, "/tmp"},
		{MountBind, MountFAskSource, 1, "/data"},
		{MountAttach, 0, 2, "/mnt/x"},
		{MountBind, MountFAskSource, 3, "/"},
		{MountBind, MountFAskSource, 4, "/b/rootfsx/y"},
	}
	if g := summary(res); !reflect.DeepEqual(g, want) {
		t.Errorf("userns, privileged runtime:\ngot  %+v\nwant %+v", g, want)
	}
	res = mustInit(t, s, edit(false, true))
	for i := range want {
		if want[i].Kind == MountBind {
			want[i].MountFlags = 0
		}
	}
	if g := summary(res); !reflect.DeepEqual(g, want) {
		t.Errorf("no userns: the executor reaches every source itself:\ngot  %+v\nwant %+v", g, want)
	}

	for _, tt := range []struct {
		name    string
		m       specs.Mount
		userns  string // the user namespace: "" none, "new" with mappings, or a path
		sources bool
		want    string
	}{
		{"rootless", specs.Mount{Destination: "/m", Type: "bind", Source: "/h", Options: []string{"bind"}, UIDMappings: mapping, GIDMappings: mapping},
			"new", false, "id-mapped mounts are not supported for rootless containers"},
		{"not a bind", specs.Mount{Destination: "/m", Type: "tmpfs", Source: "tmpfs", UIDMappings: mapping, GIDMappings: mapping},
			"new", true, "id-mapped mounts are only supported for bind-mounts"},
		{"uids only", specs.Mount{Destination: "/m", Type: "bind", Source: "/h", Options: []string{"bind"}, UIDMappings: mapping},
			"new", true, "id-mapped mounts must have both uid and gid mappings specified"},
		{"idmap without a user namespace", specs.Mount{Destination: "/m", Type: "bind", Source: "/h", Options: []string{"bind", "idmap"}},
			"", true, "id-mapped mounts must have both uid and gid mappings specified"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := spec.Default(false)
			s.Mounts = []specs.Mount{tt.m}
			if tt.userns != "" {
				s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
				s.Linux.UIDMappings, s.Linux.GIDMappings = mapping, mapping
			}
			in, err := testInit(s)
			if err != nil {
				t.Fatal(err)
			}
			in.UserNS, in.MountSources = tt.userns != "", tt.sources
			_, err = CompileInit(in)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CompileInit = %v, want the config error %q", err, tt.want)
			}
		})
	}
	// idmap alone takes a joined user namespace's mapping.
	s = spec.Default(false)
	s.Mounts = []specs.Mount{{Destination: "/m", Type: "bind", Source: "/h", Options: []string{"bind", "idmap"}}}
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/1/ns/user"})
	res = mustInit(t, s, func(in *Init) { in.UserNS, in.MountSources = true, true })
	if m := find[Mount](res.Plan); len(m) != 1 || m[0].Kind != MountAttach {
		t.Errorf("idmap in a joined user namespace: %+v", m)
	}
}

func TestCompileMqueueInUserNS(t *testing.T) {
	s := spec.Default(false)
	res := mustInit(t, s, func(in *Init) { in.UserNS = true })
	for _, m := range find[Mount](res.Plan) {
		if (m.FSType == "mqueue") != (m.MountFlags&MountFMqueueUserNS != 0) {
			t.Errorf("%s: mount flags %#x", m.Dest, m.MountFlags)
		}
	}
	d := find[Devices](res.Plan)
	if len(d) != 1 || !d[0].Bind {
		t.Errorf("devices in a user namespace must be bind mounts: %+v", d)
	}
}

// TestCompileCgroupMounts: v1 binds from the host's mount table, v2 in a
// cgroup namespace, a bind of the unified cgroup without one.
func TestCompileCgroupMounts(t *testing.T) {
	s := spec.Default(false)
	res := mustInit(t, s, nil)
	cg := find[MountCgroup](res.Plan)
	want := []CgroupBind{{Name: "memory", Source: "/sys/fs/cgroup/memory/ct"}, {Name: "cpu,cpuacct", Source: "/sys/fs/cgroup/cpu,cpuacct/ct"}}
	if len(cg) != 1 || cg[0].Mode != CgroupV1Binds || !reflect.DeepEqual(cg[0].Binds, want) || cg[0].Dest != "/sys/fs/cgroup" ||
		cg[0].Flags != unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV|unix.MS_RELATIME|unix.MS_RDONLY {
		t.Errorf("v1: %+v", cg)
	}
	unified := func(ns bool) func(*Init) {
		return func(in *Init) {
			in.CgroupPaths = map[string]string{"": "/sys/fs/cgroup/ct"}
			in.CgroupNS = ns
			in.PlacedEarly = true
		}
	}
	res = mustInit(t, s, unified(true))
	if cg := find[MountCgroup](res.Plan); len(cg) != 1 || cg[0].Mode != CgroupV2NS {
		t.Errorf("v2 with a cgroup namespace: %+v", cg)
	}
	if o := ops(res.Plan); o[1] != OpWaitPlaced {
		t.Errorf("unified: placement must come before the mounts: %v", o)
	}
	res = mustInit(t, s, unified(false))
	if cg := find[MountCgroup](res.Plan); len(cg) != 1 || cg[0].Mode != CgroupV2Bind || cg[0].Unified != "/sys/fs/cgroup/ct" {
		t.Errorf("v2 without a cgroup namespace: %+v", cg)
	}
}

// TestCompileRefusals: what compiling refuses, with the message runc's
// init would give.
func TestCompileRefusals(t *testing.T) {
	for _, tt := range []struct {
		name   string
		mutate func(*specs.Spec)
		want   string
	}{
		{"tmpfs in /proc", func(s *specs.Spec) { s.Mounts = append(s.Mounts, specs.Mount{Destination: "/proc/sys", Type: "tmpfs"}) },
			`error mounting "" to rootfs at "/proc/sys": "/proc/sys" cannot be mounted because it is inside /proc`},
		{"device outside /dev", func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/tmp/null", Type: "c", Major: 1, Minor: 3}}
		}, "creating device /tmp/null: device path must be under /dev"},
		{"device type", func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/x", Type: "z"}}
		}, `creating device /dev/x: invalid device type "z"`},
		{"uid wraps", func(s *specs.Spec) { s.Process.User.UID = 1 << 31 }, "invalid uid 2147483648: must be at most 2147483647"},
		{"gid wraps", func(s *specs.Spec) { s.Process.User.GID = 1<<32 - 1 }, "invalid gid 4294967295"},
		{"extra gid wraps", func(s *specs.Spec) { s.Process.User.AdditionalGids = []uint32{1 << 31} }, "invalid additional gid 2147483648"},
		{"rlimit", func(s *specs.Spec) { s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}} }, `unknown rlimit type "RLIMIT_BOGUS"`},
		{"empty args", func(s *specs.Spec) { s.Process.Args = []string{""} }, "args must not be empty"},
		{"hook timeout", func(s *specs.Spec) {
			z := 0
			s.Hooks = &specs.Hooks{CreateContainer: []specs.Hook{{Path: "/bin/true"}, {Path: "/bin/true", Timeout: &z}}}
		}, "error running createContainer hook #1: timeout must be positive"},
		{"NUL in a path", func(s *specs.Spec) { s.Linux.MaskedPaths = []string{"/a\x00b"} }, `maskedPaths: "/a\x00b" contains a NUL byte`},
		{"NUL in the env", func(s *specs.Spec) { s.Process.Env = []string{"A=\x00"} }, `invalid environment variable "A": contains nul byte`},
		{"propagation", func(s *specs.Spec) { s.Linux.RootfsPropagation = "sideways" }, `invalid rootfsPropagation "sideways"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := spec.Default(false)
			tt.mutate(s)
			in, err := testInit(s)
			if err != nil {
				t.Fatal(err)
			}
			_, err = CompileInit(in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CompileInit = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestCompileOrder: the order of runc's init for the default config, and
// what each option adds where.
func TestCompileOrder(t *testing.T) {
	s := spec.Default(false)
	s.Process.Terminal = false
	got := ops(mustInit(t, s, nil).Plan)
	want := []Op{OpFdDir, OpHostMount, OpHostMount, OpOpenRoot,
		OpMount, OpMount, OpMount, OpMount, OpMount, OpMount, OpMountCgroup, OpDevices,
		OpSethostname, OpWaitPlaced, OpPivotRoot, OpSetsid,
		OpReadonlyPath, OpReadonlyPath, OpReadonlyPath, OpReadonlyPath, OpReadonlyPath, OpMaskPaths, OpRemountReadonly,
		OpJoinKeyring, OpEnv, OpLookup, OpCloexecFrom, OpFixStdio, OpNonDumpable, OpCheckCwd, OpAffinity,
		OpDropBounding, OpKeepCaps, OpRlimits, OpSetgroups, OpSetresgid, OpSetresuid, OpUmask, OpChdir, OpCapset, OpKeepCaps,
		OpNoNewPrivs, OpReady, OpWaitStart, OpExec}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("default plan:\n%v\nwant\n%v", got, want)
	}
	// Shared root propagation: the mount holding the rootfs made private
	// first (the longest mount point containing it).
	s.Linux.RootfsPropagation = "rshared"
	s.Root.Path = "/var/lib/b/ct/rootfs"
	hm := find[HostMount](mustInit(t, s, nil).Plan)
	if len(hm) != 3 || hm[0].Flags != unix.MS_SHARED|unix.MS_REC || hm[1].Target != "/var/lib/b" || hm[1].Flags != unix.MS_PRIVATE ||
		hm[2].Source != "/var/lib/b/ct/rootfs" || hm[2].Err != "bind mount rootfs /var/lib/b/ct/rootfs" {
		t.Errorf("rshared: %+v", hm)
	}
	// --no-pivot hides the host's full procfs and sysfs mounts, deepest first.
	mr := find[MoveRoot](mustInit(t, s, func(in *Init) { in.NoPivot = true }).Plan)
	if len(mr) != 1 || !reflect.DeepEqual(mr[0].Detach, []string{"/sys", "/proc"}) {
		t.Errorf("no-pivot: %+v", mr)
	}
	// No mount namespace: a chroot, no mounts, no masks.
	o := ops(mustInit(t, s, func(in *Init) { in.MountNS = false }).Plan)
	for _, op := range o {
		if op == OpMount || op == OpPivotRoot || op == OpMaskPaths || op == OpRemountReadonly {
			t.Errorf("no mount namespace: %v in %v", op, o)
		}
	}
}

// TestCompileSeccompPlacement: without no_new_privs the filter loads
// while privileged (before the capability drop); with it, right before
// execve; a notify listener before Ready either way.
func TestCompileSeccompPlacement(t *testing.T) {
	at := func(o []Op, op Op) int {
		for i, x := range o {
			if x == op {
				return i
			}
		}
		return -1
	}
	for _, tt := range []struct {
		name     string
		nnp      bool
		listener bool
		before   Op // the seccomp step comes right before this one
	}{
		{"privileged", false, false, OpDropBounding},
		{"no_new_privs", true, false, OpExec},
		{"listener", false, true, OpDropBounding},
		{"listener with no_new_privs", true, true, OpReady},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := spec.Default(false)
			s.Process.Terminal = false
			s.Process.NoNewPrivileges = tt.nnp
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: specs.ActErrno}}}
			if tt.listener {
				s.Linux.Seccomp.ListenerPath = "/run/agent.sock"
				s.Linux.Seccomp.Syscalls[0].Action = specs.ActNotify
			}
			o := ops(mustInit(t, s, nil).Plan)
			i := at(o, OpSeccomp)
			if i < 0 || o[i+1] != tt.before {
				t.Fatalf("seccomp at %d in %v, want right before %v", i, o, tt.before)
			}
			sc := find[Seccomp](mustInit(t, s, nil).Plan)[0]
			if sc.Listener != tt.listener || len(sc.Program) == 0 || !strings.Contains(sc.EACCES, "set no_new_privs or keep CAP_SYS_ADMIN") {
				t.Errorf("step: %+v", sc)
			}
		})
	}
}

// TestCompileExec: an exec process gets the process section only; a
// terminal adds the session and console, umask only when set.
func TestCompileExec(t *testing.T) {
	p := spec.Default(false).Process
	res, err := CompileExec(&Exec{Process: p, ConsoleFd: 7, UserNS: true, Host: testHost()})
	if err != nil {
		t.Fatal(err)
	}
	o := ops(res.Plan)
	if o[0] != OpSetsid || o[1] != OpConsole || o[len(o)-1] != OpExec {
		t.Errorf("exec with a terminal: %v", o)
	}
	for _, op := range o {
		if op == OpUmask || op == OpWaitStart || op == OpMount {
			t.Errorf("exec: %v in %v", op, o)
		}
	}
	if sg := find[Setgroups](res.Plan); len(sg) != 1 || !sg[0].SkipIfDenied {
		t.Errorf("exec in a user namespace: %+v", sg)
	}
	if c := find[Console](res.Plan); c[0].SocketFd != 7 || c[0].MountConsole {
		t.Errorf("console: %+v", c)
	}
}

// TestCompileHooksPlan: the hooks the runtime runs itself, in order, then
// Ready and exit; the state keeps the pid given.
func TestCompileHooksPlan(t *testing.T) {
	st := specs.State{Version: specs.Version, ID: "ct", Status: specs.StateRunning, Pid: 42, Bundle: "/b"}
	res, err := CompileHooks("poststart", []specs.Hook{{Path: "/bin/a"}, {Path: "/bin/b", Args: []string{"b", "-x"}, Env: []string{"K=V"}}}, st)
	if err != nil {
		t.Fatal(err)
	}
	if o := ops(res.Plan); !reflect.DeepEqual(o, []Op{OpRunHook, OpRunHook, OpReady, OpExit}) {
		t.Fatalf("ops %v", o)
	}
	h := find[RunHook](res.Plan)
	if h[0].Err != "error running poststart hook #0" || !reflect.DeepEqual(h[0].Args, []string{"/bin/a"}) ||
		h[1].Err != "error running poststart hook #1" || !reflect.DeepEqual(h[1].Args, []string{"b", "-x"}) || !h[1].KeepPid {
		t.Errorf("hooks: %+v", h)
	}
	b := res.Plan.Encode(7)
	if !strings.Contains(string(b), `"pid":42`) {
		t.Errorf("the runtime's hooks keep the state's pid")
	}
}

func TestPrepareEnv(t *testing.T) {
	for _, tt := range []struct {
		in       []string
		want     []string
		fillHome bool
		err      string
	}{
		{[]string{"A=1", "HOME=/h"}, []string{"A=1", "HOME=/h"}, false, ""},
		{[]string{"HOME=/override", "HOME="}, nil, true, ""},
		{[]string{"ONE=two", "ONE=", "PATH=/bin"}, []string{"ONE=", "PATH=/bin"}, true, ""},
		{[]string{"ONE=two", "X=1", "ONE=three"}, []string{"X=1", "ONE=three"}, true, ""},
		{[]string{"NEW=\n"}, []string{"NEW=\n"}, true, ""},
		{[]string{"NOEQUALS"}, nil, false, "missing '='"},
		{[]string{"=x"}, nil, false, "name cannot be empty"},
		{[]string{"A=\x00"}, nil, false, "contains nul byte"},
	} {
		got, fill, err := prepareEnv(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) || fill != tt.fillHome {
			t.Errorf("%q: %q fill=%v err=%v, want %q fill=%v", tt.in, got, fill, err, tt.want, tt.fillHome)
		}
	}
}
