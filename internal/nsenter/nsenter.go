// Package nsenter links a C constructor into the binary that places the
// process in its cgroups and joins user, mount, time and cgroup namespaces
// before the Go runtime starts (see nsenter.c), and that runs the plans of
// the init and exec fast paths (initplan.c, execplan.c) without ever starting
// Go. Import it for its side effect from cmd/berth only; it does nothing
// unless the _BERTH_* variables are set.
package nsenter

// #cgo CFLAGS: -Wall -O2
import "C"

// Env names the variables the constructor reads.
const (
	EnvSetns   = "_BERTH_SETNS"
	EnvUnshare = "_BERTH_UNSHARE"
	EnvPipe    = "_BERTH_INITPIPE"
)
