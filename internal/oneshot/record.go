package oneshot

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"berth/internal/atomicfile"
	"berth/internal/state"
)

// DefaultHome holds one directory per container: bundle/, container.log,
// container.json and monitor.log.
const DefaultHome = "/var/lib/berth/containers"

// ErrNoSuchContainer is returned for a name or id no record has.
var ErrNoSuchContainer = errors.New("no such container")

// Paths of one container.
type Paths struct{ Dir, Bundle, Log, Meta, MonitorLog, Exit string }

// PathsOf returns where container name lives under home.
func PathsOf(home, name string) Paths {
	d := filepath.Join(home, name)
	return Paths{Dir: d, Bundle: filepath.Join(d, "bundle"), Log: filepath.Join(d, "container.log"),
		Meta: filepath.Join(d, "container.json"), MonitorLog: filepath.Join(d, "monitor.log"), Exit: filepath.Join(d, "exit")}
}

// RestartPolicy is --restart: "no", "on-failure" (MaxRetries 0: no limit),
// "always" or "unless-stopped".
type RestartPolicy struct {
	Name       string `json:"name"`
	MaxRetries int    `json:"maxRetries,omitempty"`
}

// VolumeMount is a named or anonymous volume in a container.
type VolumeMount struct {
	Name        string `json:"name"`
	Destination string `json:"destination"`
	Anonymous   bool   `json:"anonymous,omitempty"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
}

// BindMount is a host directory or file in a container (-v /host:/ctr).
type BindMount struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
}

// Config is the container's configuration as `inspect` shows it: the image
// config merged with the command line.
type Config struct {
	Hostname     string            `json:"hostname"`
	User         string            `json:"user,omitempty"`
	Env          []string          `json:"env"`
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	WorkingDir   string            `json:"workingDir"`
	Labels       map[string]string `json:"labels,omitempty"`
	StopSignal   string            `json:"stopSignal"`
	StopTimeout  int               `json:"stopTimeout"`
	ExposedPorts []string          `json:"exposedPorts,omitempty"`
	Volumes      []string          `json:"volumes,omitempty"`
	Tty          bool              `json:"tty"`
	OpenStdin    bool              `json:"openStdin"`
}

// RunState is what the runner (the foreground `run` or the detached
// monitor) records as the container starts, exits and restarts.
type RunState struct {
	StartedAt    time.Time `json:"startedAt,omitzero"`
	FinishedAt   time.Time `json:"finishedAt,omitzero"`
	ExitCode     int       `json:"exitCode"`
	Error        string    `json:"error,omitempty"`
	RestartCount int       `json:"restartCount"`
	// Restarting: the container exited and the runner waits to start it
	// again (the restart policy's back-off).
	Restarting bool `json:"restarting,omitempty"`
	// ManualStop: stop, kill (with SIGKILL or the stop signal) or rm asked
	// for the exit, so the restart policy does not apply (docker's rule).
	ManualStop bool `json:"manualStop,omitempty"`
	// RunnerPid/RunnerStart identify the berth process that runs the
	// container (start time against pid reuse).
	RunnerPid   int    `json:"runnerPid,omitempty"`
	RunnerStart uint64 `json:"runnerStart,omitempty"`
	// IP is the address the container had, asked for again on a restart.
	IP string `json:"ip,omitempty"`
}

// Meta is container.json, the container's record.
type Meta struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Image   string    `json:"image"`
	ImageID string    `json:"imageID"`
	Created time.Time `json:"created"`
	// Args is the container process's command line.
	Args       []string      `json:"args"`
	Config     Config        `json:"config"`
	Network    string        `json:"network,omitempty"` // "" for none and host
	NetMode    string        `json:"netMode"`           // bridge, none or host
	Ports      []string      `json:"ports,omitempty"`   // resolved mappings, -P included
	DNS        []string      `json:"dns,omitempty"`
	DNSSearch  []string      `json:"dnsSearch,omitempty"`
	DNSOptions []string      `json:"dnsOptions,omitempty"`
	ExtraHosts []string      `json:"extraHosts,omitempty"`
	IP         string        `json:"ip,omitempty"`  // --ip
	MAC        string        `json:"mac,omitempty"` // --mac-address
	Remove     bool          `json:"remove,omitempty"`
	Detached   bool          `json:"detached,omitempty"`
	Root       string        `json:"root"`
	Restart    RestartPolicy `json:"restart"`
	Volumes    []VolumeMount `json:"volumes,omitempty"`
	Binds      []BindMount   `json:"binds,omitempty"`
	Tmpfs      []string      `json:"tmpfs,omitempty"`
	Init       bool          `json:"init,omitempty"`
	Privileged bool          `json:"privileged,omitempty"`
	ReadOnly   bool          `json:"readOnly,omitempty"`
	VolumeDir  string        `json:"volumeDir"`
	State      RunState      `json:"state"`
}

// ShortID is the 12-digit id docker prints.
func (m *Meta) ShortID() string {
	if len(m.ID) > 12 {
		return m.ID[:12]
	}
	return m.ID
}

// NewID returns a new 64-digit hex id (containers, anonymous volumes).
func NewID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Container is one container's record and where it lives.
type Container struct {
	Home  string
	Paths Paths
	Meta  Meta
}

func readMeta(p Paths) (Meta, error) {
	var m Meta
	b, err := os.ReadFile(p.Meta)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", p.Meta, err)
	}
	return m, nil
}

func writeMeta(p Paths, m *Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(p.Meta, b, 0o600)
}

// Load reads a container's record by name, full id or unique id prefix.
func Load(home, ref string) (*Container, error) {
	if home == "" {
		home = DefaultHome
	}
	if ref == "" {
		return nil, fmt.Errorf("%w: empty name", ErrNoSuchContainer)
	}
	if state.ValidateID(ref) == nil {
		p := PathsOf(home, ref)
		if m, err := readMeta(p); err == nil {
			return &Container{Home: home, Paths: p, Meta: m}, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	if isHex(ref) && len(ref) >= 3 {
		list, err := List(home)
		if err != nil {
			return nil, err
		}
		var found []*Container
		for _, c := range list {
			if strings.HasPrefix(c.Meta.ID, ref) {
				found = append(found, c)
			}
		}
		if len(found) == 1 {
			return found[0], nil
		}
		if len(found) > 1 {
			return nil, fmt.Errorf("id prefix %q names %d containers", ref, len(found))
		}
	}
	if state.ValidateID(ref) == nil {
		removeUnrecorded(PathsOf(home, ref))
	}
	return nil, fmt.Errorf("%w: %s", ErrNoSuchContainer, ref)
}

// removeUnrecorded removes a container directory without a record, as a run
// killed between making the directory and writing the record leaves it:
// nothing else is made before the record, so such a directory holds at
// most the record's temp file. One holding anything else, or with mounts
// below it, is not one of those and stays.
func removeUnrecorded(p Paths) {
	ents, err := os.ReadDir(p.Dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "."+filepath.Base(p.Meta)+"-") {
			return
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(b), " "+p.Dir+"/") {
		return
	}
	os.RemoveAll(p.Dir)
}

func isHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Reload reads the record again.
func (c *Container) Reload() error {
	m, err := readMeta(c.Paths)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s (removed)", ErrNoSuchContainer, c.Meta.Name)
		}
		return err
	}
	c.Meta = m
	return nil
}

// Update changes the record under the container's lock (the runner and the
// commands that stop a container both write it).
func (c *Container) Update(f func(*Meta)) error {
	unlock, err := state.Lock(c.Paths.Dir)
	if err != nil {
		if errors.Is(err, state.ErrNotExist) {
			return fmt.Errorf("%w: %s (removed)", ErrNoSuchContainer, c.Meta.Name)
		}
		return err
	}
	defer unlock()
	m, err := readMeta(c.Paths)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s (removed)", ErrNoSuchContainer, c.Meta.Name)
		}
		return err
	}
	f(&m)
	if err := writeMeta(c.Paths, &m); err != nil {
		return err
	}
	c.Meta = m
	return nil
}

// List returns every container record under home, oldest first.
func List(home string) ([]*Container, error) {
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
	var out []*Container
	for _, e := range ents {
		p := PathsOf(home, e.Name())
		if m, err := readMeta(p); err == nil {
			out = append(out, &Container{Home: home, Paths: p, Meta: m})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Meta.Created.Before(out[j].Meta.Created) })
	return out, nil
}

// Status values, docker's names.
const (
	StatusCreated    = "created"
	StatusRunning    = "running"
	StatusPaused     = "paused"
	StatusRestarting = "restarting"
	StatusExited     = "exited"
)

// Status is the container's status from live facts: the runtime's state
// while the container process exists, else what the runner recorded.
func (c *Container) Status() (status string, pid int) {
	if st, err := state.LoadView(c.Meta.Root, c.Meta.Name); err == nil {
		switch st.Status() {
		case state.Running:
			return StatusRunning, st.InitPid
		case state.Paused:
			return StatusPaused, st.InitPid
		case state.Created:
			return StatusCreated, st.InitPid
		}
	}
	if c.RunnerAlive() {
		if c.Meta.State.Restarting {
			return StatusRestarting, 0
		}
		if c.Meta.State.StartedAt.After(c.Meta.State.FinishedAt) {
			// Exiting: the process is gone, its runner has not recorded
			// the exit yet.
			return StatusRunning, 0
		}
	}
	if c.Meta.State.StartedAt.IsZero() {
		return StatusCreated, 0
	}
	return StatusExited, 0
}

// Running reports whether the container process exists (running, paused
// or created by the runtime).
func (c *Container) Running() bool {
	s, _ := c.Status()
	return s == StatusRunning || s == StatusPaused || s == StatusCreated && c.RunnerAlive()
}

// RunnerAlive reports whether the berth process running the container (the
// foreground run or the monitor) is still there.
func (c *Container) RunnerAlive() bool {
	s := c.Meta.State
	if s.RunnerPid <= 0 {
		return false
	}
	start, zombie, err := state.ProcStart(s.RunnerPid)
	return err == nil && !zombie && start == s.RunnerStart
}

// waitRunner waits up to d for the runner to exit.
func (c *Container) waitRunner(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for c.RunnerAlive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
