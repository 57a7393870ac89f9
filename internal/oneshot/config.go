package oneshot

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/image/bundle"
	"berth/internal/linux/caps"
)

// DefaultCaps is docker's default capability set (podman's lacks NET_RAW,
// MKNOD and AUDIT_WRITE; berth keeps docker's, so ping works).
var DefaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// InitPath is where --init binds berth itself in the container; started as
// "init", berth is the container's reaping pid 1 (see Reap).
const InitPath = "/dev/init"

// defaultRlimit is podman's RLIMIT_NOFILE and RLIMIT_NPROC (both soft and
// hard), capped at what berth itself may grant.
const defaultRlimit = 1048576

// Options describe one container; zero values mean podman's defaults.
type Options struct {
	Image       string
	Name        string
	Cmd         []string // replaces the image's Cmd
	Entrypoint  *string  // replaces the image's Entrypoint ("" clears it; a JSON array is split, as podman does)
	Env         []string // K=V, after the image's
	Unsetenv    []string // names removed from the image's environment
	Labels      map[string]string
	Annotations []string // K=V, into config.json
	Volumes     []string // /host:/ctr[:opts], NAME:/ctr[:opts] or /ctr (anonymous)
	Tmpfs       []string // /ctr[:opts]
	Devices     []string // /dev/host[:/dev/ctr[:perms]]
	Publish     []string // [hostIP:]hostPort:ctrPort[/proto]
	PublishAll  bool     // -P: every exposed port on a free host port
	Expose      []string // more exposed ports (PORT[/proto])
	Workdir     string
	User        string // name, uid, name:group, uid:gid (resolved in the image)
	GroupAdd    []string
	Network     string // a network name, "none" or "host"; default network.DefaultNetwork
	IP          string // the container's address on its network
	MAC         string
	Hostname    string
	Domainname  string
	// PID, IPC, UTS, Cgroupns: "host" shares the host's namespace; ""
	// (or "private") gives the container its own.
	PID, IPC, UTS, Cgroupns string
	DNS                     []string
	DNSSearch               []string
	DNSOptions              []string
	AddHosts                []string // name:ip
	ReadOnly                bool
	// ReadOnlyTmpfs: with ReadOnly, tmpfs on /run, /tmp and /var/tmp
	// (podman's --read-only-tmpfs, default true there; nil means true).
	ReadOnlyTmpfs     *bool
	CapAdd            []string
	CapDrop           []string
	Privileged        bool
	SecurityOpt       []string // no-new-privileges[=true|false], seccomp=unconfined|FILE, label=disable, apparmor=unconfined
	Ulimits           []string // name=soft[:hard]
	Sysctls           []string // k=v
	ShmSize           int64    // bytes; 0: 64m
	Memory            int64    // bytes; 0: no limit
	MemorySwap        int64    // bytes, memory+swap; -1 unlimited; 0: unset
	MemoryReservation int64
	MemorySwappiness  *uint64
	OOMKillDisable    bool
	CPUs              float64
	CPUPeriod         uint64
	CPUQuota          int64
	CPUShares         uint64
	CpusetCpus        string
	CpusetMems        string
	BlkioWeight       uint16
	BlkioWeightDevice []string // DEVICE:WEIGHT
	DeviceReadBps     []string // DEVICE:RATE (bytes per second, e.g. 1mb)
	DeviceWriteBps    []string
	DeviceReadIOps    []string // DEVICE:RATE (operations per second)
	DeviceWriteIOps   []string
	CPURtPeriod       uint64
	CPURtRuntime      int64
	DeviceCgroupRules []string // "c 1:3 rwm"
	PidsLimit         int64    // 0: no limit
	OOMScoreAdj       *int
	Umask             string // octal
	Init              bool
	// InitBinary is what --init binds at /dev/init: a static berth
	// (default: this executable).
	InitBinary  string
	Restart     string // no, on-failure[:N], always, unless-stopped
	StopSignal  string // default: the image's, else SIGTERM
	StopTimeout int    // seconds; <0: 10
	TTY         bool
	Interactive bool
	Detach      bool
	Remove      bool
	Pull        string // missing (default), always, never
	TLSVerify   bool

	// Locations (defaults: image.StorePath(""), layercache.Dir(), DefaultHome, /run/berth, VolumeDir()).
	Store, LayerCache, Home, Root, VolumeDir string
}

// spec builds config.json for the container from the image's config (via
// bundle.FromImage, the image-spec conversion) and the options. It also
// fills what the record keeps (m).
func (o *Options) spec(img *bundle.Image, rootfs string, m *Meta) (*specs.Spec, error) {
	cfg := img.Config
	s, err := bundle.FromImage(cfg, rootfs, bundle.ConvertOptions{})
	if err != nil {
		return nil, err
	}
	p := s.Process
	ic := cfg.Config

	// Command: docker's rules. --entrypoint replaces the entrypoint and
	// drops the image's Cmd; a command after the image replaces Cmd.
	entry, cmd := ic.Entrypoint, ic.Cmd
	if o.Entrypoint != nil {
		entry, cmd = nil, nil
		if e := *o.Entrypoint; strings.HasPrefix(strings.TrimSpace(e), "[") {
			if err := json.Unmarshal([]byte(e), &entry); err != nil {
				return nil, fmt.Errorf("--entrypoint %q: not a JSON array of strings: %w", e, err)
			}
		} else if e != "" {
			entry = []string{e}
		}
	}
	if len(o.Cmd) > 0 {
		cmd = o.Cmd
	}
	args := append(append([]string(nil), entry...), cmd...)
	if len(args) == 0 {
		return nil, errors.New("no command specified: the image has no entrypoint or cmd, and none was given")
	}
	m.Config.Entrypoint, m.Config.Cmd = entry, cmd
	if o.Init {
		if err := checkStatic(o.InitBinary); err != nil {
			return nil, err
		}
		src := o.InitBinary
		if o.mayRemount() {
			// A container that may mount could remount the bind
			// read-write and change the host's binary: it gets a copy of
			// its own.
			if src, err = copyFile(o.InitBinary, filepath.Join(filepath.Dir(rootfs), "..", "init")); err != nil {
				return nil, fmt.Errorf("--init: %w", err)
			}
		}
		args = append([]string{InitPath, "--"}, args...)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: InitPath, Type: "bind", Source: src,
			Options: []string{"bind", "ro", "nosuid", "nodev"}})
	}
	p.Args = args
	m.Args = args
	p.Terminal = o.TTY

	host := o.Hostname
	if host == "" {
		host = o.Name
	}
	s.Hostname = host

	// User: the image's unless -u; names resolved in the image's
	// passwd/group, supplementary groups from group membership.
	user := ic.User
	if o.User != "" {
		user = o.User
	}
	u, err := bundle.ResolveUser(rootfs, user)
	if err != nil {
		return nil, fmt.Errorf("--user %q: %w", user, err)
	}
	p.User = specs.User{UID: u.UID, GID: u.GID, AdditionalGids: u.AdditionalGids}
	for _, g := range o.GroupAdd {
		gid, err := resolveGroup(rootfs, g)
		if err != nil {
			return nil, fmt.Errorf("--group-add %q: %w", g, err)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, gid)
	}
	m.Config.User = user

	// Environment: the image's, docker's additions (HOSTNAME; TERM only
	// with a terminal; HOME of the user), then -e.
	env := append([]string(nil), ic.Env...)
	env = setEnv(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", false)
	env = setEnv(env, "HOSTNAME="+host, true)
	if o.TTY {
		env = setEnv(env, "TERM=xterm", false)
	}
	if u.Home != "" {
		env = setEnv(env, "HOME="+u.Home, o.User != "" && !hasEnvName(ic.Env, "HOME"))
	} else {
		env = setEnv(env, "HOME=/", false)
	}
	for _, name := range o.Unsetenv {
		kept := env[:0]
		for _, e := range env {
			if envName(e) != name {
				kept = append(kept, e)
			}
		}
		env = kept
	}
	for _, kv := range o.Env {
		if envName(kv) == "" {
			return nil, fmt.Errorf("-e %q: not NAME=VALUE", kv)
		}
		env = setEnv(env, kv, true)
	}
	p.Env = env
	m.Config.Env = env

	if o.Workdir != "" {
		if !path.IsAbs(o.Workdir) {
			return nil, fmt.Errorf("--workdir %q must be an absolute path", o.Workdir)
		}
		p.Cwd = path.Clean(o.Workdir)
	}
	m.Config.WorkingDir = p.Cwd

	// Capabilities: docker's set, or everything berth holds (--privileged).
	set := DefaultCaps
	var capAdd []string
	for _, c := range o.CapAdd {
		if strings.EqualFold(c, "ALL") {
			set = nil
		} else {
			capAdd = append(capAdd, c)
		}
	}
	if o.Privileged || set == nil {
		set = boundingCaps()
	}
	p.Capabilities = &specs.LinuxCapabilities{
		Bounding: append([]string(nil), set...), Effective: append([]string(nil), set...), Permitted: append([]string(nil), set...),
	}
	e := bundle.Edit{CapAdd: capAdd, CapDrop: o.CapDrop}
	if o.ReadOnly {
		ro := true
		e.Readonly = &ro
	}
	if err := e.Apply(s); err != nil {
		return nil, err
	}

	// Masked and read-only paths: docker's list (runc's spec plus the
	// powercap counters, CVE-2020-8694); none with --privileged.
	s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/sys/devices/virtual/powercap")
	if o.Privileged {
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
		for i := range s.Mounts {
			if s.Mounts[i].Type == "sysfs" || s.Mounts[i].Type == "cgroup" || s.Mounts[i].Type == "cgroup2" {
				s.Mounts[i].Options = dropOption(s.Mounts[i].Options, "ro")
			}
		}
	}

	// As docker: set-id programs keep working (su, ping on old images);
	// seccomp still applies. --security-opt no-new-privileges sets it.
	p.NoNewPrivileges = false
	if err := o.securityOpts(s); err != nil {
		return nil, err
	}
	if err := o.rlimits(s); err != nil {
		return nil, err
	}
	if err := o.resources(s); err != nil {
		return nil, err
	}
	if err := o.devices(s); err != nil {
		return nil, err
	}
	if err := o.mounts(s, img, m); err != nil {
		return nil, err
	}
	for _, kv := range o.Sysctls {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--sysctl %q: want KEY=VALUE", kv)
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		s.Linux.Sysctl[k] = v
	}
	if o.OOMScoreAdj != nil {
		v := *o.OOMScoreAdj
		p.OOMScoreAdj = &v
	}
	if o.Umask != "" {
		n, err := strconv.ParseUint(o.Umask, 8, 32)
		if err != nil || n > 0o777 {
			return nil, fmt.Errorf("--umask %q: want an octal mask such as 0022", o.Umask)
		}
		um := uint32(n)
		p.User.Umask = &um
	}
	s.Domainname = o.Domainname
	ns := map[specs.LinuxNamespaceType]string{}
	if o.Network == "host" {
		ns[specs.NetworkNamespace] = "host"
	}
	for _, x := range []struct {
		flag, v string
		t       specs.LinuxNamespaceType
	}{{"--pid", o.PID, specs.PIDNamespace}, {"--ipc", o.IPC, specs.IPCNamespace}, {"--uts", o.UTS, specs.UTSNamespace}, {"--cgroupns", o.Cgroupns, specs.CgroupNamespace}} {
		switch x.v {
		case "", "private":
		case "host":
			ns[x.t] = "host"
		default:
			return nil, fmt.Errorf("%s %q: want host or private", x.flag, x.v)
		}
	}
	if o.UTS == "host" && (o.Hostname != "" || o.Domainname != "") {
		return nil, errors.New("--uts host and --hostname/--domainname cannot be combined")
	}
	if o.UTS == "host" {
		s.Hostname, s.Domainname = "", ""
	}
	if len(ns) > 0 {
		if err := (&bundle.Edit{Namespaces: ns}).Apply(s); err != nil {
			return nil, err
		}
	}
	if len(o.Annotations) > 0 {
		if err := (&bundle.Edit{Annotation: o.Annotations}).Apply(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func envName(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return k
}

func hasEnvName(env []string, name string) bool {
	for _, e := range env {
		if envName(e) == name {
			return true
		}
	}
	return false
}

// setEnv sets kv in env: replacing an entry of the same name when replace,
// else only when the name is missing.
func setEnv(env []string, kv string, replace bool) []string {
	name := envName(kv)
	for i, e := range env {
		if envName(e) == name {
			if replace {
				env[i] = kv
			}
			return env
		}
	}
	return append(env, kv)
}

func dropOption(opts []string, o string) []string {
	var out []string
	for _, x := range opts {
		if x != o {
			out = append(out, x)
		}
	}
	return out
}

// resolveGroup returns a gid for a group name (from the image's
// /etc/group) or number.
func resolveGroup(rootfs, g string) (uint32, error) {
	if n, err := strconv.ParseUint(g, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := bundle.ResolveUser(rootfs, "0:"+g)
	if err != nil {
		return 0, err
	}
	return u.GID, nil
}

// boundingCaps is every capability in berth's own bounding set: what
// --privileged can give (podman does the same; asking for more fails).
func boundingCaps() []string {
	var out []string
	names := caps.Names()
	for c := 0; c <= caps.Last() && c < len(names); c++ {
		if r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err == nil && r == 1 {
			out = append(out, names[c])
		}
	}
	return out
}

// mayRemount reports whether the container gets CAP_SYS_ADMIN, with which
// it can remount a read-only bind read-write.
func (o *Options) mayRemount() bool {
	if o.Privileged {
		return true
	}
	for _, c := range o.CapAdd {
		if u := strings.ToUpper(c); u == "ALL" || u == "SYS_ADMIN" || u == "CAP_SYS_ADMIN" {
			return true
		}
	}
	return false
}

// copyFile copies a binary to dst (mode 0555) and returns dst.
func copyFile(src, dst string) (string, error) {
	dst = filepath.Clean(dst)
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o555)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", err
	}
	return dst, out.Close()
}

// checkStatic refuses an --init binary that needs a dynamic loader: it
// runs inside images that may have no (or another) libc.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("--init: %s: %w", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("--init: %s is dynamically linked and would not start in every image; use the static release build (scripts/build.sh)", bin)
		}
	}
	return nil
}

func (o *Options) securityOpts(s *specs.Spec) error {
	seccomp := "default"
	if o.Privileged {
		seccomp = "unconfined"
	}
	for _, so := range o.SecurityOpt {
		k, v, hasV := strings.Cut(so, "=")
		if !hasV {
			k, v, hasV = strings.Cut(so, ":") // docker's old form
		}
		switch k {
		case "no-new-privileges":
			b := true
			if hasV {
				var err error
				if b, err = strconv.ParseBool(v); err != nil {
					return fmt.Errorf("--security-opt %q: want no-new-privileges[=true|false]", so)
				}
			}
			s.Process.NoNewPrivileges = b
		case "seccomp":
			if v == "" {
				return fmt.Errorf("--security-opt %q: want seccomp=unconfined or seccomp=FILE", so)
			}
			seccomp = v
		case "label":
			if v != "disable" {
				return fmt.Errorf("--security-opt %q: berth applies no SELinux labels; only label=disable is accepted", so)
			}
		case "apparmor":
			if v != "unconfined" {
				return fmt.Errorf("--security-opt %q: berth applies no AppArmor profile; only apparmor=unconfined is accepted", so)
			}
		default:
			return fmt.Errorf("--security-opt %q: supported: no-new-privileges, seccomp=unconfined|FILE, label=disable, apparmor=unconfined", so)
		}
	}
	switch seccomp {
	case "unconfined":
		s.Linux.Seccomp = nil
	case "default":
		prof, err := moby.GetDefaultProfile(s)
		if err != nil {
			return fmt.Errorf("default seccomp profile: %w", err)
		}
		s.Linux.Seccomp = prof
	default:
		b, err := os.ReadFile(seccomp)
		if err != nil {
			return fmt.Errorf("--security-opt seccomp: %w", err)
		}
		prof, err := moby.LoadProfile(string(b), s)
		if err != nil {
			return fmt.Errorf("--security-opt seccomp=%s: %w", seccomp, err)
		}
		s.Linux.Seccomp = prof
	}
	return nil
}

var rlimitNames = map[string]int{
	"as": unix.RLIMIT_AS, "core": unix.RLIMIT_CORE, "cpu": unix.RLIMIT_CPU, "data": unix.RLIMIT_DATA,
	"fsize": unix.RLIMIT_FSIZE, "locks": unix.RLIMIT_LOCKS, "memlock": unix.RLIMIT_MEMLOCK,
	"msgqueue": unix.RLIMIT_MSGQUEUE, "nice": unix.RLIMIT_NICE, "nofile": unix.RLIMIT_NOFILE,
	"nproc": unix.RLIMIT_NPROC, "rss": unix.RLIMIT_RSS, "rtprio": unix.RLIMIT_RTPRIO,
	"rttime": unix.RLIMIT_RTTIME, "sigpending": unix.RLIMIT_SIGPENDING, "stack": unix.RLIMIT_STACK,
}

// ParseUlimit reads --ulimit NAME=SOFT[:HARD] (-1: unlimited).
func ParseUlimit(s string) (specs.POSIXRlimit, error) {
	name, val, ok := strings.Cut(s, "=")
	if _, known := rlimitNames[name]; !ok || !known {
		return specs.POSIXRlimit{}, fmt.Errorf("--ulimit %q: want NAME=SOFT[:HARD] with NAME one of %s", s, strings.Join(sortedKeys(rlimitNames), ", "))
	}
	num := func(x string) (uint64, error) {
		if x == "-1" || x == "unlimited" {
			return unix.RLIM_INFINITY, nil
		}
		return strconv.ParseUint(x, 10, 64)
	}
	softS, hardS, hasHard := strings.Cut(val, ":")
	soft, err := num(softS)
	if err != nil {
		return specs.POSIXRlimit{}, fmt.Errorf("--ulimit %q: %q is not a number", s, softS)
	}
	hard := soft
	if hasHard {
		if hard, err = num(hardS); err != nil {
			return specs.POSIXRlimit{}, fmt.Errorf("--ulimit %q: %q is not a number", s, hardS)
		}
	}
	if soft > hard {
		return specs.POSIXRlimit{}, fmt.Errorf("--ulimit %q: the soft limit is above the hard limit", s)
	}
	return specs.POSIXRlimit{Type: "RLIMIT_" + strings.ToUpper(name), Soft: soft, Hard: hard}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func hasCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil {
		return false
	}
	return data[c/32].Effective&(1<<uint(c%32)) != 0
}

// rlimits sets podman's NOFILE and NPROC defaults, then --ulimit. A hard
// limit above berth's own needs CAP_SYS_RESOURCE; without it that is
// refused here, clearly, rather than by the container's init.
func (o *Options) rlimits(s *specs.Spec) error {
	set := func(l specs.POSIXRlimit) {
		for i := range s.Process.Rlimits {
			if s.Process.Rlimits[i].Type == l.Type {
				s.Process.Rlimits[i] = l
				return
			}
		}
		s.Process.Rlimits = append(s.Process.Rlimits, l)
	}
	canRaise := hasCap(unix.CAP_SYS_RESOURCE)
	for _, r := range []struct {
		name string
		res  int
	}{{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE}, {"RLIMIT_NPROC", unix.RLIMIT_NPROC}} {
		v := uint64(defaultRlimit)
		var cur unix.Rlimit
		if unix.Getrlimit(r.res, &cur) == nil && !canRaise && cur.Max < v {
			v = cur.Max
		}
		set(specs.POSIXRlimit{Type: r.name, Soft: v, Hard: v})
	}
	for _, u := range o.Ulimits {
		l, err := ParseUlimit(u)
		if err != nil {
			return err
		}
		var cur unix.Rlimit
		res := rlimitNames[strings.ToLower(strings.TrimPrefix(l.Type, "RLIMIT_"))]
		if !canRaise && unix.Getrlimit(res, &cur) == nil && l.Hard > cur.Max {
			return fmt.Errorf("--ulimit %s: the hard limit is above berth's own (%d), and raising it needs CAP_SYS_RESOURCE, which this process lacks", u, cur.Max)
		}
		set(l)
	}
	return nil
}

func (o *Options) resources(s *specs.Spec) error {
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	r := s.Linux.Resources
	if o.Memory > 0 || o.MemorySwap != 0 || o.MemoryReservation > 0 || o.OOMKillDisable || o.MemorySwappiness != nil {
		r.Memory = &specs.LinuxMemory{}
		if o.MemorySwappiness != nil {
			if *o.MemorySwappiness > 100 {
				return errors.New("--memory-swappiness must be between 0 and 100")
			}
			r.Memory.Swappiness = o.MemorySwappiness
		}
		if o.Memory > 0 {
			r.Memory.Limit = &o.Memory
		}
		if o.MemoryReservation > 0 {
			r.Memory.Reservation = &o.MemoryReservation
		}
		if o.OOMKillDisable {
			t := true
			r.Memory.DisableOOMKiller = &t
		}
		if o.MemorySwap != 0 {
			if o.Memory <= 0 {
				return errors.New("--memory-swap needs --memory")
			}
			if o.MemorySwap > 0 && o.MemorySwap < o.Memory {
				return errors.New("--memory-swap must be at least --memory (it counts memory plus swap)")
			}
			r.Memory.Swap = &o.MemorySwap
		}
	}
	if o.PidsLimit > 0 {
		r.Pids = &specs.LinuxPids{Limit: &o.PidsLimit}
	}
	if o.CPUs > 0 && (o.CPUPeriod > 0 || o.CPUQuota != 0) {
		return errors.New("--cpus and --cpu-period/--cpu-quota cannot be combined")
	}
	if o.CPUs > 0 || o.CPUPeriod > 0 || o.CPUQuota != 0 || o.CPUShares > 0 || o.CpusetCpus != "" || o.CpusetMems != "" || o.CPURtPeriod > 0 || o.CPURtRuntime != 0 {
		r.CPU = &specs.LinuxCPU{}
		if o.CPURtPeriod > 0 {
			r.CPU.RealtimePeriod = &o.CPURtPeriod
		}
		if o.CPURtRuntime != 0 {
			r.CPU.RealtimeRuntime = &o.CPURtRuntime
		}
		if o.CPUs > 0 {
			period := uint64(100000)
			quota := int64(o.CPUs * float64(period))
			r.CPU.Period, r.CPU.Quota = &period, &quota
		}
		if o.CPUPeriod > 0 {
			r.CPU.Period = &o.CPUPeriod
		}
		if o.CPUQuota != 0 {
			r.CPU.Quota = &o.CPUQuota
		}
		if o.CPUShares > 0 {
			r.CPU.Shares = &o.CPUShares
		}
		r.CPU.Cpus, r.CPU.Mems = o.CpusetCpus, o.CpusetMems
	}
	if err := o.blockIO(r); err != nil {
		return err
	}
	for _, rule := range o.DeviceCgroupRules {
		d, err := parseDeviceRule(rule)
		if err != nil {
			return err
		}
		r.Devices = append(r.Devices, d)
	}
	if o.Privileged {
		r.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	return nil
}

// blockIO sets the block I/O weight and the per-device weights and
// throttles (DEVICE:VALUE, the device a host block device node).
func (o *Options) blockIO(r *specs.LinuxResources) error {
	b := &specs.LinuxBlockIO{}
	set := false
	if o.BlkioWeight > 0 {
		if o.BlkioWeight < 10 || o.BlkioWeight > 1000 {
			return errors.New("--blkio-weight must be between 10 and 1000")
		}
		b.Weight, set = &o.BlkioWeight, true
	}
	dev := func(flag, v string) (int64, int64, string, error) {
		p, val, ok := strings.Cut(v, ":")
		var st unix.Stat_t
		if !ok || val == "" {
			return 0, 0, "", fmt.Errorf("%s %q: want /dev/DEVICE:VALUE", flag, v)
		}
		if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
			return 0, 0, "", fmt.Errorf("%s %q: %s is not a block device", flag, v, p)
		}
		return int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev)), val, nil
	}
	for _, v := range o.BlkioWeightDevice {
		maj, mn, val, err := dev("--blkio-weight-device", v)
		if err != nil {
			return err
		}
		w, err := strconv.ParseUint(val, 10, 16)
		if err != nil || w < 10 || w > 1000 {
			return fmt.Errorf("--blkio-weight-device %q: the weight must be between 10 and 1000", v)
		}
		wt := uint16(w)
		wd := specs.LinuxWeightDevice{Weight: &wt}
		wd.Major, wd.Minor = maj, mn
		b.WeightDevice, set = append(b.WeightDevice, wd), true
	}
	for _, t := range []struct {
		flag  string
		vals  []string
		bytes bool
		dst   *[]specs.LinuxThrottleDevice
	}{
		{"--device-read-bps", o.DeviceReadBps, true, &b.ThrottleReadBpsDevice},
		{"--device-write-bps", o.DeviceWriteBps, true, &b.ThrottleWriteBpsDevice},
		{"--device-read-iops", o.DeviceReadIOps, false, &b.ThrottleReadIOPSDevice},
		{"--device-write-iops", o.DeviceWriteIOps, false, &b.ThrottleWriteIOPSDevice},
	} {
		for _, v := range t.vals {
			maj, mn, val, err := dev(t.flag, v)
			if err != nil {
				return err
			}
			rate, err := parseRate(val, t.bytes)
			if err != nil {
				return fmt.Errorf("%s %q: %w", t.flag, v, err)
			}
			td := specs.LinuxThrottleDevice{Rate: rate}
			td.Major, td.Minor = maj, mn
			*t.dst, set = append(*t.dst, td), true
		}
	}
	if set {
		r.BlockIO = b
	}
	return nil
}

// parseRate reads a throttle rate: a number, for bytes with an optional
// kb, mb or gb suffix (powers of 1024, as docker reads them).
func parseRate(v string, bytes bool) (uint64, error) {
	mult := uint64(1)
	l := strings.ToLower(v)
	if bytes {
		for suf, m := range map[string]uint64{"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "b": 1} {
			if strings.HasSuffix(l, suf) && len(l) > len(suf) {
				if _, err := strconv.ParseUint(strings.TrimSuffix(l, suf), 10, 64); err == nil {
					l, mult = strings.TrimSuffix(l, suf), m
					break
				}
			}
		}
	}
	n, err := strconv.ParseUint(l, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a positive rate", v)
	}
	return n * mult, nil
}

// parseDeviceRule reads --device-cgroup-rule "TYPE MAJOR:MINOR PERMS"
// (a, b or c; a number or *; r, w, m).
func parseDeviceRule(rule string) (specs.LinuxDeviceCgroup, error) {
	bad := fmt.Errorf("--device-cgroup-rule %q: want \"TYPE MAJOR:MINOR PERMISSIONS\", e.g. \"c 1:3 rwm\"", rule)
	f := strings.Fields(rule)
	if len(f) != 3 || (f[0] != "a" && f[0] != "b" && f[0] != "c") || f[2] == "" || strings.Trim(f[2], "rwm") != "" {
		return specs.LinuxDeviceCgroup{}, bad
	}
	majS, minS, ok := strings.Cut(f[1], ":")
	if !ok {
		return specs.LinuxDeviceCgroup{}, bad
	}
	num := func(x string) (*int64, error) {
		if x == "*" {
			return nil, nil
		}
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil || n < 0 {
			return nil, bad
		}
		return &n, nil
	}
	maj, err := num(majS)
	if err != nil {
		return specs.LinuxDeviceCgroup{}, err
	}
	mn, err := num(minS)
	if err != nil {
		return specs.LinuxDeviceCgroup{}, err
	}
	return specs.LinuxDeviceCgroup{Allow: true, Type: f[0], Major: maj, Minor: mn, Access: f[2]}, nil
}

// devices adds --device nodes, and with --privileged every device node of
// the host's /dev (docker's and podman's rule).
func (o *Options) devices(s *specs.Spec) error {
	have := map[string]bool{}
	// The node and, as docker does, the device cgroup rule with the
	// permissions asked (the runtime allows no configured node by itself).
	add := func(hostPath, ctrPath, perms string) error {
		var st unix.Stat_t
		if err := unix.Stat(hostPath, &st); err != nil {
			return &os.PathError{Op: "stat", Path: hostPath, Err: err}
		}
		typ := ""
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			typ = "c"
		case unix.S_IFBLK:
			typ = "b"
		default:
			return fmt.Errorf("%s is not a device node", hostPath)
		}
		if have[ctrPath] {
			return nil
		}
		have[ctrPath] = true
		mode := os.FileMode(st.Mode & 0o777)
		uid, gid := st.Uid, st.Gid
		maj, mn := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: ctrPath, Type: typ,
			Major: maj, Minor: mn, FileMode: &mode, UID: &uid, GID: &gid})
		if perms != "" {
			if s.Linux.Resources == nil {
				s.Linux.Resources = &specs.LinuxResources{}
			}
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &maj, Minor: &mn, Access: perms})
		}
		return nil
	}
	for _, d := range o.Devices {
		f := strings.Split(d, ":")
		host, ctr, perms := f[0], f[0], "rwm"
		switch len(f) {
		case 1:
		case 2:
			if strings.HasPrefix(f[1], "/") {
				ctr = f[1]
			} else {
				perms = f[1]
			}
		case 3:
			ctr, perms = f[1], f[2]
		default:
			return fmt.Errorf("--device %q: want /dev/HOST[:/dev/CONTAINER[:PERMISSIONS]]", d)
		}
		if !filepath.IsAbs(host) || !path.IsAbs(ctr) {
			return fmt.Errorf("--device %q: paths must be absolute", d)
		}
		if perms == "" || strings.Trim(perms, "rwm") != "" {
			return fmt.Errorf("--device %q: permissions %q: want a combination of r, w and m", d, perms)
		}
		fi, err := os.Stat(host)
		if err != nil {
			return fmt.Errorf("--device %q: %w", d, err)
		}
		if fi.IsDir() {
			err = filepath.WalkDir(host, func(p string, de fs.DirEntry, err error) error {
				if err != nil || de.IsDir() || de.Type()&(fs.ModeDevice|fs.ModeCharDevice) == 0 {
					return nil
				}
				rel, _ := filepath.Rel(host, p)
				return add(p, path.Join(ctr, filepath.ToSlash(rel)), perms)
			})
		} else {
			err = add(host, ctr, perms)
		}
		if err != nil {
			return fmt.Errorf("--device %q: %w", d, err)
		}
	}
	if !o.Privileged {
		return nil
	}
	return filepath.WalkDir("/dev", func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if de.IsDir() {
			switch p {
			case "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd", "/dev/.lxc", "/dev/.lxd-mounts", "/dev/.udev":
				return filepath.SkipDir
			}
			return nil
		}
		if de.Type()&fs.ModeDevice == 0 || p == "/dev/console" || p == "/dev/ptmx" {
			return nil
		}
		_ = add(p, p, "") // the allow-all rule covers them
		return nil
	})
}

// parseTmpfs reads --tmpfs /path[:opts], podman's defaults first.
func parseTmpfs(t string) (specs.Mount, error) {
	dst, opts, _ := strings.Cut(t, ":")
	if !path.IsAbs(dst) {
		return specs.Mount{}, fmt.Errorf("--tmpfs %q: the path must be absolute", t)
	}
	o := []string{"rw", "noexec", "nosuid", "nodev"}
	if opts != "" {
		for _, x := range strings.Split(opts, ",") {
			switch x {
			case "exec":
				o = dropOption(o, "noexec")
			case "suid":
				o = dropOption(o, "nosuid")
			case "dev":
				o = dropOption(o, "nodev")
			case "ro":
				o = dropOption(o, "rw")
			}
			o = append(o, x)
		}
	}
	return specs.Mount{Destination: path.Clean(dst), Type: "tmpfs", Source: "tmpfs", Options: o}, nil
}

// mounts adds volumes (image Volumes become anonymous volumes, not umoci's
// tmpfs), binds, tmpfs mounts, the /dev/shm size and --read-only's tmpfs.
func (o *Options) mounts(s *specs.Spec, img *bundle.Image, m *Meta) error {
	var add []specs.Mount
	claimed := map[string]bool{}
	for _, v := range o.Volumes {
		vm, bm, err := parseVolumeFlag(v)
		if err != nil {
			return err
		}
		if bm != nil {
			if _, err := os.Stat(bm.Source); err != nil {
				return fmt.Errorf("-v %q: %w", v, err)
			}
			m.Binds = append(m.Binds, *bm)
			claimed[bm.Destination] = true
			continue
		}
		if vm.Name == "" {
			vm.Name, vm.Anonymous = NewID(), true
		}
		m.Volumes = append(m.Volumes, *vm)
		claimed[vm.Destination] = true
	}
	// The image's volumes that no -v covers: anonymous volumes.
	var imgVols []string
	for v := range img.Config.Config.Volumes {
		if d := path.Clean("/" + v); d != "/" {
			imgVols = append(imgVols, d)
		}
	}
	sort.Strings(imgVols)
	m.Config.Volumes = imgVols
	var unmount []string
	for _, d := range imgVols {
		unmount = append(unmount, d) // bundle.FromImage made them tmpfs (umoci's rule)
		if !claimed[d] {
			m.Volumes = append(m.Volumes, VolumeMount{Name: NewID(), Destination: d, Anonymous: true})
		}
	}
	for _, t := range o.Tmpfs {
		mt, err := parseTmpfs(t)
		if err != nil {
			return err
		}
		m.Tmpfs = append(m.Tmpfs, t)
		add = append(add, mt)
	}
	if o.ReadOnly && (o.ReadOnlyTmpfs == nil || *o.ReadOnlyTmpfs) {
		for _, d := range []string{"/run", "/tmp", "/var/tmp"} {
			if !claimed[d] && !hasMount(add, d) {
				add = append(add, specs.Mount{Destination: d, Type: "tmpfs", Source: "tmpfs",
					Options: []string{"rw", "nosuid", "nodev", "mode=1777"}})
			}
		}
	}
	for _, b := range m.Binds {
		opts := []string{"rbind", "rprivate"}
		if b.ReadOnly {
			opts = append(opts, "ro")
		}
		add = append(add, specs.Mount{Type: "bind", Source: b.Source, Destination: b.Destination, Options: opts})
	}
	// Prepare creates the volumes before the config is saved.
	for _, v := range m.Volumes {
		opts := []string{"rbind", "rprivate"}
		if v.ReadOnly {
			opts = append(opts, "ro")
		}
		_, data, _ := volumePaths(o.VolumeDir, v.Name)
		add = append(add, specs.Mount{Type: "bind", Source: data, Destination: v.Destination, Options: opts})
	}
	if o.ShmSize > 0 {
		for i := range s.Mounts {
			if s.Mounts[i].Destination == "/dev/shm" {
				var opts []string
				for _, x := range s.Mounts[i].Options {
					if !strings.HasPrefix(x, "size=") {
						opts = append(opts, x)
					}
				}
				s.Mounts[i].Options = append(opts, "size="+strconv.FormatInt(o.ShmSize, 10))
			}
		}
	}
	// Parents before children, whatever the order on the command line
	// (docker sorts its mounts the same way).
	sort.SliceStable(add, func(i, j int) bool { return depth(add[i].Destination) < depth(add[j].Destination) })
	return (&bundle.Edit{UnMounts: unmount, Mounts: add}).Apply(s)
}

func depth(p string) int { return strings.Count(path.Clean(p), "/") }

func hasMount(ms []specs.Mount, dst string) bool {
	for _, m := range ms {
		if m.Destination == dst {
			return true
		}
	}
	return false
}

// parseVolumeFlag reads -v: /host:/ctr[:opts] (a bind), NAME:/ctr[:opts]
// (a named volume) or /ctr (an anonymous volume). Options: ro, rw, and the
// propagation/label options docker accepts (z, Z are accepted and ignored:
// no SELinux here).
func parseVolumeFlag(v string) (*VolumeMount, *BindMount, error) {
	f := strings.Split(v, ":")
	bad := func(why string) (*VolumeMount, *BindMount, error) {
		return nil, nil, fmt.Errorf("-v %q: %s (want /host/path:/container/path[:ro], NAME:/container/path[:ro] or /container/path)", v, why)
	}
	if len(f) == 1 {
		if !path.IsAbs(f[0]) {
			return bad("a container path must be absolute")
		}
		return &VolumeMount{Destination: path.Clean(f[0])}, nil, nil
	}
	if len(f) > 3 {
		return bad("too many fields")
	}
	src, dst := f[0], f[1]
	if !path.IsAbs(dst) {
		return bad("the container path must be absolute")
	}
	dst = path.Clean(dst)
	ro := false
	if len(f) == 3 {
		for _, o := range strings.Split(f[2], ",") {
			switch o {
			case "ro":
				ro = true
			case "rw", "z", "Z", "rprivate", "private":
			default:
				return bad("unknown option " + strconv.Quote(o))
			}
		}
	}
	if filepath.IsAbs(src) {
		return nil, &BindMount{Source: filepath.Clean(src), Destination: dst, ReadOnly: ro}, nil
	}
	if err := ValidVolumeName(src); err != nil {
		return bad("the source is neither an absolute host path nor a volume name")
	}
	return &VolumeMount{Name: src, Destination: dst, ReadOnly: ro}, nil, nil
}
