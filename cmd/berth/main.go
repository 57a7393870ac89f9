// berth's processes live for milliseconds: reading the cgroup CPU limit at
// start-up (and re-reading it in the background) costs more than it saves.

//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0

// Command berth is a container runtime toolkit in one binary: an OCI runtime
// that is a drop-in for runc, image copy, bundle unpack and networking.
package main

import (
	"fmt"
	"os"

	"berth/internal/cli"
	_ "berth/internal/nsenter" // sets up init and exec processes before Go starts
)

func main() {
	// A container's init and exec processes are `berth init` started with
	// the init pipe; the nsenter constructor runs their plan and never
	// returns to Go. Reaching here as init means berth did not start us.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		fmt.Fprintln(os.Stderr, "berth init: not started by berth (no _BERTH_INITPIPE)")
		os.Exit(255)
	}
	os.Exit(cli.Main(os.Args))
}
