// Package cgroupv2 proves the cgroup v2 driver on a real unified kernel. The
// project's machines are cgroup v1 hybrid hosts, so this test boots Debian's
// kernel (linux-image-amd64) under qemu-system-x86_64 with software emulation,
// with an initramfs holding busybox and the cgroups test binaries. The guest
// mounts cgroup2, runs the v2 kernel tests (memory/OOM, pids, cpu throttling,
// freeze/thaw, stats, device filter) and prints the results on the serial
// console, which this test reads back.
//
// More guest suites (the runtime's v2 integration tests) are added to
// guestSuites.
//
// systemd_test.go boots a second kind of guest: a Debian root with systemd
// as pid 1 (image_test.go builds and caches it), on cgroup v2 and on the
// hybrid hierarchy, where berth and runc run the parity checks of
// test/cgroupv2/checks with and without the systemd cgroup driver.
package cgroupv2

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"berth/internal/testutil"
)

// guestSuite is one program run in the guest. Either pkg names a test
// package (built with go test -c, run with -test.run run; every name in
// mustRun must PASS there, a skip is a failure) or cmd is a busybox shell
// command whose exit status decides. env is added to the suite's
// environment. When any suite sets berth, a static berth binary is built into
// the guest as /bin/berth and BERTH_BIN points at it (test/integration's
// override), so the runtime's integration tests can be added here as a suite
// {pkg: "berth/test/integration", run: "...", berth: true}.
type guestSuite struct {
	name    string
	pkg     string
	run     string
	mustRun []string
	cmd     string
	env     []string
	berth   bool
}

var guestSuites = []guestSuite{
	{
		name: "cgroups",
		pkg:  "berth/internal/linux/cgroups",
		run:  "TestV2Kernel|TestConformance",
		mustRun: []string{
			"TestV2KernelLifecycle", "TestV2KernelDeviceFilter", "TestV2KernelOOM",
			"TestV2KernelPidsLimit", "TestV2KernelCPUThrottle", "TestConformance",
		},
	},
	{
		name:    "devices",
		pkg:     "berth/internal/linux/cgroups/devices",
		run:     ".",
		mustRun: []string{"TestAttachEnforces", "TestProgramExhaustive"},
	},
	{
		// berth runs containers on cgroup v2: limits (memory OOM with the
		// event, pids), freeze/thaw, stats, update, lifecycle.
		name: "runtime",
		pkg:  "berth/test/integration",
		run:  "TestResourcesPauseResumePsUpdateEvents|TestResourcesPidsLimitStopsForkBomb|TestResourcesMemoryOOM|TestResourcesDeviceRuleDeniesMem|TestRuntimeLifecycle|TestRuntimeRunExitStatus",
		mustRun: []string{
			"TestResourcesPauseResumePsUpdateEvents", "TestResourcesPidsLimitStopsForkBomb", "TestResourcesMemoryOOM", "TestResourcesDeviceRuleDeniesMem",
			"TestRuntimeLifecycle", "TestRuntimeRunExitStatus",
		},
		berth: true,
	},
	{
		// The static runtime binary starts in the guest and sees cgroup v2.
		name:  "berth",
		cmd:   `"$BERTH_BIN" --version && "$BERTH_BIN" features | grep -q '"v2": true'`,
		berth: true,
	},
}

// bootTimeout bounds the whole guest run; the budget is 10 minutes.
const bootTimeout = 8 * time.Minute

func TestCgroupV2Guest(t *testing.T) {
	testutil.RequireRoot(t) // the Debian kernel image is readable by root only
	kernel := newestKernel()
	testutil.Require(t, kernel != "", "no /boot/vmlinuz-*: install linux-image-amd64")
	qemu, err := exec.LookPath("qemu-system-x86_64")
	testutil.Require(t, err == nil, "qemu-system-x86_64 not found: install qemu-system-x86")
	cpio, err := exec.LookPath("cpio")
	testutil.Require(t, err == nil, "cpio not found: install cpio")
	busybox := "/bin/busybox"
	testutil.Require(t, isStatic(busybox), "no static /bin/busybox: install busybox-static")

	work := t.TempDir()
	root := filepath.Join(work, "root")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "tests", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, busybox, filepath.Join(root, "bin/busybox"), 0o755)
	// The runtime's integration tests list containers by owner name.
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The tests use /bin/sh, sleep, head, seq, ps; busybox provides them all.
	for _, app := range []string{"sh", "env", "sleep", "head", "seq", "cat", "grep", "mount", "mkdir", "poweroff", "echo", "ps"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", app)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	needBerth := false
	for _, s := range guestSuites {
		needBerth = needBerth || s.berth
		if s.pkg == "" {
			continue
		}
		build := exec.Command("go", "test", "-c", "-o", filepath.Join(root, "tests", s.name+".test"), s.pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", s.pkg, err, out)
		}
	}
	if needBerth {
		// The release build: static, as the guest has no libc.
		build := exec.Command("bash", "../../scripts/build.sh", filepath.Join(root, "bin", "berth"))
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build static berth: %v\n%s", err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(initScript()), 0o755); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(work, "initrd.cpio")
	pack := exec.Command("/bin/sh", "-c", `cd "$1" && find . | "$2" -o -H newc --quiet > "$3"`, "sh", root, cpio, initrd)
	if out, err := pack.CombinedOutput(); err != nil {
		t.Fatalf("pack initramfs: %v\n%s", err, out)
	}
	t.Logf("guest prepared in %v", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	// No KVM on these machines: TCG, two vCPUs so freezing and throttling
	// see real concurrency. panic=-1 with -no-reboot makes a guest panic end
	// qemu at once instead of hanging until the timeout.
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-m", "768", "-smp", "2",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init")
	var serial bytes.Buffer
	cmd.Stdout = &serial
	cmd.Stderr = &serial
	boot := time.Now()
	runErr := cmd.Run()
	t.Logf("guest ran in %v", time.Since(boot).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("guest did not finish within %v; console:\n%s", bootTimeout, serial.String())
	}
	if runErr != nil {
		t.Fatalf("qemu: %v; console:\n%s", runErr, serial.String())
	}
	report(t, serial.String())
}

var (
	resultRE = regexp.MustCompile(`(?m)^BERTH-SUITE (\S+) rc=(\d+)\s*$`)
	testRE   = regexp.MustCompile(`(?m)^\s*--- (PASS|FAIL|SKIP): (\S+)`)
)

// report turns the guest's console into test results: every suite must have
// exited 0 and every required test must have passed (a skip is a failure:
// the guest exists to run them).
func report(t *testing.T, console string) {
	t.Helper()
	rcs := map[string]string{}
	for _, m := range resultRE.FindAllStringSubmatch(console, -1) {
		rcs[m[1]] = m[2]
	}
	status := map[string]string{}
	for _, m := range testRE.FindAllStringSubmatch(console, -1) {
		status[m[2]] = m[1]
	}
	failed := false
	for _, s := range guestSuites {
		rc, ok := rcs[s.name]
		switch {
		case !ok:
			t.Errorf("suite %s: no result on the console (guest crashed?)", s.name)
			failed = true
		case rc != "0":
			t.Errorf("suite %s: exit status %s", s.name, rc)
			failed = true
		}
		for _, name := range s.mustRun {
			if status[name] != "PASS" {
				t.Errorf("suite %s: %s is %q in the guest, want PASS", s.name, name, status[name])
				failed = true
			}
		}
	}
	var names []string
	for n := range status {
		if !strings.Contains(n, "/") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		t.Logf("guest: %s %s", status[n], n)
	}
	if failed || testing.Verbose() {
		t.Logf("guest console:\n%s", console)
	}
}

// initScript mounts what the tests need, mounts cgroup2 with every controller
// enabled at the root, runs each suite and powers off. Output goes to the
// serial console; each suite ends with a BERTH-SUITE line.
func initScript() string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
export PATH=/bin HOME=/ TMPDIR=/tmp
# pivot_root cannot leave the initramfs root, and container runtimes need
# it: move everything onto a tmpfs root first.
if [ "$BERTH_SWITCHED" != 1 ]; then
	mkdir -p /newroot
	mount -t tmpfs -o mode=755 root /newroot
	for d in /*; do
		case "$d" in /newroot|/proc|/sys|/dev) ;; *) /bin/busybox cp -a "$d" /newroot/ ;; esac
	done
	mkdir -p /newroot/proc /newroot/sys /newroot/dev
	export BERTH_SWITCHED=1
	exec /bin/busybox switch_root /newroot /init
fi
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
echo "BERTH-GUEST kernel $(cat /proc/sys/kernel/osrelease) controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
# The tests run from a child cgroup: the root's own processes must not be
# in a cgroup that delegates controllers (no internal processes rule).
mkdir /sys/fs/cgroup/init
echo $$ > /sys/fs/cgroup/init/cgroup.procs
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control; done
`)
	for _, s := range guestSuites {
		env := strings.Join(s.env, " ")
		if s.berth {
			env += " BERTH_BIN=/bin/berth"
		}
		if s.pkg != "" {
			fmt.Fprintf(&b, "env %s /tests/%s.test -test.v -test.count=1 -test.timeout=5m -test.run '%s' 2>&1\n", env, s.name, s.run)
		} else {
			fmt.Fprintf(&b, "env %s sh -c '%s' 2>&1\n", env, strings.ReplaceAll(s.cmd, "'", `'\''`))
		}
		fmt.Fprintf(&b, "echo \"BERTH-SUITE %s rc=$?\"\n", s.name)
	}
	b.WriteString("poweroff -f\n")
	return b.String()
}

func newestKernel() string {
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Strings(ks)
	if len(ks) == 0 {
		return ""
	}
	return ks[len(ks)-1]
}

// isStatic reports whether path is an ELF executable without a program
// interpreter, i.e. one that runs in a guest holding no libc.
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}
