package network

import (
	"os"
)

// Defaults; the environment variables exist so tests and benchmarks can
// isolate their state from the host's.
const (
	DefaultStateDir  = "/var/lib/berth/networks"
	EnvStateDir      = "BERTH_NETWORK_DIR"
	EnvNetnsDir      = "BERTH_NETNS_DIR"
	DefaultIfname    = "eth0"
	DefaultRuntimeRt = "/run/berth"
)

// Manager performs network operations on the host netns of the calling
// process, keeping state under its state dir.
type Manager struct {
	stateDir    string
	netnsDir    string
	runtimeRoot string
}

// Option configures a Manager.
type Option func(*Manager)

// WithStateDir sets where definitions and leases live (default $BERTH_NETWORK_DIR,
// else /var/lib/berth/networks).
func WithStateDir(d string) Option { return func(m *Manager) { m.stateDir = d } }

// WithNetnsDir sets where named netns are pinned (default $BERTH_NETNS_DIR,
// else /var/run/netns, the directory `ip netns` uses).
func WithNetnsDir(d string) Option { return func(m *Manager) { m.netnsDir = d } }

// WithRuntimeRoot sets the runtime state root used to resolve container ids
// (default /run/berth).
func WithRuntimeRoot(d string) Option { return func(m *Manager) { m.runtimeRoot = d } }

// New returns a Manager.
func New(opts ...Option) *Manager {
	m := &Manager{stateDir: DefaultStateDir, netnsDir: DefaultNetnsDir, runtimeRoot: DefaultRuntimeRt}
	if d := os.Getenv(EnvStateDir); d != "" {
		m.stateDir = d
	}
	if d := os.Getenv(EnvNetnsDir); d != "" {
		m.netnsDir = d
	}
	for _, o := range opts {
		o(m)
	}
	return m
}
