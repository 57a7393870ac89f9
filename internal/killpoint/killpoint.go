// Package killpoint is a test-only fault injection hook. A berth process
// started with BERTH_TEST_KILL_AT=<step> in its environment sends itself
// SIGKILL the moment it reaches the named step, so a test can stop create,
// start, exec, delete, the network commands and `container run` at every
// step they have, not only at random delays, and then check that the
// cleanup commands leave nothing behind (test/integration/fault_test.go).
//
// Steps are named where the work is: the runtime's timed phases (the names
// its debug log prints, see runtime.phase) and the At calls in
// internal/network and internal/oneshot. Without the variable, which is never
// set outside the tests, At compares one string.
package killpoint

import (
	"os"

	"golang.org/x/sys/unix"
)

// Env names the step at which the process kills itself.
const Env = "BERTH_TEST_KILL_AT"

var target = os.Getenv(Env)

// At kills the calling process with SIGKILL (no deferred cleanup, no exit
// handlers: what a crash, the OOM killer or `kill -9` does) when step is the
// one named by BERTH_TEST_KILL_AT.
func At(step string) {
	if target == "" || step != target {
		return
	}
	_ = unix.Kill(os.Getpid(), unix.SIGKILL)
	// SIGKILL is acted on before this thread returns to user space, and
	// every other thread of the process dies with it; nothing after this
	// line runs.
	for {
		_ = unix.Pause()
	}
}
