package hooks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestRunPassesStateArgsEnv(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	h := specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", `cat > "$OUT"; echo " argv0=$0" >> "$OUT"`, "a1"}, Env: []string{"OUT=" + out}}
	if err := Run("prestart", 0, h, specs.State{ID: "c1", Status: "creating", Pid: 42}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if !strings.Contains(string(b), `"id":"c1"`) || !strings.Contains(string(b), `"pid":42`) || !strings.Contains(string(b), "argv0=a1") {
		t.Fatalf("hook saw %q", b)
	}
}

func TestRunFailureAndTimeout(t *testing.T) {
	err := Run("poststart", 1, specs.Hook{Path: "/bin/false"}, specs.State{})
	if err == nil || !strings.Contains(err.Error(), "error running poststart hook #1") {
		t.Fatalf("err = %v", err)
	}
	one := 1
	err = Run("prestart", 0, specs.Hook{Path: "/bin/sleep", Args: []string{"sleep", "5"}, Timeout: &one}, specs.State{})
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("err = %v", err)
	}
}
