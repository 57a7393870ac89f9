// Package integration holds black-box tests of the built berth binary, one
// file per feature. TestMain builds the binary once; tests run it as root
// against the real kernel.
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// berthBin is the path of the binary under test. BERTH_BIN overrides the
// build (for testing an installed binary).
var berthBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	defer removeRootlessUser()
	if p := os.Getenv("BERTH_BIN"); p != "" {
		berthBin = p
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "berth-itest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// The rootless tests run the binary as an ordinary user.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	berthBin = filepath.Join(dir, "berth")
	// The release build (static), the binary the benchmarks measure.
	cmd := exec.Command("bash", "scripts/build.sh", berthBin)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building berth:", err)
		return 1
	}
	return m.Run()
}
