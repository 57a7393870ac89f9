// Package oneshot goes from an image reference to a running, networked
// container and back: pull if missing, an overlay bundle from the layer
// cache, docker-like default security, a bridge network with NAT and DNS,
// the runtime, and removal of everything with --rm. It is berth's answer to
// `podman run`, without conmon or a daemon: a detached container is watched
// by a background berth process that keeps its log and cleans up.
package oneshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/image"
	"berth/internal/image/bundle"
	"berth/internal/image/layercache"
	"berth/internal/image/unpack"
	"berth/internal/network"
	"berth/internal/runtime"
	"berth/internal/state"
)

// DefaultHome holds one directory per container: bundle/, container.log and
// container.json.
const DefaultHome = "/var/lib/berth/containers"

// DefaultCaps is docker's default capability set.
var DefaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// Options describe one container; zero values mean podman's defaults.
type Options struct {
	Image      string
	Name       string
	Cmd        []string // replaces the image's Cmd
	Entrypoint *string  // replaces the image's Entrypoint ("" clears it)
	Env        []string
	Volumes    []string // host:ctr[:ro]
	Publish    []string // [hostIP:]hostPort:ctrPort[/proto]
	Workdir    string
	User       string // uid[:gid]
	Network    string // a network name, "none" or "host"; default network.DefaultNetwork
	Hostname   string
	ReadOnly   bool
	CapAdd     []string
	CapDrop    []string
	Memory     int64 // bytes; 0: no limit
	PidsLimit  int64 // 0: no limit
	TTY        bool
	Remove     bool
	Pull       string // missing (default), always, never
	TLSVerify  bool

	// Locations (defaults: image.StorePath(""), layercache.Dir(), DefaultHome, /run/berth).
	Store, LayerCache, Home, Root string
	// Network manager options (tests isolate the state dir).
	NetworkOptions []network.Option
}

// Meta is container.json: what `container ls` and `rm` need.
type Meta struct {
	Name    string    `json:"name"`
	Image   string    `json:"image"`
	Created time.Time `json:"created"`
	Network string    `json:"network,omitempty"`
	Ports   []string  `json:"ports,omitempty"`
	Remove  bool      `json:"remove,omitempty"`
	Root    string    `json:"root"`
}

// Paths of one container.
type Paths struct{ Dir, Bundle, Log, Meta string }

// PathsOf returns where container name lives under home.
func PathsOf(home, name string) Paths {
	d := filepath.Join(home, name)
	return Paths{Dir: d, Bundle: filepath.Join(d, "bundle"), Log: filepath.Join(d, "container.log"), Meta: filepath.Join(d, "container.json")}
}

func (o *Options) defaults() {
	if o.Home == "" {
		o.Home = DefaultHome
	}
	if o.LayerCache == "" {
		o.LayerCache = layercache.Dir()
	}
	if o.Root == "" {
		o.Root = "/run/berth"
	}
	if o.Network == "" {
		o.Network = network.DefaultNetwork
	}
	if o.Pull == "" {
		o.Pull = "missing"
	}
	if o.Name == "" {
		o.Name = fmt.Sprintf("berth-%x", time.Now().UnixNano()&0xffffffffff)
	}
}

// Prepared is a container whose bundle is ready.
type Prepared struct {
	Opts  Options
	Paths Paths
	Meta  Meta
}

// Prepare pulls the image if needed, builds the overlay bundle and writes
// its config. On error nothing of the container is left.
func Prepare(ctx context.Context, o Options) (_ *Prepared, retErr error) {
	o.defaults()
	if err := state.ValidateID(o.Name); err != nil {
		return nil, fmt.Errorf("container name %q: %w", o.Name, err)
	}
	if _, err := parsePorts(o.Publish); err != nil {
		return nil, err
	}
	img, err := resolveImage(ctx, o)
	if err != nil {
		return nil, err
	}
	p := PathsOf(o.Home, o.Name)
	if err := os.MkdirAll(o.Home, 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(p.Dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("a container named %q already exists (berth container rm %s)", o.Name, o.Name)
		}
		return nil, err
	}
	defer func() {
		if retErr != nil {
			if err := removeFiles(p); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	if err := os.Mkdir(p.Bundle, 0o700); err != nil {
		return nil, err
	}
	cache, err := layercache.Open(o.LayerCache)
	if err != nil {
		return nil, err
	}
	unlock, err := cache.Lock(false)
	if err != nil {
		return nil, err
	}
	keys, _, err := cache.Ensure(ctx, img.Layers, unpack.Options{})
	if err == nil {
		err = cache.MountBundle(p.Bundle, keys)
	}
	unlock()
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	rootfs := filepath.Join(p.Bundle, "rootfs")
	s, err := bundle.FromImage(img.Config, rootfs, bundle.ConvertOptions{})
	if err != nil {
		return nil, err
	}
	if err := applyOptions(s, img, o); err != nil {
		return nil, err
	}
	if err := bundle.Save(p.Bundle, s); err != nil {
		return nil, err
	}
	m := Meta{Name: o.Name, Image: o.Image, Created: time.Now().UTC(), Remove: o.Remove, Root: o.Root, Ports: o.Publish}
	if o.Network != "none" && o.Network != "host" {
		m.Network = o.Network
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := state.WriteFileAtomic(p.Meta, b, 0o600); err != nil {
		return nil, err
	}
	return &Prepared{Opts: o, Paths: p, Meta: m}, nil
}

func resolveImage(ctx context.Context, o Options) (*bundle.Image, error) {
	store := image.StorePath(o.Store)
	if o.Pull != "always" {
		if img, err := bundle.OpenImage(o.Image, store); err == nil {
			return img, nil
		} else if o.Pull == "never" {
			return nil, fmt.Errorf("image %s is not in the store %s (--pull=never): %w", o.Image, store, err)
		}
	}
	if o.Pull != "missing" && o.Pull != "always" {
		return nil, fmt.Errorf("--pull must be missing, always or never, not %q", o.Pull)
	}
	opts := image.DefaultOptions()
	opts.Src.Insecure = !o.TLSVerify
	if _, _, err := image.Pull(ctx, o.Image, store, "", opts); err != nil {
		return nil, fmt.Errorf("pull %s: %w", o.Image, err)
	}
	return bundle.OpenImage(o.Image, store)
}

func parsePorts(specs []string) ([]network.PortMapping, error) {
	var out []network.PortMapping
	for _, p := range specs {
		m, err := network.ParsePort(p)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// applyOptions turns the command line into config edits on top of the
// image's config: docker's default capabilities and seccomp profile first.
func applyOptions(s *specs.Spec, img *bundle.Image, o Options) error {
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: append([]string(nil), DefaultCaps...), Effective: append([]string(nil), DefaultCaps...),
		Permitted: append([]string(nil), DefaultCaps...),
	}
	e := bundle.Edit{CapAdd: o.CapAdd, CapDrop: o.CapDrop, Env: o.Env, Cwd: o.Workdir}
	var entry, cmd []string
	if img.Config != nil {
		entry, cmd = img.Config.Config.Entrypoint, img.Config.Config.Cmd
	}
	if o.Entrypoint != nil {
		entry, cmd = nil, nil
		if *o.Entrypoint != "" {
			entry = []string{*o.Entrypoint}
		}
	}
	if len(o.Cmd) > 0 {
		cmd = o.Cmd
	}
	if args := append(append([]string(nil), entry...), cmd...); len(args) > 0 {
		e.Args = args
	} else {
		return errors.New("no command: the image has no entrypoint or cmd, and none was given")
	}
	term := o.TTY
	e.Terminal = &term
	host := o.Hostname
	if host == "" {
		host = o.Name
	}
	e.Hostname = &host
	if o.ReadOnly {
		ro := true
		e.Readonly = &ro
	}
	if o.User != "" {
		u, err := parseUser(o.User)
		if err != nil {
			return err
		}
		e.User = u
	}
	for _, v := range o.Volumes {
		m, err := parseVolume(v)
		if err != nil {
			return err
		}
		e.Mounts = append(e.Mounts, m)
	}
	switch o.Network {
	case "host":
		e.Namespaces = map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "host"}
	}
	if err := e.Apply(s); err != nil {
		return err
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	if o.Memory > 0 {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &o.Memory}
	}
	if o.PidsLimit > 0 {
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &o.PidsLimit}
	}
	prof, err := moby.GetDefaultProfile(s)
	if err != nil {
		return fmt.Errorf("default seccomp profile: %w", err)
	}
	s.Linux.Seccomp = prof
	s.Process.NoNewPrivileges = false // as docker: setuid binaries keep working, seccomp still applies
	return nil
}

func parseUser(u string) (*specs.User, error) {
	us, gs, hasG := strings.Cut(u, ":")
	uid, err := strconv.ParseUint(us, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("--user %q: want UID[:GID] (numbers)", u)
	}
	out := &specs.User{UID: uint32(uid), GID: uint32(uid)}
	if hasG {
		gid, err := strconv.ParseUint(gs, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--user %q: want UID[:GID] (numbers)", u)
		}
		out.GID = uint32(gid)
	}
	return out, nil
}

// parseVolume reads -v host:ctr[:ro|rw].
func parseVolume(v string) (specs.Mount, error) {
	f := strings.Split(v, ":")
	if len(f) < 2 || len(f) > 3 || !filepath.IsAbs(f[0]) || !filepath.IsAbs(f[1]) {
		return specs.Mount{}, fmt.Errorf("-v %q: want /host/path:/container/path[:ro]", v)
	}
	if _, err := os.Stat(f[0]); err != nil {
		return specs.Mount{}, fmt.Errorf("-v %q: %w", v, err)
	}
	opts := []string{"rbind", "rprivate"}
	if len(f) == 3 {
		switch f[2] {
		case "ro":
			opts = append(opts, "ro")
		case "rw":
		default:
			return specs.Mount{}, fmt.Errorf("-v %q: unknown option %q (ro or rw)", v, f[2])
		}
	}
	return specs.Mount{Type: "bind", Source: f[0], Destination: f[1], Options: opts}, nil
}

// attacher adapts internal/network to the runtime's NetworkAttacher.
type attacher struct {
	network  string
	ports    []network.PortMapping
	hostname string
	opts     []network.Option
}

func (a *attacher) Attach(ctx context.Context, id, netns, rootfs string) error {
	if _, err := network.EnsureNetwork(ctx, a.network, a.opts...); err != nil {
		return err
	}
	_, err := network.Attach(ctx, a.network, netns, network.AttachOptions{
		Container: id, Ports: a.ports, Rootfs: rootfs, DNS: network.DNSConfig{Hostname: a.hostname}, ManagerOptions: a.opts,
	})
	return err
}

func (a *attacher) Detach(ctx context.Context, id string) error {
	return network.Detach(ctx, a.network, "", network.AttachOptions{Container: id, ManagerOptions: a.opts})
}

// Runtime returns the runtime for a container, wired to its network.
func (p *Prepared) Runtime(warn func(string)) *runtime.Runtime {
	rt := &runtime.Runtime{Root: p.Meta.Root, Warn: warn}
	if p.Meta.Network != "" {
		ports, _ := parsePorts(p.Meta.Ports)
		rt.Network = &attacher{network: p.Meta.Network, ports: ports, hostname: p.Opts.Hostname, opts: p.Opts.NetworkOptions}
		if rt.Network.(*attacher).hostname == "" {
			rt.Network.(*attacher).hostname = p.Meta.Name
		}
	}
	return rt
}

// Run runs a prepared container in the foreground with the given stdio
// (a terminal is relayed when the container has one), and removes it
// afterwards when it was created with Remove. started, if set, is called
// once the process runs.
func (p *Prepared) Run(stdin, stdout, stderr *os.File, started func(), warn func(string)) (int, error) {
	rt := p.Runtime(warn)
	code, err := rt.Run(p.Meta.Name, runtime.RunOptions{
		CreateOptions: runtime.CreateOptions{Bundle: p.Paths.Bundle, Stdin: stdin, Stdout: stdout, Stderr: stderr},
		Started:       started,
	})
	if p.Meta.Remove {
		if rerr := Remove(p.Opts.Home, p.Meta.Name, p.Opts.NetworkOptions, warn); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return code, err
}

// Load reads a container's record.
func Load(home, name string) (*Prepared, error) {
	if home == "" {
		home = DefaultHome
	}
	p := PathsOf(home, name)
	b, err := os.ReadFile(p.Meta)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no container named %q", name)
		}
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", p.Meta, err)
	}
	return &Prepared{Opts: Options{Home: home, Name: name}, Paths: p, Meta: m}, nil
}

// Remove stops (SIGKILL) and deletes a container and everything it holds:
// the runtime state, its network endpoint, the overlay bundle, its files.
func Remove(home, name string, netOpts []network.Option, warn func(string)) error {
	p, err := Load(home, name)
	if err != nil {
		return err
	}
	p.Opts.NetworkOptions = netOpts
	var errs []error
	rt := p.Runtime(warn)
	if err := rt.Delete(name, true); err != nil {
		errs = append(errs, err)
	}
	if p.Meta.Network != "" {
		// Detach again: a container whose state was lost still has its lease.
		if err := rt.Network.Detach(context.Background(), name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeFiles(p.Paths); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func removeFiles(p Paths) error {
	var errs []error
	if layercache.IsOverlayBundle(p.Bundle) {
		if err := layercache.RemoveBundle(p.Bundle); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(p.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// List returns every container record under home.
func List(home string) ([]Meta, error) {
	if home == "" {
		home = DefaultHome
	}
	ents, err := os.ReadDir(home)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []Meta
	for _, e := range ents {
		if p, err := Load(home, e.Name()); err == nil {
			out = append(out, p.Meta)
		}
	}
	return out, nil
}
