// Package systemd is the systemd cgroup driver (runc's --systemd-cgroup): the
// container's cgroup is a transient systemd unit created over D-Bus. It is the
// one package below internal/linux that speaks D-Bus, through a well-kept
// client (godbus) and systemd's API on it (go-systemd).
package systemd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/linux/cgroups"
)

// The systemd driver (runc's --systemd-cgroup): the container's cgroup is a
// transient unit that systemd creates over D-Bus, a scope with Delegate=yes
// in the slice cgroupsPath names ("slice:prefix:name" makes the scope
// "prefix-name.scope" in "slice"; a name ending in ".slice" makes a slice
// unit instead). Limits are unit properties where systemd has them (see
// props.go) and cgroup files for the rest; the cgroup files
// themselves are driven by the cgroupfs driver of the host's mode, which the
// systemd manager wraps: reads (stats, pids, freezer, events) go straight to
// it, and so do writes once systemd has been told.
//
// systemd refuses a scope without processes, but berth's init is born in its
// cgroup (clone3 CLONE_INTO_CGROUP; cgroups.Join), so the scope must exist
// before init does: Create starts it holding a cgroups.Placeholder, a child
// that never runs an instruction of its own, which the join of the
// container's first process lets go.

// systemdConn is the part of go-systemd's *dbus.Conn the driver uses; unit
// tests give a fake.
type systemdConn interface {
	StartTransientUnitContext(ctx context.Context, name, mode string, props []sd.Property, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	SetUnitPropertiesContext(ctx context.Context, name string, runtime bool, props ...sd.Property) error
	ResetFailedUnitContext(ctx context.Context, name string) error
	GetUnitPropertyContext(ctx context.Context, unit, name string) (*sd.Property, error)
	GetManagerProperty(name string) (string, error)
	Close()
}

// dialSystemd connects to systemd: the system bus, or, for root without a
// bus daemon, systemd's private socket.
var dialSystemd = func() (systemdConn, error) {
	// Not a context with a deadline: godbus closes the connection when its
	// context ends. The dial is to a local socket.
	c, err := sd.NewWithContext(context.Background())
	if err != nil {
		return nil, fmt.Errorf("systemd cgroup driver: connect to systemd over D-Bus: %w", err)
	}
	return c, nil
}

// systemdTimeout bounds each exchange with systemd, job completion included.
const systemdTimeout = 30 * time.Second

// DefaultSlice and DefaultScopePrefix are runc's defaults for an empty
// cgroupsPath: the scope "runc-<id>.scope" in system.slice.
const (
	DefaultSlice       = "system.slice"
	DefaultScopePrefix = "runc"
)

// Unit is where a systemd-driven container lives.
type Unit struct {
	Slice string // the parent slice unit, "system.slice"
	Name  string // the container's unit, "runc-ct1.scope" (or a ".slice")
}

// ParsePath reads a cgroupsPath for the systemd driver, as runc does:
// "" means runc's defaults, otherwise exactly "slice:prefix:name" (an empty
// slice is system.slice).
func ParsePath(cgroupsPath, containerID string) (Unit, error) {
	if cgroupsPath == "" {
		if containerID == "" {
			return Unit{}, errors.New("cgroup path: empty cgroupsPath needs a container id")
		}
		return Unit{Slice: DefaultSlice, Name: DefaultScopePrefix + "-" + containerID + ".scope"}, nil
	}
	parts := strings.Split(cgroupsPath, ":")
	if len(parts) != 3 {
		return Unit{}, fmt.Errorf("expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got %q instead", cgroupsPath)
	}
	u := Unit{Slice: parts[0]}
	if u.Slice == "" {
		u.Slice = DefaultSlice
	}
	if _, err := ExpandSlice(u.Slice); err != nil {
		return Unit{}, err
	}
	name := parts[2]
	if name == "" {
		return Unit{}, fmt.Errorf("cgroupsPath %q: empty name", cgroupsPath)
	}
	if strings.HasSuffix(name, ".slice") {
		if _, err := ExpandSlice(name); err != nil {
			return Unit{}, err
		}
		u.Name = name
	} else {
		u.Name = parts[1] + "-" + name + ".scope"
		if parts[1] == "" {
			u.Name = name + ".scope"
		}
	}
	if strings.ContainsAny(u.Name, "/\x00") {
		return Unit{}, fmt.Errorf("cgroupsPath %q: unit name %q is not valid", cgroupsPath, u.Name)
	}
	return u, nil
}

// ExpandSlice turns a slice unit name into its cgroup path, as systemd nests
// slices: "a-b-c.slice" is "/a.slice/a-b.slice/a-b-c.slice", "-.slice" the root.
func ExpandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || strings.Contains(slice, "/") || name == "" {
		return "", fmt.Errorf("invalid slice name %q: want a name ending in \".slice\" without \"/\"", slice)
	}
	if name == "-" {
		return "/", nil
	}
	var path, prefix strings.Builder
	for i, comp := range strings.Split(name, "-") {
		if comp == "" {
			return "", fmt.Errorf("invalid slice name %q: empty component", slice)
		}
		if i > 0 {
			prefix.WriteByte('-')
		}
		prefix.WriteString(comp)
		path.WriteString("/" + prefix.String() + ".slice")
	}
	return path.String(), nil
}

// CgroupPath is the unit's cgroup below the hierarchy root.
func (u Unit) CgroupPath() string {
	if strings.HasSuffix(u.Name, ".slice") {
		p, _ := ExpandSlice(u.Name)
		return p
	}
	p, _ := ExpandSlice(u.Slice)
	return filepath.Join(p, u.Name)
}

func (u Unit) isSlice() bool { return strings.HasSuffix(u.Name, ".slice") }

// New returns the systemd driver's manager for a container (runc's
// --systemd-cgroup). extra are more unit properties (AnnotationProperties).
// opts are the cgroupfs driver's (WithRoot, WithMode for tests). Nothing is
// asked of systemd until Create/Apply.
func New(cgroupsPath, containerID string, extra []sd.Property, opts ...cgroups.Option) (cgroups.Manager, error) {
	u, err := ParsePath(cgroupsPath, containerID)
	if err != nil {
		return nil, err
	}
	// The unit's cgroup, as an absolute cgroupfs path, is the cgroupfs
	// driver's to write.
	fs, err := cgroups.New(u.CgroupPath(), containerID, opts...)
	if err != nil {
		return nil, err
	}
	return &manager{Manager: fs, unit: u, extra: extra, desc: "berth container " + containerID, dial: dialSystemd}, nil
}

func init() {
	// Saved paths of a unit (state.json, a half-done create's record):
	// later commands manage them through systemd too.
	cgroups.UnitDriver = func(paths map[string]string, fs cgroups.Manager) cgroups.Manager {
		if u, ok := unitOf(paths); ok {
			return &manager{Manager: fs, unit: u, loaded: true, dial: dialSystemd}
		}
		return fs
	}
}

// unitOf recognises a unit's cgroup among saved paths (Load): the
// directory is "<unit>.scope" (or ".slice") directly in a ".slice" directory,
// the layout only systemd makes. It answers with the unit for Set, Update and
// Destroy to go through systemd; a path that merely looks like one (a
// cgroupfs cgroupsPath of "/x.slice/y.scope") is harmless, as systemd then
// knows no such unit and the driver falls back to the files.
func unitOf(paths map[string]string) (Unit, bool) {
	dir := paths[""]
	if dir == "" {
		dir = paths["name=systemd"]
	}
	if dir == "" {
		return Unit{}, false
	}
	name, parent := filepath.Base(dir), filepath.Base(filepath.Dir(dir))
	if !strings.HasSuffix(parent, ".slice") {
		return Unit{}, false
	}
	switch {
	case strings.HasSuffix(name, ".scope") && len(name) > len(".scope"):
		return Unit{Slice: parent, Name: name}, true
	case strings.HasSuffix(name, ".slice") && strings.HasPrefix(name, strings.TrimSuffix(parent, ".slice")+"-"):
		return Unit{Slice: parent, Name: name}, true
	}
	return Unit{}, false
}

// manager is the systemd driver: the unit, plus the cgroupfs driver
// (embedded) for the files.
type manager struct {
	cgroups.Manager
	unit  Unit
	extra []sd.Property
	desc  string
	dial  func() (systemdConn, error)
	// loaded: built by Load, the unit may be gone or never have been one.
	loaded bool
	// started: this manager asked systemd for the unit.
	started bool

	conn     systemdConn
	features systemdFeatures
}

func (m *manager) connect() (systemdConn, error) {
	if m.conn != nil {
		return m.conn, nil
	}
	c, err := m.dial()
	if err != nil {
		return nil, err
	}
	m.conn = c
	if v, err := c.GetManagerProperty("Version"); err == nil {
		m.features.version = parseSystemdVersion(v)
	}
	return c, nil
}

func (m *manager) close() {
	if m.conn != nil {
		m.conn.Close()
		m.conn = nil
	}
}

// trackingDir is the directory systemd tracks the unit's processes in.
func (m *manager) trackingDir() string {
	p := m.Paths()
	if d := p[""]; d != "" {
		return d
	}
	return p["name=systemd"]
}

// Create starts the unit (with the placeholder, for a scope) and makes the
// directories of the hierarchies systemd does not manage.
func (m *manager) Create() error {
	if err := m.start(0); err != nil {
		return err
	}
	return m.Manager.Create()
}

// Apply starts the unit with pid in it (runc's order) or, when the unit is
// already there, moves pid in through the files.
func (m *manager) Apply(pid int) error {
	if err := m.start(pid); err != nil {
		return err
	}
	return m.Manager.Apply(pid)
}

func (m *manager) baseProperties(pid int) []sd.Property {
	props := []sd.Property{
		sd.PropDescription(m.desc),
		// Containers are stopped by their engines, not by ordering at
		// shutdown, as in runc.
		prop("DefaultDependencies", false),
	}
	if !m.unit.isSlice() {
		props = append(props, sd.PropSlice(m.unit.Slice), prop("Delegate", true))
		if pid > 0 {
			props = append(props, sd.PropPids(uint32(pid)))
		}
	} else {
		props = append(props, sd.PropWants(m.unit.Slice))
	}
	props = append(props, prop("MemoryAccounting", true), prop("CPUAccounting", true), prop("TasksAccounting", true))
	if m.Mode() == cgroups.ModeUnified {
		props = append(props, prop("IOAccounting", true))
	} else {
		props = append(props, prop("BlockIOAccounting", true))
	}
	return append(props, m.extra...)
}

// start creates the unit. With pid 0 a scope gets the placeholder, which the
// container's first join releases.
func (m *manager) start(pid int) error {
	c, err := m.connect()
	if err != nil {
		return err
	}
	var h *cgroups.Placeholder
	if pid == 0 && !m.unit.isSlice() {
		if h, err = cgroups.StartPlaceholder(); err != nil {
			return fmt.Errorf("systemd cgroup driver: %w", err)
		}
		pid = h.Pid()
	}
	m.started = true // from here on, Destroy asks systemd
	err = m.startUnit(c, m.baseProperties(pid))
	if err != nil {
		h.Kill()
		return err
	}
	if h != nil {
		h.HandOver(m.trackingDir())
	}
	return nil
}

func (m *manager) startUnit(c systemdConn, props []sd.Property) error {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
		ch := make(chan string, 1)
		_, err := c.StartTransientUnitContext(ctx, m.unit.Name, "replace", props, ch)
		if err == nil {
			select {
			case res := <-ch:
				cancel()
				if res != "done" {
					return fmt.Errorf("systemd cgroup driver: starting unit %s: job %s (see journalctl -u %s)", m.unit.Name, res, m.unit.Name)
				}
				return nil
			case <-ctx.Done():
				cancel()
				return fmt.Errorf("systemd cgroup driver: starting unit %s: no answer from systemd within %v", m.unit.Name, systemdTimeout)
			}
		}
		cancel()
		var de dbus.Error
		if attempt == 0 && errors.As(err, &de) && de.Name == "org.freedesktop.systemd1.UnitExists" {
			// A unit left failed (or stopping) by an earlier container of
			// the same name: reset it and try once more. An active one is
			// another container's.
			if m.unitActive(c) {
				return fmt.Errorf("systemd cgroup driver: unit %s already exists and is active", m.unit.Name)
			}
			_ = c.ResetFailedUnitContext(context.Background(), m.unit.Name)
			continue
		}
		return fmt.Errorf("systemd cgroup driver: starting unit %s: %w", m.unit.Name, err)
	}
}

func (m *manager) unitActive(c systemdConn) bool {
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	p, err := c.GetUnitPropertyContext(ctx, m.unit.Name, "ActiveState")
	if err != nil {
		return false
	}
	s, _ := p.Value.Value().(string)
	return s == "active" || s == "activating" || s == "reloading"
}

// Set validates r as the cgroupfs driver would, tells systemd the properties
// it has, then writes every file.
func (m *manager) Set(r *specs.LinuxResources) error { return m.set(r, true) }

// Update is Set without devices (runc update).
func (m *manager) Update(r *specs.LinuxResources) error { return m.set(r, false) }

func (m *manager) set(r *specs.LinuxResources, withDevices bool) error {
	if r == nil {
		return nil
	}
	if err := m.validate(r, withDevices); err != nil {
		return err
	}
	c, err := m.connect()
	if err != nil {
		if !m.loaded {
			return err
		}
		c = nil // saved paths of a unit, but no systemd to ask: files only
	}
	props, err := resourceProperties(r, m.Mode(), withDevices, m.features, ioDevice)
	if err != nil {
		return err
	}
	if len(props) > 0 && c != nil {
		if err := m.setProperties(c, props); err != nil {
			if !m.loaded || !isNoSuchUnit(err) {
				return err
			}
			// Loaded paths that systemd does not know: files only.
		}
	}
	if withDevices {
		return m.Manager.Set(r)
	}
	return m.Manager.Update(r)
}

func (m *manager) validate(r *specs.LinuxResources, withDevices bool) error {
	return cgroups.Validate(r, m.Mode(), withDevices)
}

// setProperties sends props and waits until systemd has written them to the
// cgroup: systemd applies them from its event loop after the reply, so one
// more round trip orders its writes before the runtime's own. On cgroup v1,
// systemd rewrites the devices list from scratch (deny all, then allow),
// which a running container would see as spurious EPERMs: it is frozen
// meanwhile, as runc does.
func (m *manager) setProperties(c systemdConn, props []sd.Property) error {
	if m.Mode() != cgroups.ModeUnified {
		if frozen, err := m.Frozen(); err == nil && !frozen && m.Exists() {
			if err := m.Freeze(); err == nil {
				defer m.Thaw()
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	if err := c.SetUnitPropertiesContext(ctx, m.unit.Name, true, props...); err != nil {
		return fmt.Errorf("systemd cgroup driver: setting properties of %s: %w", m.unit.Name, err)
	}
	if _, err := c.GetUnitPropertyContext(ctx, m.unit.Name, "ActiveState"); err != nil {
		return fmt.Errorf("systemd cgroup driver: %s: %w", m.unit.Name, err)
	}
	return nil
}

func isNoSuchUnit(err error) bool {
	var de dbus.Error
	return errors.As(err, &de) && (de.Name == "org.freedesktop.systemd1.NoSuchUnit" || de.Name == "org.freedesktop.systemd1.LoadFailed")
}

// Destroy stops the unit (systemd removes its cgroup), resets a failed
// state so the name can be reused, then removes what systemd did not make
// (v1 hierarchies it does not manage). A unit that is already gone is fine.
func (m *manager) Destroy() error {
	defer m.close()
	cgroups.KillPlaceholder(m.trackingDir())
	if !m.loaded && !m.started {
		// This manager never got a unit (its create failed before):
		// only directories can be left.
		return m.Manager.Destroy()
	}
	c, err := m.connect()
	if err != nil {
		// No systemd (any more): the files are all there is.
		if ferr := m.Manager.Destroy(); ferr != nil || m.loaded {
			return ferr
		}
		return err
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), systemdTimeout)
	defer cancel()
	ch := make(chan string, 1)
	if _, err := c.StopUnitContext(ctx, m.unit.Name, "replace", ch); err != nil {
		if !isNoSuchUnit(err) {
			errs = append(errs, fmt.Errorf("systemd cgroup driver: stopping unit %s: %w", m.unit.Name, err))
		}
	} else {
		select {
		case res := <-ch:
			if res != "done" && res != "skipped" {
				errs = append(errs, fmt.Errorf("systemd cgroup driver: stopping unit %s: job %s", m.unit.Name, res))
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("systemd cgroup driver: stopping unit %s: no answer from systemd within %v", m.unit.Name, systemdTimeout))
		}
	}
	_ = c.ResetFailedUnitContext(context.Background(), m.unit.Name)
	if err := m.Manager.Destroy(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
