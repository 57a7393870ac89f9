// berth's processes live for milliseconds: reading the cgroup CPU limit at
// start-up (and re-reading it in the background) costs more than it saves.

//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0

// Command berth is a container runtime toolkit in one binary: an OCI runtime
// that is a drop-in for runc, image copy, bundle unpack and networking.
package main

import (
	"os"

	"berth/internal/cli"
	"berth/internal/initproc"
	_ "berth/internal/nsenter" // joins user/mnt/time namespaces before Go starts
)

func main() {
	// The hidden init entry point goes straight to the container setup,
	// without the CLI.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		initproc.Main()
	}
	os.Exit(cli.Main(os.Args))
}
