// Package state keeps a container's persistent record, <root>/<id>/state.json,
// and derives its status from live facts each time it is loaded.
//
// Layout of <root>/<id>/ (the container's state dir, mode 0711):
//
//	state.json  0600, written by temp file + rename, first written when init is ready
//	exec.fifo   0622, exists only between create and start (its presence means "created")
package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/atomicfile"
)

// Errors whose text matches runc's: clients (containerd, podman) match them.
var (
	ErrNotExist   = errors.New("container does not exist")
	ErrExist      = errors.New("container with given ID already exists")
	ErrInvalidID  = errors.New("invalid container ID format")
	ErrEmptyID    = errors.New("container id cannot be empty")
	ErrNotRunning = errors.New("container not running")
	ErrNotPaused  = errors.New("container not paused")
)

const (
	stateFile = "state.json"
	// FifoName is the create/start barrier: init blocks opening it for writing
	// until `start` opens it for reading.
	FifoName = "exec.fifo"
)

// State is berth's private record of one container. It is not runc's
// state.json format (no client reads that file); `state` prints Public().
type State struct {
	ID             string            `json:"id"`
	InitPid        int               `json:"init_process_pid"`
	InitStart      uint64            `json:"init_process_start"`
	Created        time.Time         `json:"created"`
	Bundle         string            `json:"bundle"`
	Rootfs         string            `json:"rootfs"`
	Config         *specs.Spec       `json:"config"`
	CgroupPaths    map[string]string `json:"cgroup_paths,omitempty"`
	NamespacePaths map[string]string `json:"namespace_paths,omitempty"`
	Rootless       bool              `json:"rootless"`
	// OwnPidNS is true when the container has a private pid namespace: then
	// killing init kills everything; otherwise kill/delete sweep the cgroup.
	OwnPidNS bool `json:"own_pid_ns"`
	// NetworkAttached is true when the runtime's NetworkAttacher wired the
	// container at create; destroy must unwire it.
	NetworkAttached bool `json:"network_attached,omitempty"`

	dir string
	// view: Config holds only the parts LoadView decodes; Save refuses.
	view bool
}

// ValidateID enforces runc's container ID rule: [A-Za-z0-9_+.-]+, not "."
// or "..". An empty id has runc's own message.
func ValidateID(id string) error {
	if id == "" {
		return ErrEmptyID
	}
	if id == "." || id == ".." || len(id) > 1024 {
		return ErrInvalidID
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '+' || c == '.' || c == '-') {
			return ErrInvalidID
		}
	}
	return nil
}

// Dir returns the state dir of id under root.
func Dir(root, id string) string { return filepath.Join(root, id) }

// New makes the state dir of a new container (and root when missing).
func New(root, id string) (*State, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	dir := Dir(root, id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, ErrExist
		}
		return nil, err
	}
	// Mkdir honours the umask; runc's dir is exactly 0711.
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	return &State{ID: id, dir: dir}, nil
}

// Load reads the state of id. A dir without state.json (a create that died
// half-way) reads as ErrNotExist, as in runc.
func Load(root, id string) (*State, error) {
	s := &State{}
	dir, err := decodeFile(root, id, s)
	if err != nil {
		return nil, err
	}
	s.dir = dir
	return s, nil
}

// decodeFile decodes id's state.json into v and returns the state dir.
func decodeFile(root, id string, v any) (string, error) {
	if err := ValidateID(id); err != nil {
		return "", err
	}
	dir := Dir(root, id)
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", ErrNotExist
		}
		return "", err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return "", fmt.Errorf("parsing %s: %w", filepath.Join(dir, stateFile), err)
	}
	return dir, nil
}

// configView is the part of the config that every command but create and
// update reads: the process (exec's defaults), hooks (start, delete),
// annotations and version (state, hooks), and the namespaces, seccomp
// profile, personality, memory policy and cpuset (exec). Decoding only these skips most of the spec's types, whose
// first decode in a short-lived process costs more than the rest of it (about
// 0.3 of 1 ms here).
type configView struct {
	Version     string            `json:"ociVersion"`
	Process     *specs.Process    `json:"process,omitempty"`
	Hooks       *specs.Hooks      `json:"hooks,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Linux       *struct {
		Namespaces   []specs.LinuxNamespace   `json:"namespaces,omitempty"`
		Seccomp      *specs.LinuxSeccomp      `json:"seccomp,omitempty"`
		Personality  *specs.LinuxPersonality  `json:"personality,omitempty"`
		MemoryPolicy *specs.LinuxMemoryPolicy `json:"memoryPolicy,omitempty"`
		Resources    *struct {
			CPU *struct {
				Cpus string `json:"cpus,omitempty"`
			} `json:"cpu,omitempty"`
		} `json:"resources,omitempty"`
	} `json:"linux,omitempty"`
}

// LoadView is Load with the config decoded only in part (see configView):
// for commands that never save the state.
func LoadView(root, id string) (*State, error) {
	// The outer Config shadows State.Config (the shallower field wins).
	var v struct {
		State
		Config *configView `json:"config"`
	}
	dir, err := decodeFile(root, id, &v)
	if err != nil {
		return nil, err
	}
	s := &v.State
	if c := v.Config; c != nil {
		s.Config = &specs.Spec{Version: c.Version, Process: c.Process, Hooks: c.Hooks, Annotations: c.Annotations}
		if l := c.Linux; l != nil {
			s.Config.Linux = &specs.Linux{Namespaces: l.Namespaces, Seccomp: l.Seccomp, Personality: l.Personality, MemoryPolicy: l.MemoryPolicy}
			if l.Resources != nil && l.Resources.CPU != nil {
				s.Config.Linux.Resources = &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: l.Resources.CPU.Cpus}}
			}
		}
	}
	s.dir, s.view = dir, true
	return s, nil
}

// Dir is the container's state dir.
func (s *State) Dir() string { return s.dir }

// Save writes state.json atomically (temp file + rename, mode 0600).
func (s *State) Save() error {
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	return s.SaveEncoded(b)
}

// Marshal encodes the state as Save writes it (so the encoding, costly the
// first time a process encodes a spec, can run while the caller waits on
// something else). The state must not change before SaveEncoded.
func (s *State) Marshal() ([]byte, error) {
	if s.view {
		return nil, errors.New("state: refusing to save a state loaded by LoadView (its config is partial)")
	}
	return json.Marshal(s)
}

// SaveEncoded writes what Marshal returned as state.json, atomically. No
// fsync: the record describes processes that a reboot ends anyway, and the
// state root is meant to be a tmpfs (/run).
func (s *State) SaveEncoded(b []byte) error {
	return atomicfile.Write(filepath.Join(s.dir, stateFile), b, 0o600, atomicfile.NoSync())
}

// Status derives the status from live facts, in runc's order: frozen means
// paused; no live init with the recorded start time means stopped (this also
// catches PID reuse and zombies); a present exec.fifo means created.
func (s *State) Status() Status {
	if s.InitPid <= 0 {
		return Stopped
	}
	start, zombie, err := ProcStart(s.InitPid)
	if err != nil || zombie || start != s.InitStart {
		return Stopped
	}
	if s.frozen() {
		return Paused
	}
	if _, err := os.Lstat(filepath.Join(s.dir, FifoName)); err == nil {
		return Created
	}
	return Running
}

func (s *State) frozen() bool {
	if p, ok := s.CgroupPaths["freezer"]; ok {
		b, err := os.ReadFile(filepath.Join(p, "freezer.state"))
		return err == nil && strings.TrimSpace(string(b)) != "THAWED"
	}
	if p, ok := s.CgroupPaths[""]; ok {
		b, err := os.ReadFile(filepath.Join(p, "cgroup.freeze"))
		return err == nil && strings.TrimSpace(string(b)) == "1"
	}
	return false
}

// ProcStart returns a process's start time (clock ticks since boot, field 22
// of /proc/PID/stat) and whether it is a zombie.
func ProcStart(pid int) (start uint64, zombie bool, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	// The command name may contain spaces and parentheses: parse after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0] == "Z" || f[0] == "X", err
}

// Lock takes the per-container lock (flock on the state dir), serialising
// operations on one id. Release with the returned func.
func Lock(dir string) (func(), error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, ErrNotExist
		}
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "flock", Path: dir, Err: err}
	}
	return func() { unix.Close(fd) }, nil
}

// Public is the `state` document; field order is part of the contract.
type Public struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

// Public returns what `state` and `list` print; pid is 0 once stopped.
func (s *State) Public() Public {
	st := s.Status()
	p := Public{
		OCIVersion: specs.Version, ID: s.ID, Pid: s.InitPid, Status: string(st),
		Bundle: s.Bundle, Rootfs: s.Rootfs, Created: s.Created.UTC(),
	}
	if s.Config != nil {
		p.OCIVersion = s.Config.Version
		p.Annotations = s.Config.Annotations
	}
	if st == Stopped {
		p.Pid = 0
	}
	return p
}

// OCIState is the state handed to hooks on stdin.
func (s *State) OCIState(st Status) specs.State {
	o := specs.State{Version: specs.Version, ID: s.ID, Status: specs.ContainerState(st), Pid: s.InitPid, Bundle: s.Bundle}
	if s.Config != nil {
		o.Annotations = s.Config.Annotations
	}
	if st == Stopped {
		o.Pid = 0
	}
	return o
}

// List returns the ids of every container dir under root.
func List(root string) ([]string, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && ValidateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}
