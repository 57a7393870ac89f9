// Package nsenter links a C constructor into the binary that joins user,
// mount and time namespaces before the Go runtime starts (see nsenter.c).
// Import it for its side effect from cmd/berth only; it does nothing unless
// the _BERTH_SETNS or _BERTH_UNSHARE variables are set.
package nsenter

// #cgo CFLAGS: -Wall -O2
import "C"

// Env names the variables the constructor reads.
const (
	EnvSetns   = "_BERTH_SETNS"
	EnvUnshare = "_BERTH_UNSHARE"
	EnvPipe    = "_BERTH_INITPIPE"
)
