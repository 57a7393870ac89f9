package clients

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/internal/testutil"
)

// ctrd is a private containerd daemon: own root, state, socket and runc root,
// so the suite never touches a containerd the host may run.
type ctrd struct {
	t        *testing.T
	dir      string
	sock     string
	ns       string
	runcRoot string
	image    string
	ids      map[string]bool // every container id given to ctr run
}

// startContainerd starts containerd under a temp dir and imports the test
// image into it; t.Cleanup stops every task, the daemon and its shims.
func startContainerd(t *testing.T) *ctrd {
	t.Helper()
	// containerd's socket path must fit sun_path (108 bytes): keep it short.
	dir, err := os.MkdirTemp("", "bctrd-")
	if err != nil {
		t.Fatal(err)
	}
	removeIfCreated(t, "/run/containerd", "/run/containerd/s", "/run/containerd/fifo")
	// The namespace names the cgroup parent (/<ns>/<id>): unique per
	// process, so concurrent runs of this suite never share cgroups.
	ns := fmt.Sprintf("berthtest%d", os.Getpid())
	removeIfCreated(t, cgroupDirs(ns)...)
	c := &ctrd{t: t, dir: dir, sock: filepath.Join(dir, "c.sock"), ns: ns, runcRoot: filepath.Join(dir, "runc"), ids: map[string]bool{}}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc", filepath.Join(dir, "opt"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	})
	cmd := startLogged(t, filepath.Join(dir, "containerd.log"), "containerd", "--config", filepath.Join(dir, "config.toml"))
	t.Cleanup(func() {
		c.t = t // subtests that last set c.t are over
		c.cleanup(cmd)
		if t.Failed() {
			t.Logf("containerd log (tail):\n%s", logTail(filepath.Join(dir, "containerd.log"), 40))
		}
	})
	if !waitFor(15*time.Second, func() bool { return c.ctr("version").code == 0 }) {
		t.Fatalf("containerd did not come up: %s", c.ctr("version"))
	}
	archive := filepath.Join(dir, "image.tar")
	buildImageArchive(t, archive)
	c.must("images", "import", "--snapshotter", "native", archive)
	// ctr normalises the tag it read from the archive; use what it stored.
	refs := strings.Fields(c.must("images", "ls", "-q").stdout)
	if len(refs) != 1 {
		t.Fatalf("expected one imported image, got %q", refs)
	}
	c.image = refs[0]
	return c
}

// cleanup kills and deletes every task and container, stops the daemon and
// kills shims still attached to this daemon's socket.
func (c *ctrd) cleanup(daemon *exec.Cmd) {
	for _, id := range strings.Fields(c.ctr("containers", "ls", "-q").stdout) {
		c.ctr("tasks", "kill", "-s", "SIGKILL", id)
		waitFor(5*time.Second, func() bool { return c.taskStatus(id) != "RUNNING" && c.taskStatus(id) != "PAUSED" })
		c.ctr("tasks", "delete", "-f", id)
		c.ctr("containers", "delete", id)
	}
	stopDaemon(daemon, 10*time.Second)
	// Shims are started with -address <our socket>; nothing else has it.
	killPids(pidsWithArg(c.sock))
	// A killed shim leaves its socket in containerd's fixed socket dir,
	// named by the hash of <address>/<namespace>/<id>.
	for id := range c.ids {
		sum := sha256.Sum256([]byte(filepath.Join(c.sock, c.ns, id)))
		_ = os.Remove(filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:])))
	}
	// Containers a killed shim left behind: the runtime still knows them.
	deleteRuntimeContainers(realBin, filepath.Join(c.runcRoot, c.ns))
}

// ctr runs ctr against this daemon.
func (c *ctrd) ctr(args ...string) result {
	return runCmd(c.t, nil, "", append([]string{"ctr", "--address", c.sock, "--namespace", c.ns}, args...)...)
}

// must runs ctr and fails the test unless it exits 0.
func (c *ctrd) must(args ...string) result {
	c.t.Helper()
	r := c.ctr(args...)
	if r.code != 0 {
		c.t.Fatalf("ctr failed:\n%s", r)
	}
	return r
}

// runArgv is `ctr run` with the runc shim pointed at the runtime under test.
func (c *ctrd) runArgv(flags []string, id string, cmd ...string) []string {
	c.ids[id] = true
	argv := []string{"ctr", "--address", c.sock, "--namespace", c.ns, "run", "--snapshotter", "native",
		"--runc-binary", runtimeBin, "--runc-root", c.runcRoot, "--fifo-dir", filepath.Join(c.dir, "fifo")}
	argv = append(argv, flags...)
	argv = append(argv, c.image, id)
	return append(argv, cmd...)
}

// mustRun runs `ctr run` (see runArgv) and fails the test unless it exits 0.
func (c *ctrd) mustRun(flags []string, id string, cmd ...string) result {
	c.t.Helper()
	r := runCmd(c.t, nil, "", c.runArgv(flags, id, cmd...)...)
	if r.code != 0 {
		c.t.Fatalf("ctr run failed:\n%s", r)
	}
	return r
}

// taskStatus is the STATUS column of `ctr task ls` for id ("" if absent).
func (c *ctrd) taskStatus(id string) string {
	for _, line := range strings.Split(c.ctr("tasks", "ls").stdout, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

// taskPid is the PID column of `ctr task ls` for id.
func (c *ctrd) taskPid(id string) int {
	for _, line := range strings.Split(c.ctr("tasks", "ls").stdout, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id {
			p, _ := strconv.Atoi(f[1])
			return p
		}
	}
	return 0
}

// removeContainer deletes id's task and container, ignoring "not found".
func (c *ctrd) removeContainer(id string) {
	c.ctr("tasks", "kill", "-s", "SIGKILL", id)
	waitFor(5*time.Second, func() bool { s := c.taskStatus(id); return s != "RUNNING" && s != "PAUSED" })
	c.ctr("tasks", "delete", "-f", id)
	c.ctr("containers", "delete", id)
}

func TestContainerd(t *testing.T) {
	testutil.RequireRoot(t)
	requireTool(t, "containerd", "ctr", "containerd-shim-runc-v2", "script")
	c := startContainerd(t)

	t.Run("RunNoTTY", func(t *testing.T) {
		c.t = t
		r := runCmd(t, nil, "", c.runArgv([]string{"--rm"}, "notty", "sh", "-c", "echo out; echo err >&2; exit 3")...)
		if r.code != 3 || strings.TrimSpace(r.stdout) != "out" || !strings.Contains(r.stderr, "err") {
			t.Fatalf("want exit 3, stdout \"out\", stderr \"err\":\n%s", r)
		}
		if !strings.Contains(r.trace, "'create'") || !strings.Contains(r.trace, "'--log-format' 'json'") {
			t.Fatalf("the shim did not create the container through the runtime under test:\n%s", r)
		}
	})

	t.Run("RunTTY", func(t *testing.T) {
		c.t = t
		r := runCmd(t, nil, "", inPty(shellQuote(c.runArgv([]string{"--rm", "-t"}, "tty", "sh", "-c", "tty; echo hi-tty; exit 4")))...)
		if r.code != 4 || !strings.Contains(r.stdout, "/dev/pts/") || !strings.Contains(r.stdout, "hi-tty") {
			t.Fatalf("want exit 4 and a pts name plus hi-tty on the terminal:\n%s", r)
		}
		if !strings.Contains(r.trace, "'--console-socket'") {
			t.Fatalf("create got no --console-socket:\n%s", r)
		}
	})

	t.Run("Lifecycle", func(t *testing.T) {
		c.t = t
		const id = "life"
		t.Cleanup(func() { c.removeContainer(id) })
		// pid 1 ignores SIGTERM unless it handles it: the trap makes kill
		// observable as exit status 7.
		r := runCmd(t, nil, "", c.runArgv([]string{"-d"}, id, "sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.1; done")...)
		if r.code != 0 {
			t.Fatalf("ctr run -d:\n%s", r)
		}
		if s := c.taskStatus(id); s != "RUNNING" {
			t.Fatalf("task status %q, want RUNNING", s)
		}
		pid := c.taskPid(id)

		r = c.ctr("tasks", "exec", "--fifo-dir", filepath.Join(c.dir, "fifo"), "--exec-id", "e1", id, "sh", "-c", "echo exec-out; exit 5")
		if r.code != 5 || strings.TrimSpace(r.stdout) != "exec-out" {
			t.Fatalf("ctr task exec: want exit 5 and exec-out:\n%s", r)
		}
		if !strings.Contains(r.trace, "'exec'") || !strings.Contains(r.trace, "'--process'") {
			t.Fatalf("exec did not go through the runtime's exec --process:\n%s", r)
		}
		r = runCmd(t, nil, "", inPty(shellQuote([]string{"ctr", "--address", c.sock, "--namespace", c.ns,
			"tasks", "exec", "--fifo-dir", filepath.Join(c.dir, "fifo"), "-t", "--exec-id", "e2", id, "sh", "-c", "tty; exit 6"}))...)
		if r.code != 6 || !strings.Contains(r.stdout, "/dev/pts/") {
			t.Fatalf("ctr task exec -t: want exit 6 and a pts name:\n%s", r)
		}

		// A failed exec reaches ctr as "OCI runtime exec failed: <last
		// error in log.json>"; the shim never sees the process start.
		r = c.ctr("tasks", "exec", "--fifo-dir", filepath.Join(c.dir, "fifo"), "--exec-id", "e3", id, "/no/such/binary")
		if r.code == 0 || !strings.Contains(r.stderr, "OCI runtime exec failed") || !strings.Contains(r.stderr, "no such file or directory") {
			t.Fatalf("exec of a missing binary: want \"OCI runtime exec failed\" and \"no such file or directory\":\n%s", r)
		}

		r = c.must("tasks", "ps", id)
		if !strings.Contains(r.stdout, strconv.Itoa(pid)) {
			t.Fatalf("ctr task ps does not list init pid %d:\n%s", pid, r)
		}
		if !strings.Contains(r.trace, "'ps' '--format' 'json'") {
			t.Fatalf("ps did not go through the runtime's ps --format json:\n%s", r)
		}

		c.must("tasks", "pause", id)
		if s := c.taskStatus(id); s != "PAUSED" {
			t.Fatalf("after pause, task status %q, want PAUSED", s)
		}
		if st, err := cgroupFile(pid, "freezer", "freezer.state"); err != nil || st != "FROZEN" {
			t.Fatalf("after pause, freezer.state %q (%v), want FROZEN", st, err)
		}
		c.must("tasks", "resume", id)
		if s := c.taskStatus(id); s != "RUNNING" {
			t.Fatalf("after resume, task status %q, want RUNNING", s)
		}

		r = c.must("tasks", "metrics", id)
		if !strings.Contains(r.stdout, "memory.usage_in_bytes") || !strings.Contains(r.stdout, "pids.current") {
			t.Fatalf("ctr task metrics lacks memory/pids rows:\n%s", r)
		}

		c.must("tasks", "kill", id)
		if !waitFor(10*time.Second, func() bool { return c.taskStatus(id) == "STOPPED" }) {
			t.Fatalf("after kill (SIGTERM), task status %q, want STOPPED", c.taskStatus(id))
		}
		r = c.must("tasks", "delete", id)
		// ctr 1.6 reports a non-zero exit status as a warning on stderr.
		if !strings.Contains(r.stderr, "exit code 7") {
			t.Fatalf("ctr task delete should report exit status 7 (the TERM trap):\n%s", r)
		}
		if !strings.Contains(r.trace, "'delete'") {
			t.Fatalf("task delete did not call the runtime's delete:\n%s", r)
		}
		if _, err := os.Stat(filepath.Join(c.runcRoot, c.ns, id)); !os.IsNotExist(err) {
			t.Fatalf("runtime state %s still there after delete (%v)", filepath.Join(c.runcRoot, c.ns, id), err)
		}
		c.must("containers", "delete", id)
	})

	t.Run("Stdin", func(t *testing.T) {
		c.t = t
		// Without a tty the shim hands fifos to create as fds 0-2; the
		// runtime must pass them to the container unchanged.
		r := runCmd(t, nil, "ping\n", c.runArgv([]string{"--rm"}, "stdin", "sh", "-c", "read x; echo got-$x")...)
		if r.code != 0 || strings.TrimSpace(r.stdout) != "got-ping" {
			t.Fatalf("want the container to read stdin:\n%s", r)
		}
	})

	t.Run("MemoryLimitAndSIGKILL", func(t *testing.T) {
		c.t = t
		const id = "limited"
		t.Cleanup(func() { c.removeContainer(id) })
		c.mustRun([]string{"-d", "--memory-limit", "67108864", "--cpus", "0.5"}, id, "sleep", "1000")
		pid := c.taskPid(id)
		if v, err := cgroupFile(pid, "cpu", "cpu.cfs_quota_us"); err != nil || v != "50000" {
			t.Fatalf("--cpus 0.5: cpu.cfs_quota_us %q (%v), want 50000", v, err)
		}
		if v, err := cgroupFile(pid, "memory", "memory.limit_in_bytes"); err != nil || v != "67108864" {
			t.Fatalf("memory.limit_in_bytes %q (%v), want 67108864", v, err)
		}
		r := c.must("tasks", "metrics", id)
		if !strings.Contains(r.stdout, "67108864") {
			t.Fatalf("ctr task metrics does not show the 64MiB limit:\n%s", r)
		}
		c.must("tasks", "kill", "-s", "SIGKILL", id)
		if !waitFor(10*time.Second, func() bool { return c.taskStatus(id) == "STOPPED" }) {
			t.Fatalf("after SIGKILL, task status %q, want STOPPED", c.taskStatus(id))
		}
		if r := c.must("tasks", "delete", id); !strings.Contains(r.stderr, "exit code 137") {
			t.Fatalf("want exit code 137 after SIGKILL:\n%s", r)
		}
		c.must("containers", "delete", id)
	})

	t.Run("HostPIDNamespace", func(t *testing.T) {
		c.t = t
		const id = "hostpid"
		t.Cleanup(func() { c.removeContainer(id) })
		// Without a private pid namespace, init's death does not kill the
		// other processes: the shim runs "kill --all <id> 9" and the
		// runtime must kill everything in the cgroup.
		c.mustRun([]string{"-d", "--with-ns", "pid:/proc/self/ns/pid"}, id, "sh", "-c", "sleep 1000 & sleep 1000")
		var pids []string
		waitFor(5*time.Second, func() bool {
			pids = nil
			for _, line := range strings.Split(c.ctr("tasks", "ps", id).stdout, "\n")[1:] {
				if f := strings.Fields(line); len(f) > 0 {
					pids = append(pids, f[0])
				}
			}
			return len(pids) >= 2
		})
		// busybox sh execs its last command: init is one sleep, the
		// background sleep is the other.
		if len(pids) < 2 {
			t.Fatalf("want init and the background sleep in ctr task ps, got %q", pids)
		}
		off := traceOffset()
		c.must("tasks", "kill", "-s", "SIGKILL", id)
		if !waitFor(10*time.Second, func() bool { return c.taskStatus(id) == "STOPPED" }) {
			t.Fatalf("after SIGKILL, task status %q, want STOPPED", c.taskStatus(id))
		}
		ok := waitFor(5*time.Second, func() bool {
			for _, p := range pids {
				if _, err := os.Stat("/proc/" + p); err == nil {
					return false
				}
			}
			return true
		})
		if !ok {
			t.Fatalf("processes %v outlived the container's init\nruntime calls:\n%s", pids, traceSince(off))
		}
		if calls := traceSince(off); !strings.Contains(calls, "'kill' '--all'") {
			t.Fatalf("the shim did not run kill --all:\n%s", calls)
		}
		c.must("tasks", "delete", id)
		c.must("containers", "delete", id)
	})

	t.Run("MissingExecutable", func(t *testing.T) {
		c.t = t
		for _, tc := range []struct{ id, arg, want string }{
			{"missing-abs", "/no/such/binary", "no such file or directory"},
			{"missing-path", "nosuchcommand", "executable file not found in $PATH"},
			{"noexec", "/bin/notexec", "permission denied"},
		} {
			t.Cleanup(func() { c.removeContainer(tc.id) })
			r := runCmd(t, nil, "", c.runArgv([]string{"--rm"}, tc.id, tc.arg)...)
			// containerd reports runtime failures as "OCI runtime create
			// failed: <last error msg of log.json>"; moby and CRI clients
			// map the substring to 127/126.
			if r.code == 0 || !strings.Contains(r.stderr, "OCI runtime create failed") ||
				!strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, tc.arg) {
				t.Errorf("%s: want failure with \"OCI runtime create failed\", %q and %q:\n%s", tc.arg, tc.want, tc.arg, r)
			}
		}
	})
}

// TestContainerdSpecFeatures runs ctr run options that become OCI spec
// features, each checked from inside the container.
func TestContainerdSpecFeatures(t *testing.T) {
	testutil.RequireRoot(t)
	requireTool(t, "containerd", "ctr", "containerd-shim-runc-v2")
	c := startContainerd(t)
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "hostfile"), []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name  string
		flags []string
		cmd   string
		want  string
	}{
		{"Seccomp", []string{"--seccomp"}, "grep Seccomp: /proc/self/status", "2"},
		{"Privileged", []string{"--privileged"}, "grep CapEff /proc/self/status; test -e /dev/kmsg && echo devs", "devs"},
		{"ReadOnlyBindMount", []string{"--read-only", "--mount", "type=bind,src=" + host + ",dst=/host,options=rbind:ro"}, "cat /host/hostfile; touch /x 2>/dev/null || echo ro", "from-host\nro"},
		{"CwdEnv", []string{"--cwd", "/tmp", "--env", "FOO=bar"}, "echo $(pwd) $FOO", "/tmp bar"},
		// containerd's default set is 0xa80425fb; drop CHOWN (bit 0), add
		// SYS_TIME (bit 25).
		{"CapAddDrop", []string{"--cap-drop", "CAP_CHOWN", "--cap-add", "CAP_SYS_TIME"}, "grep CapEff /proc/self/status", "00000000aa0425fa"},
		{"NetHost", []string{"--net-host"}, "test -e /sys/class/net/lo && readlink /proc/self/ns/net", "net:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			id := fmt.Sprintf("feat%d", i)
			t.Cleanup(func() { c.removeContainer(id) })
			r := runCmd(t, nil, "", c.runArgv(append([]string{"--rm"}, tc.flags...), id, "sh", "-c", tc.cmd)...)
			if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
				t.Fatalf("want exit 0 and %q in stdout:\n%s", tc.want, r)
			}
		})
	}
}

// TestContainerdEdgeStates: kill --all, exec as another user, killing and
// force-deleting a paused task.
func TestContainerdEdgeStates(t *testing.T) {
	testutil.RequireRoot(t)
	requireTool(t, "containerd", "ctr", "containerd-shim-runc-v2")
	c := startContainerd(t)
	const id = "edge"
	t.Cleanup(func() { c.removeContainer(id) })
	c.mustRun([]string{"-d"}, id, "sh", "-c", "trap 'exit 9' TERM; while :; do sleep 0.1; done")
	pid := c.taskPid(id)

	r := c.ctr("tasks", "exec", "--fifo-dir", filepath.Join(c.dir, "fifo"), "--exec-id", "u1", "--user", "65534", id, "id", "-u")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "65534" {
		t.Fatalf("ctr task exec --user 65534: want 65534:\n%s", r)
	}

	// Killing a task whose init already exited: the shim matches the
	// runtime's "container not running" / "process already finished" and
	// answers NotFound instead of an internal error.
	const done = "exited"
	t.Cleanup(func() { c.removeContainer(done) })
	c.mustRun([]string{"-d"}, done, "true")
	if !waitFor(10*time.Second, func() bool { return c.taskStatus(done) == "STOPPED" }) {
		t.Fatalf("task running true did not stop: %q", c.taskStatus(done))
	}
	r = c.ctr("tasks", "kill", "-s", "SIGTERM", done)
	if r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("kill of an exited task: want a \"not found\" error:\n%s", r)
	}
	c.must("tasks", "delete", done)
	c.must("containers", "delete", done)

	// A pod the way the CRI plugin builds one: app containers join the
	// sandbox's namespaces by /proc/<pid>/ns path.
	const sandbox, app = "sandbox", "app"
	t.Cleanup(func() { c.removeContainer(app); c.removeContainer(sandbox) })
	c.mustRun([]string{"-d"}, sandbox, "sleep", "1000")
	spid := c.taskPid(sandbox)
	var flags []string
	want := ""
	for _, ns := range []string{"net", "ipc", "uts", "pid"} {
		name := ns
		if ns == "net" {
			name = "network"
		}
		flags = append(flags, "--with-ns", fmt.Sprintf("%s:/proc/%d/ns/%s", name, spid, ns))
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", spid, ns))
		if err != nil {
			t.Fatal(err)
		}
		want += link + " "
	}
	r = runCmd(t, nil, "", c.runArgv(append([]string{"--rm"}, flags...), app, "sh", "-c",
		"for n in net ipc uts pid; do printf '%s ' $(readlink /proc/self/ns/$n); done; echo; ps -o comm | grep -c sleep")...)
	if r.code != 0 || !strings.Contains(r.stdout, want+"\n1") {
		t.Fatalf("app joined to the sandbox: want namespaces %q and the sandbox's sleep visible:\n%s", want, r)
	}

	c.must("tasks", "pause", id)
	// SIGKILL on a frozen task: the runtime must get it delivered (runc
	// thaws after signalling); then force delete.
	off := traceOffset()
	c.must("tasks", "kill", "--all", "-s", "SIGKILL", id)
	if !strings.Contains(traceSince(off), "'kill' '--all'") {
		t.Fatalf("ctr task kill --all did not reach the runtime as kill --all:\n%s", traceSince(off))
	}
	ok := waitFor(10*time.Second, func() bool { _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); return err != nil })
	if !ok {
		st, _ := cgroupFile(pid, "freezer", "freezer.state")
		t.Fatalf("init %d of a paused task survived SIGKILL (freezer %s); task status %s\nruntime calls:\n%s", pid, st, c.taskStatus(id), traceSince(off))
	}
	c.must("tasks", "delete", "--force", id)
	c.must("containers", "delete", id)
}
