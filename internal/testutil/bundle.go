package testutil

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/spec"
)

// BusyboxPath is Debian's busybox-static binary, the test rootfs' only program.
const BusyboxPath = "/bin/busybox"

// BusyboxRootfs builds a minimal rootfs in dir: busybox with every applet
// linked, /etc/passwd and /etc/group. It skips (or fails in CI) without
// busybox-static.
func BusyboxRootfs(t testing.TB, dir string) {
	t.Helper()
	out, err := exec.Command("file", "-L", BusyboxPath).CombinedOutput()
	if err == nil && !strings.Contains(string(out), "statically linked") && !strings.Contains(string(out), "static-pie") {
		Require(t, false, BusyboxPath+" is not static (install busybox-static)")
	}
	if _, err := os.Stat(BusyboxPath); err != nil {
		Require(t, false, "busybox-static is not installed")
	}
	for _, d := range []string{"bin", "proc", "sys", "dev", "etc", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(string(list)) {
		if a == "busybox" {
			continue
		}
		_ = os.Symlink("busybox", filepath.Join(dir, "bin", a))
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Bundle makes a busybox bundle under a temp dir with berth's default spec,
// terminal off, running args; mutate may edit the spec. Returns the bundle dir.
func Bundle(t testing.TB, mutate func(*specs.Spec), args ...string) string {
	t.Helper()
	dir := t.TempDir()
	BusyboxRootfs(t, filepath.Join(dir, "rootfs"))
	s := spec.Default(false)
	s.Process.Terminal = false
	if len(args) > 0 {
		s.Process.Args = args
	}
	if mutate != nil {
		mutate(s)
	}
	WriteSpec(t, dir, s)
	return dir
}

// WriteSpec writes s as dir/config.json.
func WriteSpec(t testing.TB, dir string, s *specs.Spec) {
	t.Helper()
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
