package oneshot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/image"
	"berth/internal/image/bundle"
	"berth/internal/image/layercache"
	"berth/internal/image/unpack"
	"berth/internal/killpoint"
	"berth/internal/network"
	"berth/internal/runtime"
	"berth/internal/state"
)

func (o *Options) defaults() error {
	if o.Home == "" {
		o.Home = DefaultHome
	}
	if o.LayerCache == "" {
		o.LayerCache = layercache.Dir()
	}
	if o.Root == "" {
		o.Root = "/run/berth"
	}
	if o.VolumeDir == "" {
		o.VolumeDir = VolumeDir()
	}
	if o.Network == "" {
		o.Network = network.DefaultNetwork
	}
	if o.Pull == "" {
		o.Pull = "missing"
	}
	if o.StopTimeout < 0 {
		o.StopTimeout = 10
	}
	if o.Init && o.InitBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("--init: %w", err)
		}
		o.InitBinary = exe
	}
	var err error
	for _, p := range []*string{&o.Home, &o.Root, &o.VolumeDir, &o.LayerCache} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	return nil
}

// ParseRestart reads --restart: no, on-failure[:N], always, unless-stopped.
func ParseRestart(s string) (RestartPolicy, error) {
	name, n, hasN := strings.Cut(s, ":")
	switch name {
	case "", "no":
		if hasN {
			break
		}
		return RestartPolicy{Name: "no"}, nil
	case "always", "unless-stopped":
		if hasN {
			break
		}
		return RestartPolicy{Name: name}, nil
	case "on-failure":
		p := RestartPolicy{Name: name}
		if hasN {
			v, err := strconv.Atoi(n)
			if err != nil || v < 0 {
				break
			}
			p.MaxRetries = v
		}
		return p, nil
	}
	return RestartPolicy{}, fmt.Errorf("--restart %q: want no, on-failure[:MAX-RETRIES], always or unless-stopped", s)
}

// Prepare pulls the image if needed, builds the overlay bundle, creates the
// container's volumes and writes its config and record. On error nothing
// of the container is left.
func Prepare(ctx context.Context, o Options) (_ *Container, retErr error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	id := NewID()
	if o.Name == "" {
		o.Name = "berth-" + id[:12]
	}
	if err := state.ValidateID(o.Name); err != nil {
		return nil, fmt.Errorf("container name %q: %w", o.Name, err)
	}
	restart, err := o.check(ctx)
	if err != nil {
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
	var madeVolumes []string
	defer func() {
		if retErr == nil {
			return
		}
		if err := removeFiles(p); err != nil {
			retErr = errors.Join(retErr, err)
		}
		for _, v := range madeVolumes {
			vdir, _, _ := volumePaths(o.VolumeDir, v)
			os.RemoveAll(vdir)
		}
	}()
	m, err := newMeta(o, id, img, restart)
	if err != nil {
		return nil, err
	}
	// The record comes first: everything made after it (the overlay bundle,
	// volumes, the runtime state, the network endpoint) is found and
	// removed through it by `container rm`, even when this process is
	// killed. It is written again as it grows.
	if err := writeMeta(p, &m); err != nil {
		return nil, err
	}
	killpoint.At("container run: record written")
	if err := os.Mkdir(p.Bundle, 0o700); err != nil {
		return nil, err
	}
	if err := mountBundle(ctx, o.LayerCache, img, p.Bundle); err != nil {
		return nil, err
	}
	killpoint.At("container run: bundle mounted")
	rootfs := filepath.Join(p.Bundle, "rootfs")

	s, err := o.spec(img, rootfs, &m)
	if err != nil {
		return nil, err
	}
	m.Config.Hostname = s.Hostname
	if err := writeEtc(rootfs, &m); err != nil {
		return nil, err
	}
	exposed, err := exposedPorts(img.Config.Config.ExposedPorts, o.Expose)
	if err != nil {
		return nil, err
	}
	m.Config.ExposedPorts = exposed
	if m.Ports, err = o.ports(exposed); err != nil {
		return nil, err
	}
	if len(m.Volumes) > 0 {
		// The volumes are on record before they are made.
		if err := writeMeta(p, &m); err != nil {
			return nil, err
		}
	}
	for _, vm := range m.Volumes {
		_, made, err := CreateVolume(o.VolumeDir, vm.Name, vm.Anonymous, nil, false)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", vm.Name, err)
		}
		if made {
			madeVolumes = append(madeVolumes, vm.Name)
		}
		if err := copyUp(o.VolumeDir, vm, rootfs); err != nil {
			return nil, err
		}
	}
	if err := bundle.Save(p.Bundle, s); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.Exit, nil, 0o600); err != nil {
		return nil, err
	}
	if err := writeMeta(p, &m); err != nil {
		return nil, err
	}
	killpoint.At("container run: config written")
	return &Container{Home: o.Home, Paths: p, Meta: m}, nil
}

// check refuses, before anything is made, options that contradict each
// other or name what does not exist, and returns the restart policy.
func (o *Options) check(ctx context.Context) (RestartPolicy, error) {
	restart, err := ParseRestart(o.Restart)
	if err != nil {
		return RestartPolicy{}, err
	}
	if o.Remove && restart.Name != "no" {
		return RestartPolicy{}, errors.New("--rm and --restart cannot be used together: a container that restarts is not removed when it exits")
	}
	if o.Network == "host" || o.Network == "none" {
		if len(o.Publish) > 0 || o.PublishAll {
			return RestartPolicy{}, fmt.Errorf("publishing ports needs a bridge network, not --network %s", o.Network)
		}
		if o.IP != "" || o.MAC != "" || len(o.DNS) > 0 || len(o.DNSSearch) > 0 || len(o.DNSOptions) > 0 {
			return RestartPolicy{}, fmt.Errorf("--ip, --mac-address and --dns* need a bridge network, not --network %s", o.Network)
		}
	}
	if _, err := parsePorts(o.Publish); err != nil {
		return RestartPolicy{}, err
	}
	if a, err := netip.ParseAddr(o.IP); o.IP != "" && (err != nil || !a.Is4()) {
		return RestartPolicy{}, fmt.Errorf("--ip %q is not an IPv4 address", o.IP)
	}
	if _, err := net.ParseMAC(o.MAC); o.MAC != "" && err != nil {
		return RestartPolicy{}, fmt.Errorf("--mac-address %q: %w", o.MAC, err)
	}
	if o.Network != "host" && o.Network != "none" && o.Network != network.DefaultNetwork {
		// Only the default network is made on first use; a named one must
		// exist (a typo would otherwise make a network nobody removes).
		if _, err := network.New().Inspect(ctx, o.Network); err != nil {
			if errors.Is(err, network.ErrNotExist) {
				return RestartPolicy{}, fmt.Errorf("network %s not found (berth network create %s makes it)", o.Network, o.Network)
			}
			return RestartPolicy{}, err
		}
	}
	return restart, nil
}

// newMeta is the container's first record: what it was made from and
// with, the image's labels and stop signal under the options'.
func newMeta(o Options, id string, img *bundle.Image, restart RestartPolicy) (Meta, error) {
	ic := img.Config.Config
	m := Meta{
		ID: id, Name: o.Name, Image: o.Image, ImageID: img.Manifest.String(), Created: time.Now().UTC(),
		Remove: o.Remove, Detached: o.Detach, Root: o.Root, Restart: restart, Init: o.Init, Privileged: o.Privileged,
		ReadOnly: o.ReadOnly, VolumeDir: o.VolumeDir, NetMode: "bridge",
		DNS: o.DNS, DNSSearch: o.DNSSearch, DNSOptions: o.DNSOptions, ExtraHosts: o.AddHosts, IP: o.IP, MAC: o.MAC,
	}
	switch o.Network {
	case "none", "host":
		m.NetMode = o.Network
	default:
		m.Network = o.Network
	}
	m.Config.Tty, m.Config.OpenStdin = o.TTY, o.Interactive
	m.Config.Labels = map[string]string{}
	for k, v := range ic.Labels {
		m.Config.Labels[k] = v
	}
	for k, v := range o.Labels {
		m.Config.Labels[k] = v
	}
	m.Config.StopSignal = o.StopSignal
	if m.Config.StopSignal == "" {
		m.Config.StopSignal = ic.StopSignal
	}
	if m.Config.StopSignal == "" {
		m.Config.StopSignal = "SIGTERM"
	}
	if _, err := runtime.ParseSignal(m.Config.StopSignal); err != nil {
		return Meta{}, fmt.Errorf("stop signal: %w", err)
	}
	m.Config.StopTimeout = o.StopTimeout
	return m, nil
}

// mountBundle makes the overlay bundle: the image's layers unpacked once
// into the layer cache (under its lock), mounted at bundleDir.
func mountBundle(ctx context.Context, cacheDir string, img *bundle.Image, bundleDir string) error {
	cache, err := layercache.Open(cacheDir)
	if err != nil {
		return err
	}
	unlock, err := cache.Lock(false)
	if err != nil {
		return err
	}
	keys, _, err := cache.Ensure(ctx, img.Layers, unpack.Options{})
	if err == nil {
		err = cache.MountBundle(bundleDir, keys)
	}
	unlock()
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return nil
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

// exposedPorts merges the image's ExposedPorts with --expose (PORT[/proto]
// or a range FROM-TO[/proto]) as sorted "port/proto" keys.
func exposedPorts(img map[string]struct{}, extra []string) ([]string, error) {
	set := map[string]bool{}
	for k := range img {
		port, proto, err := splitPortProto(k)
		if err != nil {
			return nil, fmt.Errorf("image ExposedPorts %q: %w", k, err)
		}
		set[fmt.Sprintf("%d/%s", port, proto)] = true
	}
	for _, e := range extra {
		ports, proto, _ := strings.Cut(e, "/")
		if proto == "" {
			proto = "tcp"
		}
		from, to, isRange := strings.Cut(ports, "-")
		if !isRange {
			to = from
		}
		a, err1 := strconv.ParseUint(from, 10, 16)
		b, err2 := strconv.ParseUint(to, 10, 16)
		if err1 != nil || err2 != nil || a == 0 || b < a || proto != "tcp" && proto != "udp" {
			return nil, fmt.Errorf("--expose %q: want PORT[/tcp|udp] or FROM-TO[/tcp|udp]", e)
		}
		for p := a; p <= b; p++ {
			set[fmt.Sprintf("%d/%s", p, proto)] = true
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		pi, _, _ := splitPortProto(out[i])
		pj, _, _ := splitPortProto(out[j])
		return pi < pj || pi == pj && out[i] < out[j]
	})
	return out, nil
}

func splitPortProto(k string) (uint16, string, error) {
	ps, proto, _ := strings.Cut(k, "/")
	if proto == "" {
		proto = "tcp"
	}
	n, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || n == 0 || proto != "tcp" && proto != "udp" {
		return 0, "", fmt.Errorf("%q is not PORT/tcp or PORT/udp", k)
	}
	return uint16(n), proto, nil
}

// ports returns the container's port mappings: -p as given, plus with -P
// every exposed port not published already, on a free host port.
func (o *Options) ports(exposed []string) ([]string, error) {
	maps, err := parsePorts(o.Publish)
	if err != nil {
		return nil, err
	}
	out := append([]string(nil), o.Publish...)
	if !o.PublishAll {
		return out, nil
	}
	taken := map[string]bool{}
	others, _ := List(o.Home)
	for _, c := range others {
		pm, _ := parsePorts(c.Meta.Ports)
		for _, m := range pm {
			taken[fmt.Sprintf("%d/%s", m.HostPort, m.Protocol)] = true
		}
	}
	for _, m := range maps {
		taken[fmt.Sprintf("%d/%s", m.HostPort, m.Protocol)] = true
	}
	for _, e := range exposed {
		port, proto, _ := splitPortProto(e)
		published := false
		for _, m := range maps {
			if m.ContainerPort == port && m.Protocol == proto {
				published = true
			}
		}
		if published {
			continue
		}
		hp, err := freePort(proto, taken)
		if err != nil {
			return nil, fmt.Errorf("-P %s: %w", e, err)
		}
		taken[fmt.Sprintf("%d/%s", hp, proto)] = true
		out = append(out, fmt.Sprintf("%d:%d/%s", hp, port, proto))
	}
	return out, nil
}

// freePort asks the kernel for a free port in its ephemeral range (where
// docker's and podman's allocators pick from too), skipping ports other
// containers publish (their forwards hold no socket).
func freePort(proto string, taken map[string]bool) (uint16, error) {
	for i := 0; i < 64; i++ {
		var port int
		if proto == "udp" {
			c, err := net.ListenPacket("udp", ":0")
			if err != nil {
				return 0, err
			}
			port = c.LocalAddr().(*net.UDPAddr).Port
			c.Close()
		} else {
			l, err := net.Listen("tcp", ":0")
			if err != nil {
				return 0, err
			}
			port = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		if !taken[fmt.Sprintf("%d/%s", port, proto)] {
			return uint16(port), nil
		}
	}
	return 0, errors.New("no free host port found")
}

// writeEtc writes /etc/hosts and /etc/hostname (and with --network host
// the host's resolv.conf) into the rootfs of a container without a bridge
// network; on a bridge, attaching writes them.
func writeEtc(rootfs string, m *Meta) error {
	var files []struct {
		name string
		data []byte
	}
	add := func(name string, data []byte) {
		files = append(files, struct {
			name string
			data []byte
		}{name, data})
	}
	switch m.NetMode {
	case "none":
		hosts, err := network.BuildHosts(m.Config.Hostname, nil, m.ExtraHosts)
		if err != nil {
			return err
		}
		add("hosts", hosts)
		add("hostname", []byte(m.Config.Hostname+"\n"))
	case "host":
		// The host's own files: its resolver (a loopback stub included) is
		// reachable from the host's network namespace.
		hosts, err := os.ReadFile("/etc/hosts")
		if err != nil {
			return err
		}
		extra, err := network.BuildHosts("", nil, m.ExtraHosts)
		if err != nil {
			return err
		}
		if len(m.ExtraHosts) > 0 {
			_, rest, _ := strings.Cut(string(extra), "ip6-loopback\n")
			hosts = append(hosts, rest...)
		}
		add("hosts", hosts)
		if rc, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			add("resolv.conf", rc)
		}
		if m.Config.Hostname != "" {
			add("hostname", []byte(m.Config.Hostname+"\n"))
		}
	default:
		return nil
	}
	for _, f := range files {
		if err := network.WriteFileInRoot(rootfs, "etc/"+f.name, f.data, 0o644); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("write /etc/%s: %w", f.name, err)
		}
	}
	return nil
}
