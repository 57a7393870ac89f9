package devices

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/testutil"
)

// v2Mount finds a cgroup2 mount to attach to: the unified root, or the v2
// tree of a hybrid host (device programs need only cgroup2, no controller).
func v2Mount(t *testing.T) string {
	for _, d := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return d
		}
	}
	testutil.Require(t, false, "no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified")
	return ""
}

// TestAttachEnforces loads the program into the kernel (the verifier must
// accept it), attaches it to a fresh cgroup, starts a shell inside it with
// CLONE_INTO_CGROUP and checks which devices it can open.
func TestAttachEnforces(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(v2Mount(t), fmt.Sprintf("berth-devtest-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Rmdir(dir); err != nil {
			t.Errorf("cleanup %s: %v", dir, err)
		}
	})
	spec := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, d := range DefaultAllowed {
		if *d.Major == 1 && *d.Minor == 5 {
			continue // leave /dev/zero out
		}
		spec = append(spec, d)
	}
	rules, err := FromSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Reduce(rules)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // the second Attach must replace the first
		if err := Attach(dir, Program(st)); err != nil {
			t.Fatal(err)
		}
	}
	if ids, err := Attached(dir); err != nil || len(ids) != 1 {
		t.Fatalf("Attached = %v, %v; want exactly one program", ids, err)
	}
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	cmd := exec.Command("/bin/sh", "-c", `
for d in /dev/null /dev/zero /dev/full; do
	if head -c 1 $d >/dev/null 2>&1; then echo "$d ok"; else echo "$d denied"; fi
done`)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := "/dev/null ok\n/dev/zero denied\n/dev/full ok\n"; string(out) != want {
		t.Errorf("device access:\n%s\nwant:\n%s", out, want)
	}
}

func TestLoadRejectsBadProgram(t *testing.T) {
	testutil.RequireRoot(t)
	// A program that never sets r0 must fail verification, and the error
	// must carry the verifier's explanation.
	_, err := Load([]Insn{{Code: opExit}})
	if err == nil || !strings.Contains(err.Error(), "R0") {
		t.Fatalf("Load(bad) = %v, want a verifier error mentioning R0", err)
	}
}
