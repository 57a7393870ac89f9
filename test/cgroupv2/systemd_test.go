package cgroupv2

// The systemd guest: Debian's kernel booting a Debian root (image_test.go)
// with systemd as pid 1 on the unified hierarchy, once, running every suite
// of test/cgroupv2/checks with berth and with Debian's runc, each with and
// without the systemd cgroup driver, then the cgroups package's v2 kernel
// tests on a systemd-managed tree. berth must pass every check runc passes
// (and the checks that are berth's own). The guest has no network device:
// the clients' image is a docker-archive on the payload disk.

import (
	"bufio"
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

// systemdGuestTimeout bounds the whole guest run (boot + suites).
const systemdGuestTimeout = 40 * time.Minute

// guestCombos are the parity suite's runs: runtime × driver.
var guestCombos = []struct{ rt, driver string }{
	{"berth", "cgroupfs"}, {"runc", "cgroupfs"}, {"berth", "systemd"}, {"runc", "systemd"},
}

func comboSuite(rt, driver string) string { return "checks-" + rt + "-" + driver }

// checksRun selects the parity checks (BERTH_GUEST_CHECKS, a -test.run
// pattern, narrows them while working on one, and BERTH_GUEST_COMBOS, a
// part of "berth/systemd", the runs; CI runs them all).
func checksRun() string {
	if r := os.Getenv("BERTH_GUEST_CHECKS"); r != "" {
		return strings.ReplaceAll(r, "'", "")
	}
	return "."
}

func TestSystemdGuest(t *testing.T) {
	out, ok := systemdGuest(t, "systemd.unified_cgroup_hierarchy=1", guestScript(guestCombos, true))
	if ok {
		reportSystemdGuest(t, out, guestCombos, true)
	}
}

// hybridCombos run on the hybrid hierarchy (v1 controllers, systemd's own
// tree on cgroup2): the systemd driver, berth beside runc. The cgroupfs
// driver on v1 is what the project's own machines prove every run.
var hybridCombos = []struct{ rt, driver string }{{"berth", "systemd"}, {"runc", "systemd"}}

// TestSystemdGuestV1: a second boot, systemd managing cgroup v1 controllers.
func TestSystemdGuestV1(t *testing.T) {
	out, ok := systemdGuest(t, "systemd.unified_cgroup_hierarchy=0", guestScript(hybridCombos, false))
	if ok {
		reportSystemdGuest(t, out, hybridCombos, false)
	}
}

// systemdGuest boots the guest once with the kernel arguments hierarchy and
// the suites script, and returns what the suites printed.
func systemdGuest(t *testing.T, hierarchy, script string) (string, bool) {
	t.Helper()
	requireGuestTools(t)
	kernel := newestKernel()
	testutil.Require(t, kernel != "", "no /boot/vmlinuz-*: install linux-image-amd64")
	initrd := "/boot/initrd.img-" + strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	_, err := os.Stat(initrd)
	testutil.Require(t, err == nil, "no "+initrd+" (linux-image-amd64 with initramfs-tools)")
	img := guestImage(t)

	prep := time.Now()
	work := t.TempDir()
	payload := filepath.Join(work, "payload")
	for _, d := range []string{"bin", "tests", "suite/validation"} {
		if err := os.MkdirAll(filepath.Join(payload, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The guest is a Debian system with glibc: the binaries build as here.
	build := func(out string, argv ...string) {
		cmd := exec.Command(argv[0], argv[1:]...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", out, err, b)
		}
	}
	build("berth", "bash", "../../scripts/build.sh", filepath.Join(payload, "bin", "berth"))
	build("checks", "go", "test", "-c", "-o", filepath.Join(payload, "tests", "checks.test"), "berth/test/cgroupv2/checks")
	build("cgroups", "go", "test", "-c", "-o", filepath.Join(payload, "tests", "cgroups.test"), "berth/internal/linux/cgroups")
	rootfs := filepath.Join(work, "image-rootfs")
	testutil.BusyboxRootfs(t, rootfs)
	testutil.DockerArchive(t, filepath.Join(payload, "image.tar"), "localhost/berth-checks:latest", rootfs)
	copyValidation(t, filepath.Join(payload, "suite"))
	if err := os.WriteFile(filepath.Join(payload, "run.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	payloadImg := filepath.Join(work, "payload.img")
	du, _ := exec.Command("du", "-sm", payload).Output()
	var mb int
	fmt.Sscan(string(du), &mb)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", payload, payloadImg, fmt.Sprintf("%dM", mb*5/4+64)).CombinedOutput(); err != nil {
		t.Fatalf("payload image: %v\n%s", err, out)
	}
	t.Logf("payload prepared in %v (%d MiB)", time.Since(prep).Round(time.Millisecond), mb)

	results := filepath.Join(work, "results.log")
	qemu := exec.Command("qemu-system-x86_64",
		"-accel", "tcg", "-m", "3072", "-smp", "2", "-cpu", "max",
		"-display", "none", "-monitor", "none", "-no-reboot", "-nic", "none",
		"-serial", "file:"+filepath.Join(work, "console.log"), "-serial", "file:"+results,
		"-kernel", kernel, "-initrd", initrd,
		"-drive", "file="+img+",if=virtio,format=raw,snapshot=on",
		"-drive", "file="+payloadImg+",if=virtio,format=raw,readonly=on",
		"-append", "root=/dev/vda rw console=ttyS0 panic=-1 quiet loglevel=3 systemd.show_status=0 "+
			hierarchy+" net.ifnames=0 fsck.mode=skip")
	start := time.Now()
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- qemu.Wait() }()
	var up time.Duration
	timeout := time.After(systemdGuestTimeout)
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("qemu: %v", err)
			}
			break wait
		case <-timeout:
			qemu.Process.Kill()
			<-done
			t.Errorf("guest did not finish within %v", systemdGuestTimeout)
			break wait
		case <-time.After(time.Second):
			if up == 0 {
				if b, _ := os.ReadFile(results); strings.Contains(string(b), "BERTH-GUEST up") {
					up = time.Since(start)
				}
			}
		}
	}
	total := time.Since(start)
	out, _ := os.ReadFile(results)
	console, _ := os.ReadFile(filepath.Join(work, "console.log"))
	t.Logf("guest: boot to the suites %v, suites %v, total %v", up.Round(time.Second), (total - up).Round(time.Second), total.Round(time.Second))
	if !strings.Contains(string(out), "BERTH-GUEST-DONE") {
		t.Errorf("the guest did not finish its suites; console:\n%s\nresults:\n%s", tail(string(console), 80), tail(string(out), 200))
		return "", false
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest results:\n%s", out)
		}
	})
	return string(out), true
}

func tail(s string, n int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// copyValidation puts runtime-tools' validation tests of cgroups and the
// lifecycle (built by the conformance harness, test/conformance, into its
// cache) into dir.
func copyValidation(t *testing.T, dir string) {
	t.Helper()
	find := func() string {
		m, _ := filepath.Glob("/var/cache/berth-conformance/runtime-tools@*/src/runtimetest")
		if len(m) == 0 {
			return ""
		}
		return filepath.Dir(m[0])
	}
	src := find()
	if src == "" {
		// Build the suite: the harness prepares it before it filters tests.
		cmd := exec.Command("go", "run", "./test/conformance", "-runtime", "/bin/true", "-run", "^$", "-expect", os.DevNull)
		cmd.Dir = "../.."
		out, _ := cmd.CombinedOutput()
		if src = find(); src == "" {
			t.Fatalf("runtime-tools suite not built:\n%s", out)
		}
	}
	cp := func(from, to string) {
		if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v\n%s", from, err, out)
		}
	}
	cp(filepath.Join(src, "runtimetest"), dir)
	cp(filepath.Join(src, "rootfs-amd64.tar.gz"), dir)
	// The cgroup tests and the lifecycle ones: the rest of the suite
	// does not depend on the hierarchy and runs on the host every CI run.
	var tests []string
	for _, pat := range []string{"linux_cgroups_*", "create", "start", "state", "kill*", "delete*", "default", "config_updates_without_affect"} {
		m, _ := filepath.Glob(filepath.Join(src, "validation", pat))
		tests = append(tests, m...)
	}
	for _, d := range tests {
		name := filepath.Base(d)
		if _, err := os.Stat(filepath.Join(d, name+".t")); err != nil {
			continue
		}
		if err := os.MkdirAll(filepath.Join(dir, "validation", name), 0o755); err != nil {
			t.Fatal(err)
		}
		cp(filepath.Join(d, name+".t"), filepath.Join(dir, "validation", name))
	}
}

// guestScript is run.sh: the suites, each between BERTH-SUITE-BEGIN and a
// BERTH-SUITE line with its exit status and time, then a forced poweroff.
func guestScript(combos []struct{ rt, driver string }, withCgroups bool) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/var/tmp
P=/mnt/payload
echo "BERTH-GUEST up $(cut -d' ' -f1 /proc/uptime)s: $(systemctl --version | head -1); /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup); $(uname -r)"
# cgroup2 is the root on a unified host, systemd's tree on a hybrid one.
v2=/sys/fs/cgroup; [ -f $v2/cgroup.controllers ] || v2=/sys/fs/cgroup/unified
echo "BERTH-GUEST cgroup2 at $v2, root controllers: $(cat $v2/cgroup.subtree_control)"
# The service's delegated cgroup holds no process of its own: the
# supervisor moves to a leaf.
cg=$v2$(sed -n 's/^0:://p' /proc/self/cgroup)
mkdir -p "$cg/supervisor" && echo $$ > "$cg/supervisor/cgroup.procs"
# podman and conmon pick JSON error logs by the runtime's name.
mkdir -p /run/berth-bin && ln -sf $P/bin/berth /run/berth-bin/runc
now() { cut -d' ' -f1 /proc/uptime; }
suite() {
	name=$1; shift
	echo "BERTH-SUITE-BEGIN $name"
	s=$(now)
	"$@" 2>&1
	rc=$?
	echo "BERTH-SUITE $name rc=$rc secs=$(awk -v a="$s" -v b="$(now)" 'BEGIN{printf "%.0f", b-a}')"
}
`)
	for _, c := range combos {
		if f := os.Getenv("BERTH_GUEST_COMBOS"); f != "" && !strings.Contains(c.rt+"/"+c.driver, f) {
			continue
		}
		bin, sd := "/run/berth-bin/runc", "0"
		if c.rt == "runc" {
			bin = "/usr/sbin/runc"
		}
		if c.driver == "systemd" {
			sd = "1"
		}
		fmt.Fprintf(&b, "suite %s env CHECK_RUNTIME=%s CHECK_NAME=%s CHECK_SYSTEMD=%s CHECK_IMAGE=$P/image.tar CHECK_SUITE=$P/suite $P/tests/checks.test -test.v -test.timeout 40m -test.run '%s'\n",
			comboSuite(c.rt, c.driver), bin, c.rt, sd, checksRun())
	}
	if withCgroups {
		b.WriteString("suite cgroups $P/tests/cgroups.test -test.v -test.timeout 10m -test.run 'TestV2Kernel|TestConformance'\n")
	}
	b.WriteString(`echo "BERTH-GUEST-DONE $(now)s"
systemctl --force --force poweroff
`)
	return b.String()
}

var (
	suiteBeginRE = regexp.MustCompile(`^BERTH-SUITE-BEGIN (\S+)`)
	suiteEndRE   = regexp.MustCompile(`^BERTH-SUITE (\S+) rc=(\d+) secs=(\d+)`)
	validationRE = regexp.MustCompile(`^VALIDATION (\S+) (\d+) (ok|not-ok) ?(.*)$`)
)

type suiteResult struct {
	rc, secs   string
	tests      map[string]string // top-level test -> PASS/FAIL/SKIP
	validation map[string]string // "test #n" -> ok/not-ok
	descs      map[string]string
}

func parseGuest(out string) map[string]*suiteResult {
	res := map[string]*suiteResult{}
	var cur *suiteResult
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if m := suiteBeginRE.FindStringSubmatch(l); m != nil {
			cur = &suiteResult{tests: map[string]string{}, validation: map[string]string{}, descs: map[string]string{}}
			res[m[1]] = cur
			continue
		}
		if cur == nil {
			continue
		}
		if m := suiteEndRE.FindStringSubmatch(l); m != nil {
			cur.rc, cur.secs = m[2], m[3]
			cur = nil
			continue
		}
		if m := testRE.FindStringSubmatch(l); m != nil && !strings.Contains(m[2], "/") {
			cur.tests[m[2]] = m[1]
		}
		if m := validationRE.FindStringSubmatch(l); m != nil {
			k := m[1] + " #" + m[2]
			cur.validation[k] = m[3]
			cur.descs[k] = m[4]
		}
	}
	return res
}

// reportSystemdGuest prints the check table and fails where berth falls
// short: a check berth fails or skips while runc passes it with the same
// driver, any failed berth check, a validation assertion runc passes and
// berth does not, and the cgroups kernel tests.
func reportSystemdGuest(t *testing.T, out string, combos []struct{ rt, driver string }, withCgroups bool) {
	t.Helper()
	res := parseGuest(out)
	for _, c := range combos {
		if res[comboSuite(c.rt, c.driver)] == nil {
			if os.Getenv("BERTH_GUEST_COMBOS") != "" {
				res[comboSuite(c.rt, c.driver)] = &suiteResult{tests: map[string]string{}, validation: map[string]string{}}
				continue
			}
			t.Errorf("suite %s did not run", comboSuite(c.rt, c.driver))
			return
		}
	}
	names := map[string]bool{}
	for _, c := range combos {
		for n := range res[comboSuite(c.rt, c.driver)].tests {
			names[n] = true
		}
	}
	var sorted []string
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var tab strings.Builder
	fmt.Fprintf(&tab, "%-26s", "check")
	for _, c := range combos {
		fmt.Fprintf(&tab, " %-16s", c.rt+"/"+c.driver)
	}
	tab.WriteString("\n")
	for _, n := range sorted {
		fmt.Fprintf(&tab, "%-26s", n)
		for _, c := range combos {
			st := res[comboSuite(c.rt, c.driver)].tests[n]
			if st == "" {
				st = "-"
			}
			fmt.Fprintf(&tab, " %-16s", st)
		}
		tab.WriteString("\n")
	}
	for _, c := range combos {
		r := res[comboSuite(c.rt, c.driver)]
		ok := 0
		for _, v := range r.validation {
			if v == "ok" {
				ok++
			}
		}
		fmt.Fprintf(&tab, "%s/%s: exit %s in %ss; runtime-tools assertions %d/%d ok\n", c.rt, c.driver, r.rc, r.secs, ok, len(r.validation))
	}
	if cg := res["cgroups"]; cg != nil {
		var ns []string
		for n, st := range cg.tests {
			ns = append(ns, n+" "+st)
		}
		sort.Strings(ns)
		fmt.Fprintf(&tab, "cgroups package on the systemd host: exit %s in %ss: %s\n", cg.rc, cg.secs, strings.Join(ns, ", "))
	}
	t.Logf("systemd guest check table:\n%s", tab.String())

	drivers := map[string]bool{}
	for _, c := range combos {
		drivers[c.driver] = true
	}
	for driver := range drivers {
		b, r := res[comboSuite("berth", driver)], res[comboSuite("runc", driver)]
		for _, n := range sorted {
			switch {
			case b.tests[n] == "FAIL":
				t.Errorf("%s (%s driver): berth FAILS", n, driver)
			case r.tests[n] == "PASS" && b.tests[n] != "PASS":
				t.Errorf("%s (%s driver): runc passes, berth %q", n, driver, b.tests[n])
			}
		}
		for k, v := range r.validation {
			if v == "ok" && b.validation[k] != "ok" {
				t.Errorf("runtime-tools %s (%s): runc ok, berth %q", k, r.descs[k], b.validation[k])
			}
		}
	}
	if cg := res["cgroups"]; withCgroups && (cg == nil || cg.rc != "0") {
		t.Errorf("cgroups kernel tests on the systemd guest failed")
	}
}
