// Command berth is a container runtime toolkit in one binary: an OCI runtime
// that is a drop-in for runc, image copy, bundle unpack and networking.
package main

import (
	"os"

	"berth/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args))
}
