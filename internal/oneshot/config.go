package oneshot

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/image/bundle"
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
	if err := o.command(s, img, rootfs, m); err != nil {
		return nil, err
	}
	p.Terminal = o.TTY

	host := o.Hostname
	if host == "" {
		host = o.Name
	}
	s.Hostname = host
	u, err := o.user(p, img, rootfs, m)
	if err != nil {
		return nil, err
	}
	if err := o.env(p, img, host, u, m); err != nil {
		return nil, err
	}
	if o.Workdir != "" {
		if !path.IsAbs(o.Workdir) {
			return nil, fmt.Errorf("--workdir %q must be an absolute path", o.Workdir)
		}
		p.Cwd = path.Clean(o.Workdir)
	}
	m.Config.WorkingDir = p.Cwd
	if err := o.capabilities(s); err != nil {
		return nil, err
	}

	// As docker: set-id programs keep working (su, ping on old images);
	// seccomp still applies. --security-opt no-new-privileges sets it.
	p.NoNewPrivileges = false
	for _, step := range []func(*specs.Spec) error{o.securityOpts, o.rlimits, o.resources, o.devices} {
		if err := step(s); err != nil {
			return nil, err
		}
	}
	if err := o.mounts(s, img, m); err != nil {
		return nil, err
	}
	if err := o.kernelOpts(s); err != nil {
		return nil, err
	}
	s.Domainname = o.Domainname
	if err := o.namespaces(s); err != nil {
		return nil, err
	}
	return s, nil
}

// command sets the process's arguments by docker's rules (--entrypoint
// replaces the entrypoint and drops the image's Cmd; a command after the
// image replaces Cmd), behind berth itself as pid 1 with --init.
func (o *Options) command(s *specs.Spec, img *bundle.Image, rootfs string, m *Meta) error {
	p, ic := s.Process, img.Config.Config
	var err error
	entry, cmd := ic.Entrypoint, ic.Cmd
	if o.Entrypoint != nil {
		entry, cmd = nil, nil
		if e := *o.Entrypoint; strings.HasPrefix(strings.TrimSpace(e), "[") {
			if err := json.Unmarshal([]byte(e), &entry); err != nil {
				return fmt.Errorf("--entrypoint %q: not a JSON array of strings: %w", e, err)
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
		return errors.New("no command specified: the image has no entrypoint or cmd, and none was given")
	}
	m.Config.Entrypoint, m.Config.Cmd = entry, cmd
	if o.Init {
		if err := checkStatic(o.InitBinary); err != nil {
			return err
		}
		src := o.InitBinary
		if o.mayRemount() {
			// A container that may mount could remount the bind
			// read-write and change the host's binary: it gets a copy of
			// its own.
			if src, err = copyFile(o.InitBinary, filepath.Join(filepath.Dir(rootfs), "..", "init")); err != nil {
				return fmt.Errorf("--init: %w", err)
			}
		}
		args = append([]string{InitPath, "--"}, args...)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: InitPath, Type: "bind", Source: src,
			Options: []string{"bind", "ro", "nosuid", "nodev"}})
	}
	p.Args = args
	m.Args = args
	return nil
}

// user resolves the user (the image's unless -u) in the image's passwd
// and group, with supplementary groups from group membership and
// --group-add.
func (o *Options) user(p *specs.Process, img *bundle.Image, rootfs string, m *Meta) (bundle.User, error) {
	ic := img.Config.Config
	user := ic.User
	if o.User != "" {
		user = o.User
	}
	u, err := bundle.ResolveUser(rootfs, user)
	if err != nil {
		return bundle.User{}, fmt.Errorf("--user %q: %w", user, err)
	}
	p.User = specs.User{UID: u.UID, GID: u.GID, AdditionalGids: u.AdditionalGids}
	for _, g := range o.GroupAdd {
		gid, err := resolveGroup(rootfs, g)
		if err != nil {
			return bundle.User{}, fmt.Errorf("--group-add %q: %w", g, err)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, gid)
	}
	m.Config.User = user
	return u, nil
}

// env sets the environment: the image's, docker's additions (HOSTNAME;
// TERM only with a terminal; HOME of the user), then -e.
func (o *Options) env(p *specs.Process, img *bundle.Image, host string, u bundle.User, m *Meta) error {
	ic := img.Config.Config
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
			return fmt.Errorf("-e %q: not NAME=VALUE", kv)
		}
		env = setEnv(env, kv, true)
	}
	p.Env = env
	m.Config.Env = env
	return nil
}

// kernelOpts sets --sysctl, --oom-score-adj and --umask.
func (o *Options) kernelOpts(s *specs.Spec) error {
	p := s.Process
	for _, kv := range o.Sysctls {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--sysctl %q: want KEY=VALUE", kv)
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
			return fmt.Errorf("--umask %q: want an octal mask such as 0022", o.Umask)
		}
		um := uint32(n)
		p.User.Umask = &um
	}
	return nil
}

// namespaces applies --network host, --pid, --ipc, --uts and --cgroupns
// (host or private), and the annotations.
func (o *Options) namespaces(s *specs.Spec) error {
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
			return fmt.Errorf("%s %q: want host or private", x.flag, x.v)
		}
	}
	if o.UTS == "host" && (o.Hostname != "" || o.Domainname != "") {
		return errors.New("--uts host and --hostname/--domainname cannot be combined")
	}
	if o.UTS == "host" {
		s.Hostname, s.Domainname = "", ""
	}
	if len(ns) > 0 {
		if err := (&bundle.Edit{Namespaces: ns}).Apply(s); err != nil {
			return err
		}
	}
	if len(o.Annotations) > 0 {
		if err := (&bundle.Edit{Annotation: o.Annotations}).Apply(s); err != nil {
			return err
		}
	}
	return nil
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

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
