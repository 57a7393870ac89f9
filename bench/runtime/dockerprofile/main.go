// Command dockerprofile prints docker's default seccomp profile (moby's,
// for runc's default capability set) as an OCI linux.seccomp object, so
// bench/runtime can measure the start-up cost of a real-world filter.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func main() {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	s := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
	p, err := moby.GetDefaultProfile(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockerprofile:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(p); err != nil {
		fmt.Fprintln(os.Stderr, "dockerprofile:", err)
		os.Exit(1)
	}
}
