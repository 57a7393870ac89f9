package main

import (
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"berth/internal/linux/rootfs"
	"berth/internal/testutil"
)

func TestUnescapeMount(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/plain", "/plain"},
		{`/with\040space`, "/with space"},
		{`/tab\011x\134y`, "/tab\tx\\y"},
		{`/trailing\04`, `/trailing\04`},
		{`/bad\09x`, `/bad\09x`},
	}
	for _, tt := range tests {
		if got := rootfs.UnescapeMountinfo(tt.in); got != tt.want {
			t.Errorf("unescapeMount(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFilterEnv(t *testing.T) {
	got := filterEnv([]string{"A=1", "RUNTIME=runc", "RUNTIMEX=2", "TMPDIR=/x", "B=3"}, "RUNTIME", "TMPDIR")
	if want := []string{"A=1", "RUNTIMEX=2", "B=3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestWrapperPassesArgs checks that the generated RUNTIME wrapper adds
// --root and passes every argument through unchanged, quoting included.
func TestWrapperPassesArgs(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake runtime's")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "runtime")
	if err := os.WriteFile(wrapper, []byte(wrapperScript(fake, "/run/x y")), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(wrapper, "delete", "--force", "id with 'quote'").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "[--root][/run/x y][delete][--force][id with 'quote']"; string(out) != want {
		t.Errorf("wrapper ran %s, want %s", out, want)
	}
}

func TestIndentClip(t *testing.T) {
	got := indentClip("a\nbbbbbb\nc\nd\n", "  ", 2, 3)
	if want := "  a\n  bbb...\n  ... (2 more lines in the logs)\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no runtime", nil, "-runtime is required"},
		{"stray argument", []string{"-runtime", "x", "runc"}, "unexpected arguments"},
		{"bad timeout", []string{"-runtime", "x", "-timeout", "0s"}, "must be positive"},
		{"ok", []string{"-runtime", "x", "-run", "kill"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if o.logs != filepath.Join(o.cache, "last-run") {
					t.Errorf("logs default %q", o.logs)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

// TestSandboxClean checks the cleanup between tests on the real kernel: a
// container left in the private root is force-deleted through the runtime,
// a mount leaked under the bundles is detached, bundles are removed, and the
// suite's cgroup directories are rmdir'ed (here in a stand-in directory, so
// the test never touches the machine's cgroups).
func TestSandboxClean(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "calls")
	fake := filepath.Join(dir, "fake-runtime")
	// Records its arguments; "--root R delete --force ID" removes R/ID the
	// way a real runtime removes its state directory.
	script := "#!/bin/sh\necho \"$@\" >> " + shellQuote(log) + "\n" +
		"[ \"$1\" = --root ] && [ \"$3\" = delete ] && rm -rf \"$2/$5\"\nexit 0\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	sb, err := NewSandbox(fake)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Error(err)
		}
	})
	cg := filepath.Join(dir, "cgroupfs")
	sb.CgroupMounts = []string{cg}
	for _, d := range []string{"testdir/cgrouptest/container", "cgrouptest", "unrelated"} {
		if err := os.MkdirAll(filepath.Join(cg, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(sb.Root, "left-behind"), 0o700); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(sb.Tmp, "ocitest1", "rootfs", "proc")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })

	if err := sb.Clean(); err != nil {
		t.Fatal(err)
	}
	calls, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if want := "--root " + sb.Root + " delete --force left-behind\n"; string(calls) != want {
		t.Errorf("runtime calls %q, want %q", calls, want)
	}
	if sb.LeftContainers != 1 || sb.LeftMounts != 1 || sb.LeftCgroups != 4 {
		t.Errorf("counters: containers %d mounts %d cgroups %d, want 1 1 4", sb.LeftContainers, sb.LeftMounts, sb.LeftCgroups)
	}
	if left, _ := mountsUnder(sb.Tmp); len(left) != 0 {
		t.Errorf("mounts left: %q", left)
	}
	if ents, _ := os.ReadDir(sb.Tmp); len(ents) != 0 {
		t.Errorf("bundles left: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(cg, "unrelated")); err != nil {
		t.Errorf("an unrelated cgroup was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cg, "testdir")); !os.IsNotExist(err) {
		t.Errorf("testdir still there: %v", err)
	}
}
