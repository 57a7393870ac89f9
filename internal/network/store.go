package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/atomicfile"
)

// Sentinel errors; callers test them with errors.Is.
var (
	ErrNotExist = errors.New("network does not exist")
	ErrExist    = errors.New("network already exists")
	ErrInUse    = errors.New("network has connected endpoints")
	ErrInvalid  = errors.New("invalid argument")
)

// Network is the persisted definition of one bridge network.
type Network struct {
	Name    string       `json:"name"`
	Bridge  string       `json:"bridge"`
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	// Subnet6/Gateway6 are zero unless the network has IPv6.
	Subnet6  netip.Prefix `json:"subnet6,omitzero"`
	Gateway6 netip.Addr   `json:"gateway6,omitzero"`
	NAT      bool         `json:"nat"`
	// BridgeExisted records that the bridge was there before the network, so
	// rm leaves it in place (the user's bridge, not ours).
	BridgeExisted bool `json:"bridgeExisted,omitempty"`
	// BridgeMAC is the address a bridge berth creates is born with (set in
	// the creating request, recorded here before it): with the bridge's
	// alias, the proof that a bridge of that name is berth's.
	BridgeMAC string    `json:"bridgeMAC,omitempty"`
	Created   time.Time `json:"created"`
	// Pending: create saved the definition before making the bridge and
	// rules and has not finished (it was killed); create again finishes it,
	// rm removes it, and nothing connects to it meanwhile.
	Pending bool `json:"pending,omitempty"`
}

// PortMapping is one published port: hostIP:hostPort -> containerPort.
type PortMapping struct {
	HostIP        netip.Addr `json:"hostIP,omitzero"` // zero: every local address
	HostPort      uint16     `json:"hostPort"`
	ContainerPort uint16     `json:"containerPort"`
	Protocol      string     `json:"protocol"` // "tcp" or "udp"
}

func (p PortMapping) String() string {
	h := ""
	if p.HostIP.Is4() {
		h = p.HostIP.String() + ":"
	} else if p.HostIP.IsValid() {
		h = "[" + p.HostIP.String() + "]:"
	}
	return fmt.Sprintf("%s%d:%d/%s", h, p.HostPort, p.ContainerPort, p.Protocol)
}

// Endpoint is one connection of a network namespace to a network; it is also
// the IPAM lease of its addresses.
type Endpoint struct {
	// ID is the stable key of the endpoint: "container:<id>" or the netns path,
	// plus "#<ifname>" when the interface is not eth0.
	ID        string `json:"id"`
	Network   string `json:"network"`
	Container string `json:"container,omitempty"`
	Netns     string `json:"netns"`
	// NetnsDev/NetnsIno identify the namespace itself, so a path that now
	// names a different namespace (pid reuse, a recreated netns) is stale.
	NetnsDev uint64 `json:"netnsDev"`
	NetnsIno uint64 `json:"netnsIno"`
	// OwnNetns: connect created the named netns and disconnect removes it.
	OwnNetns bool   `json:"ownNetns,omitempty"`
	Ifname   string `json:"ifname"`
	HostVeth string `json:"hostVeth"`
	// HostMAC is the address the host-side veth is born with: recorded
	// before the veth exists, it proves the veth is this endpoint's.
	HostMAC string `json:"hostMAC,omitempty"`
	// Pending: the lease was saved before the veth and rules it names were
	// made, and the connect has not finished. Connect holds the network lock
	// until it does, so a pending lease seen under the lock belongs to a
	// connect that was killed: it is torn down, never used.
	Pending  bool          `json:"pending,omitempty"`
	MAC      string        `json:"mac"`
	IPv4     netip.Prefix  `json:"ipv4"`
	IPv6     netip.Prefix  `json:"ipv6,omitzero"`
	Gateway  netip.Addr    `json:"gateway"`
	Gateway6 netip.Addr    `json:"gateway6,omitzero"`
	Ports    []PortMapping `json:"ports,omitempty"`
	Created  time.Time     `json:"created"`
}

// leaseFile is NAME/endpoints.json.
type leaseFile struct {
	// BootID is the kernel boot id the leases were written under. After a
	// reboot every netns and veth is gone, so leases from another boot are
	// dropped instead of leaking addresses forever (the host-local IPAM leak).
	BootID    string               `json:"bootID"`
	Last4     netip.Addr           `json:"last4,omitzero"`
	Last6     netip.Addr           `json:"last6,omitzero"`
	Endpoints map[string]*Endpoint `json:"endpoints"`
}

// validName reports whether s matches ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$ (a
// hand-written check: a package-level regexp would be compiled at start-up of
// every berth command, including the runtime's hot paths).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}

// ValidateName checks a network name: it becomes a directory name and part of
// nftables comments, so it is restricted to a safe alphabet.
func ValidateName(name string) error {
	if !validName(name) {
		return fmt.Errorf("%w: network name %q: want 1-64 characters [a-zA-Z0-9_.-], starting with a letter or digit", ErrInvalid, name)
	}
	return nil
}

// lock is an flock held on a file; Unlock releases and closes it.
type lock struct{ f *os.File }

func lockFile(path string) (*lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return &lock{f: f}, nil
}

func (l *lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close() // closing the last fd releases the flock
		l.f = nil
	}
}

func (m *Manager) netDir(name string) string { return filepath.Join(m.stateDir, name) }

func (m *Manager) ensureStateDir() error {
	return os.MkdirAll(m.stateDir, 0o700)
}

func (m *Manager) lockGlobal() (*lock, error) {
	if err := m.ensureStateDir(); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	l, err := lockFile(filepath.Join(m.stateDir, ".lock"))
	if err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(m.stateDir); err == nil {
		for _, e := range ents {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				atomicfile.RemoveTemps(m.netDir(e.Name()), "network.json")
			}
		}
	}
	return l, nil
}

// lockNetns takes the lock of named netns creation and removal and of
// their markers.
func (m *Manager) lockNetns() (*lock, error) {
	l, err := lockFile(m.netnsLockPath())
	if err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(m.markerDir()); err == nil {
		for _, e := range ents {
			if atomicfile.IsTemp(e.Name()) {
				os.Remove(filepath.Join(m.markerDir(), e.Name()))
			}
		}
	}
	return l, nil
}

// lockNetwork takes the per-network lock and then re-checks that the network
// still exists: a concurrent rm may have removed it while we waited.
func (m *Manager) lockNetwork(name string) (*lock, error) {
	l, err := lockFile(filepath.Join(m.netDir(name), ".lock"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotExist, name)
	}
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(m.netDir(name), "network.json")); err != nil {
		l.Unlock()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotExist, name)
		}
		return nil, err
	}
	atomicfile.RemoveTemps(m.netDir(name), leasesFile)
	return l, nil
}

func (m *Manager) loadNetwork(name string) (*Network, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(m.netDir(name), "network.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotExist, name)
	}
	if err != nil {
		return nil, err
	}
	var n Network
	if err := json.Unmarshal(data, &n); err != nil {
		return nil, fmt.Errorf("network %s: corrupt network.json: %w", name, err)
	}
	return &n, nil
}

func (m *Manager) saveNetwork(n *Network) error {
	if err := os.MkdirAll(m.netDir(n.Name), 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(m.netDir(n.Name), "network.json"), append(data, '\n'), 0o600)
}

// listNetworks returns every persisted network, sorted by name.
func (m *Manager) listNetworks() ([]*Network, error) {
	ents, err := os.ReadDir(m.stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Network
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		n, err := m.loadNetwork(e.Name())
		if errors.Is(err, ErrNotExist) || errors.Is(err, ErrInvalid) {
			continue // a directory without a definition is not a network
		}
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// leasesFile is NAME/endpoints.json.
const leasesFile = "endpoints.json"

// loadLeases reads NAME/endpoints.json; the caller holds the network lock
// (info reads without it: leases are replaced by rename).
// Leases written under another boot are discarded (see leaseFile.BootID).
func (m *Manager) loadLeases(name string) (*leaseFile, error) {
	lf := &leaseFile{BootID: bootID(), Endpoints: map[string]*Endpoint{}}
	data, err := os.ReadFile(filepath.Join(m.netDir(name), leasesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return lf, nil
	}
	if err != nil {
		return nil, err
	}
	var disk leaseFile
	if err := json.Unmarshal(data, &disk); err != nil {
		return nil, fmt.Errorf("network %s: corrupt endpoints.json: %w", name, err)
	}
	if disk.BootID != lf.BootID {
		return lf, nil
	}
	if disk.Endpoints == nil {
		disk.Endpoints = map[string]*Endpoint{}
	}
	return &disk, nil
}

func (m *Manager) saveLeases(name string, lf *leaseFile) error {
	path := filepath.Join(m.netDir(name), leasesFile)
	if len(lf.Endpoints) == 0 {
		// No leases means no file: state after the last disconnect equals the
		// state before the first connect.
		err := os.Remove(path)
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		return err
	}
	data, err := json.MarshalIndent(lf, "", "  ")
	if err != nil {
		return err
	}
	// No fsync: leases are only valid for the current boot (see
	// leaseFile.BootID), and the rename is atomic against a crash of the
	// process, so durability would buy nothing and cost a disk flush per
	// connect.
	return atomicfile.Write(path, append(data, '\n'), 0o600, atomicfile.NoSync())
}

var cachedBootID string

// bootID is the kernel's per-boot random id; empty if unreadable (then leases
// are simply never considered stale by boot).
func bootID() string {
	if cachedBootID == "" {
		b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
		cachedBootID = strings.TrimSpace(string(b))
	}
	return cachedBootID
}
