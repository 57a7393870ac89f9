package oneshot

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"berth/internal/linux/cgroups"
	"berth/internal/network"
	"berth/internal/runtime"
	"berth/internal/state"
)

// Stats is one sample of a running container's use, docker stats' columns.
type Stats struct {
	ID, Name     string
	CPUPercent   float64 // of one CPU, as docker counts it
	MemUsage     uint64
	MemLimit     uint64
	NetRx, NetTx uint64
	BlockIn      uint64
	BlockOut     uint64
	Pids         uint64
	cpuTotal     uint64
	sampled      time.Time
}

// MemPercent is MemUsage of MemLimit.
func (s *Stats) MemPercent() float64 {
	if s.MemLimit == 0 {
		return 0
	}
	return float64(s.MemUsage) / float64(s.MemLimit) * 100
}

// Sample reads the container's counters; with prev (an earlier sample of
// the same container) CPUPercent is the use in between.
func (c *Container) Sample(prev *Stats) (*Stats, error) {
	if s, _ := c.Status(); s != StatusRunning && s != StatusPaused {
		return nil, fmt.Errorf("container %s is not running", c.Meta.Name)
	}
	var cs *cgroups.Stats
	err := c.Runtime(nil).Events(context.Background(), c.Meta.Name, 0, func(e runtime.Event) error {
		cs = e.Data
		return nil
	})
	if err != nil {
		return nil, err
	}
	st := &Stats{ID: c.Meta.ShortID(), Name: c.Meta.Name, sampled: time.Now()}
	if cs != nil {
		st.cpuTotal = cs.CPU.Usage.Total
		st.MemUsage = cs.Memory.Usage.Usage
		// docker subtracts the page cache it can reclaim.
		if inactive, ok := cs.Memory.Raw["total_inactive_file"]; ok && inactive < st.MemUsage {
			st.MemUsage -= inactive
		} else if inactive, ok := cs.Memory.Raw["inactive_file"]; ok && inactive < st.MemUsage {
			st.MemUsage -= inactive
		}
		st.MemLimit = cs.Memory.Usage.Limit
		st.Pids = cs.Pids.Current
		for _, e := range cs.Blkio.IoServiceBytesRecursive {
			switch strings.ToLower(e.Op) {
			case "read":
				st.BlockIn += e.Value
			case "write":
				st.BlockOut += e.Value
			}
		}
	}
	if total := hostMemory(); total > 0 && (st.MemLimit == 0 || st.MemLimit > total) {
		st.MemLimit = total
	}
	if _, pid := c.Status(); pid > 0 {
		st.NetRx, st.NetTx = netCounters(pid)
	}
	if prev != nil && !prev.sampled.IsZero() {
		if wall := st.sampled.Sub(prev.sampled); wall > 0 && st.cpuTotal >= prev.cpuTotal {
			st.CPUPercent = float64(st.cpuTotal-prev.cpuTotal) / float64(wall.Nanoseconds()) * 100
		}
	}
	return st, nil
}

func hostMemory() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n * 1024
		}
	}
	return 0
}

// netCounters sums the interfaces (but lo) of pid's network namespace.
func netCounters(pid int) (rx, tx uint64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		r, _ := strconv.ParseUint(f[0], 10, 64)
		t, _ := strconv.ParseUint(f[8], 10, 64)
		rx, tx = rx+r, tx+t
	}
	return rx, tx
}

// Pids lists the host pids of the container's processes.
func (c *Container) Pids() ([]int, error) {
	if !c.Running() {
		return nil, fmt.Errorf("container %s is not running", c.Meta.Name)
	}
	return c.Runtime(nil).Pids(c.Meta.Name)
}

// Inspect is `container inspect`'s document, in docker's shape and names
// (so --format '{{.State.Pid}}' and the like work as with docker).
type Inspect struct {
	ID              string          `json:"Id"`
	Created         time.Time       `json:"Created"`
	Path            string          `json:"Path"`
	Args            []string        `json:"Args"`
	State           InspectState    `json:"State"`
	Image           string          `json:"Image"`
	ImageName       string          `json:"ImageName"`
	Name            string          `json:"Name"`
	RestartCount    int             `json:"RestartCount"`
	Driver          string          `json:"Driver"`
	LogPath         string          `json:"LogPath"`
	BundlePath      string          `json:"BundlePath"`
	HostConfig      InspectHost     `json:"HostConfig"`
	Mounts          []InspectMount  `json:"Mounts"`
	Config          InspectConfig   `json:"Config"`
	NetworkSettings InspectNetworks `json:"NetworkSettings"`
}

// InspectState is .State.
type InspectState struct {
	Status     string    `json:"Status"`
	Running    bool      `json:"Running"`
	Paused     bool      `json:"Paused"`
	Restarting bool      `json:"Restarting"`
	Pid        int       `json:"Pid"`
	ExitCode   int       `json:"ExitCode"`
	Error      string    `json:"Error"`
	StartedAt  time.Time `json:"StartedAt"`
	FinishedAt time.Time `json:"FinishedAt"`
}

// InspectHost is .HostConfig.
type InspectHost struct {
	Binds          []string          `json:"Binds"`
	NetworkMode    string            `json:"NetworkMode"`
	PortBindings   map[string][]Port `json:"PortBindings"`
	RestartPolicy  InspectRestart    `json:"RestartPolicy"`
	AutoRemove     bool              `json:"AutoRemove"`
	DNS            []string          `json:"Dns"`
	DNSOptions     []string          `json:"DnsOptions"`
	DNSSearch      []string          `json:"DnsSearch"`
	ExtraHosts     []string          `json:"ExtraHosts"`
	Privileged     bool              `json:"Privileged"`
	ReadonlyRootfs bool              `json:"ReadonlyRootfs"`
	Init           bool              `json:"Init"`
	Tmpfs          []string          `json:"Tmpfs"`
}

// InspectRestart is .HostConfig.RestartPolicy.
type InspectRestart struct {
	Name              string `json:"Name"`
	MaximumRetryCount int    `json:"MaximumRetryCount"`
}

// Port is one host side of a published port.
type Port struct {
	HostIP   string `json:"HostIp"`
	HostPort string `json:"HostPort"`
}

// InspectMount is one entry of .Mounts.
type InspectMount struct {
	Type        string `json:"Type"` // volume or bind
	Name        string `json:"Name,omitempty"`
	Source      string `json:"Source"`
	Destination string `json:"Destination"`
	RW          bool   `json:"RW"`
}

// InspectConfig is .Config.
type InspectConfig struct {
	Hostname     string              `json:"Hostname"`
	User         string              `json:"User"`
	Env          []string            `json:"Env"`
	Cmd          []string            `json:"Cmd"`
	Entrypoint   []string            `json:"Entrypoint"`
	Image        string              `json:"Image"`
	WorkingDir   string              `json:"WorkingDir"`
	Labels       map[string]string   `json:"Labels"`
	StopSignal   string              `json:"StopSignal"`
	StopTimeout  int                 `json:"StopTimeout"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	Volumes      map[string]struct{} `json:"Volumes"`
	Tty          bool                `json:"Tty"`
	OpenStdin    bool                `json:"OpenStdin"`
}

// InspectNetworks is .NetworkSettings.
type InspectNetworks struct {
	IPAddress  string                    `json:"IPAddress"`
	Gateway    string                    `json:"Gateway"`
	MacAddress string                    `json:"MacAddress"`
	Ports      map[string][]Port         `json:"Ports"`
	Networks   map[string]InspectNetwork `json:"Networks"`
}

// InspectNetwork is one network of .NetworkSettings.Networks.
type InspectNetwork struct {
	IPAddress  string `json:"IPAddress"`
	IPPrefix   int    `json:"IPPrefixLen"`
	Gateway    string `json:"Gateway"`
	MacAddress string `json:"MacAddress"`
}

// Inspect returns the container's document.
func (c *Container) Inspect() Inspect {
	m := c.Meta
	status, pid := c.Status()
	in := Inspect{
		ID: m.ID, Created: m.Created, Image: m.ImageID, ImageName: m.Image, Name: m.Name,
		RestartCount: m.State.RestartCount, Driver: "overlay", LogPath: c.Paths.Log, BundlePath: c.Paths.Bundle,
		State: InspectState{
			Status: status, Running: status == StatusRunning || status == StatusPaused, Paused: status == StatusPaused,
			Restarting: status == StatusRestarting, Pid: pid, ExitCode: m.State.ExitCode, Error: m.State.Error,
			StartedAt: m.State.StartedAt, FinishedAt: m.State.FinishedAt,
		},
		Mounts: []InspectMount{},
	}
	if len(m.Args) > 0 {
		in.Path, in.Args = m.Args[0], m.Args[1:]
	}
	in.Config = InspectConfig{
		Hostname: m.Config.Hostname, User: m.Config.User, Env: m.Config.Env, Cmd: m.Config.Cmd, Entrypoint: m.Config.Entrypoint,
		Image: m.Image, WorkingDir: m.Config.WorkingDir, Labels: m.Config.Labels, StopSignal: m.Config.StopSignal,
		StopTimeout: m.Config.StopTimeout, Tty: m.Config.Tty, OpenStdin: m.Config.OpenStdin,
		ExposedPorts: map[string]struct{}{}, Volumes: map[string]struct{}{},
	}
	for _, p := range m.Config.ExposedPorts {
		in.Config.ExposedPorts[p] = struct{}{}
	}
	for _, v := range m.Config.Volumes {
		in.Config.Volumes[v] = struct{}{}
	}
	netMode := m.NetMode
	if m.Network != "" {
		netMode = m.Network
	}
	in.HostConfig = InspectHost{
		NetworkMode: netMode, PortBindings: map[string][]Port{},
		RestartPolicy: InspectRestart{Name: m.Restart.Name, MaximumRetryCount: m.Restart.MaxRetries},
		AutoRemove:    m.Remove, DNS: m.DNS, DNSOptions: m.DNSOptions, DNSSearch: m.DNSSearch, ExtraHosts: m.ExtraHosts,
		Privileged: m.Privileged, ReadonlyRootfs: m.ReadOnly, Init: m.Init, Tmpfs: m.Tmpfs, Binds: []string{},
	}
	for _, b := range m.Binds {
		s := b.Source + ":" + b.Destination
		if b.ReadOnly {
			s += ":ro"
		}
		in.HostConfig.Binds = append(in.HostConfig.Binds, s)
		in.Mounts = append(in.Mounts, InspectMount{Type: "bind", Source: b.Source, Destination: b.Destination, RW: !b.ReadOnly})
	}
	for _, v := range m.Volumes {
		_, data, _ := volumePaths(m.VolumeDir, v.Name)
		in.Mounts = append(in.Mounts, InspectMount{Type: "volume", Name: v.Name, Source: data, Destination: v.Destination, RW: !v.ReadOnly})
	}
	in.NetworkSettings.Ports = map[string][]Port{}
	pm, _ := parsePorts(m.Ports)
	for _, p := range pm {
		k := fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)
		hip := "0.0.0.0"
		if p.HostIP.IsValid() {
			hip = p.HostIP.String()
		}
		port := Port{HostIP: hip, HostPort: strconv.Itoa(int(p.HostPort))}
		in.HostConfig.PortBindings[k] = append(in.HostConfig.PortBindings[k], port)
		if in.State.Running {
			in.NetworkSettings.Ports[k] = append(in.NetworkSettings.Ports[k], port)
		}
	}
	in.NetworkSettings.Networks = map[string]InspectNetwork{}
	if m.Network != "" && in.State.Running {
		if info, err := network.New().Inspect(context.Background(), m.Network); err == nil {
			for _, ep := range info.Endpoints {
				if ep.Container != m.Name {
					continue
				}
				n := InspectNetwork{IPAddress: ep.IPv4.Addr().String(), IPPrefix: ep.IPv4.Bits(), MacAddress: ep.MAC}
				if ep.Gateway.IsValid() {
					n.Gateway = ep.Gateway.String()
				}
				in.NetworkSettings.Networks[m.Network] = n
				in.NetworkSettings.IPAddress, in.NetworkSettings.Gateway, in.NetworkSettings.MacAddress = n.IPAddress, n.Gateway, n.MacAddress
			}
		}
	}
	return in
}

// CopyOptions are cp's flags.
type CopyOptions struct {
	Archive bool // keep the source's owner (cp -a)
	Warn    func(string)
}

// openContainerTree opens the tree of the container that holds path p:
// the live root of a running container (its mounts included), else its
// rootfs, or the volume or bind mount p lies in.
func (c *Container) openContainerTree(p string) (*tree, string, error) {
	if st, err := state.LoadView(c.Meta.Root, c.Meta.Name); err == nil && st.Status() != state.Stopped {
		t, err := openTree(fmt.Sprintf("/proc/%d/root", st.InitPid), true)
		if err != nil {
			return nil, "", err
		}
		// The pid could have been reused between the status and the open.
		if start, zombie, err := state.ProcStart(st.InitPid); err != nil || zombie || start != st.InitStart {
			t.Close()
			return nil, "", fmt.Errorf("container %s stopped", c.Meta.Name)
		}
		return t, p, nil
	}
	if err := c.ensureMounted(); err != nil {
		return nil, "", err
	}
	root, rel := c.hostPath(p)
	t, err := openTree(root, true)
	return t, rel, err
}

// CopyFrom copies path src of the container to dst on the host (docker
// cp's rules; entries get the caller's owner unless Archive).
func (c *Container) CopyFrom(src, dst string, o CopyOptions) error {
	t, rel, err := c.openContainerTree(src)
	if err != nil {
		return err
	}
	defer t.Close()
	if contentsOnly(src) && !contentsOnly(rel) {
		rel += "/."
	}
	host, err := openTree("/", false)
	if err != nil {
		return err
	}
	defer host.Close()
	abs, err := filepath.Abs(dst)
	if err != nil {
		return err
	}
	if strings.HasSuffix(dst, "/") {
		abs += "/"
	}
	opts := copyOpts{UID: os.Getuid(), GID: os.Getgid(), Warn: o.Warn}
	if o.Archive {
		opts.UID, opts.GID = -1, -1
	}
	return copyBetween(copyEnd{t, rel}, copyEnd{host, abs}, opts)
}

// CopyTo copies src on the host to path dst of the container, resolved in
// the container (entries get root's owner unless Archive).
func (c *Container) CopyTo(src, dst string, o CopyOptions) error {
	if c.Meta.ReadOnly {
		return fmt.Errorf("container %s has a read-only root filesystem", c.Meta.Name)
	}
	t, rel, err := c.openContainerTree(dst)
	if err != nil {
		return err
	}
	defer t.Close()
	if strings.HasSuffix(dst, "/") {
		rel += "/"
	}
	host, err := openTree("/", false)
	if err != nil {
		return err
	}
	defer host.Close()
	abs, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	if contentsOnly(src) {
		abs += "/."
	}
	opts := copyOpts{UID: 0, GID: 0, Warn: o.Warn}
	if o.Archive {
		opts.UID, opts.GID = -1, -1
	}
	if _, err := os.Lstat(abs); err != nil {
		return err
	}
	return copyBetween(copyEnd{host, abs}, copyEnd{t, rel}, opts)
}
