package clients

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/testutil"
)

// TestRuntimeTmpcopyup is the runtime-level repro of the gap behind podman's
// --read-only and --tmpfs failures: a tmpfs mount with runc's "tmpcopyup"
// option must start out holding a copy of what the image has at the mount
// point (modes and owners included), and later writes must stay in the
// tmpfs.
func TestRuntimeTmpcopyup(t *testing.T) {
	testutil.RequireRoot(t)
	bundle := testutil.Bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: "/etc", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "mode=755", "tmpcopyup"},
		})
	}, "sh", "-c", "cat /etc/passwd; stat -c '%a %u' /etc/group; grep ' /etc ' /proc/self/mounts | cut -d' ' -f3; echo x > /etc/new")
	if err := os.Chown(filepath.Join(bundle, "rootfs", "etc", "group"), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(bundle, "rootfs", "etc", "group"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cmd := exec.Command(realBin, "--root", root, "run", "tmpcopyup")
	cmd.Dir = bundle
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() { _ = exec.Command(realBin, "--root", root, "delete", "--force", "tmpcopyup").Run() })
	if err != nil || !strings.Contains(string(out), "root:x:0:0") || !strings.Contains(string(out), "600 65534") || !strings.Contains(string(out), "tmpfs") {
		t.Fatalf("%s run with a tmpcopyup tmpfs on /etc: want /etc/passwd readable, /etc/group 600 65534, /etc a tmpfs; err %v, output:\n%s", realBin, err, out)
	}
	if _, err := os.Stat(filepath.Join(bundle, "rootfs", "etc", "new")); err == nil {
		t.Fatalf("a write to the tmpfs reached the image's /etc")
	}
}

// TestRuntimePathLookupNotExecutable: a command found on PATH only as a
// file without the exec bit (here a symlink to one, as in an image whose
// applet links point at a masked or non-executable file) is "not found" for
// runc, whose init uses Go's exec.LookPath: every candidate that is not
// executable is skipped, and the error is "executable file not found in
// $PATH", which Docker maps to exit 127 (a "permission denied" would be
// 126). The lookup is the executor's (internal/nsenter/process.c).
func TestRuntimePathLookupNotExecutable(t *testing.T) {
	testutil.RequireRoot(t)
	bundle := testutil.Bundle(t, func(s *specs.Spec) {
		s.Process.Env = []string{"PATH=/opt/a:/opt/b"}
	}, "tool")
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"opt/a", "opt/b"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "opt/b/data"), []byte("not a program\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../b/data", filepath.Join(rootfs, "opt/a/tool")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "opt/b/tool"), []byte("#!/bin/sh\necho no\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cmd := exec.Command(realBin, "--root", root, "run", "lookup")
	cmd.Dir = bundle
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() { _ = exec.Command(realBin, "--root", root, "delete", "--force", "lookup").Run() })
	// The log line escapes the quotes around the name.
	if err == nil || !strings.Contains(string(out), `tool\": executable file not found in $PATH`) {
		t.Fatalf("%s run of a command whose PATH candidates are not executable: want `exec: \"tool\": executable file not found in $PATH`; err %v, output:\n%s", realBin, err, out)
	}
}
