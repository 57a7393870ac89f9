// Package nsenter links a C constructor into the binary that, in a
// container's init or exec process, places the process in its cgroups,
// joins user, mount, time and cgroup namespaces before the Go runtime
// starts (nsenter.c), and then runs the plan executor (plan.c and the step
// files): the process is set up from the plan the runtime compiled
// (internal/linux/plan) and execs the container's program without ever
// starting Go. Import it for its side effect from cmd/berth only; it does
// nothing unless _BERTH_INITPIPE is set.
package nsenter

// #cgo CFLAGS: -Wall -Wextra -Werror -O2
import "C"

// Env names the variables the constructor reads.
const (
	EnvSetns   = "_BERTH_SETNS"
	EnvUnshare = "_BERTH_UNSHARE"
	EnvPipe    = "_BERTH_INITPIPE"
)
