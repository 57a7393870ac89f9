package seccomp

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The checked-in tables must be what `go generate` produces from the
// x/sys version in go.mod, so a dependency bump cannot leave them stale.
func TestGeneratedTablesUpToDate(t *testing.T) {
	const header = "/usr/include/x86_64-linux-gnu/asm/unistd_x32.h"
	if _, err := os.Stat(header); err != nil {
		testSkipOrFail(t, "kernel uapi headers (linux-libc-dev) not installed: %v", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		testSkipOrFail(t, "no go tool: %v", err)
	}
	out := filepath.Join(t.TempDir(), "zsyscalls.go")
	cmd := exec.Command(goBin, "run", "gen_syscalls.go", "-x32", header, "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run gen_syscalls.go: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("zsyscalls.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, have) {
		t.Fatal("zsyscalls.go is stale: run go generate ./internal/linux/seccomp")
	}
}
