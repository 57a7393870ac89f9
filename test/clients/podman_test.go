package clients

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/testutil"
)

// pman is podman with private storage, run dir, tmp dir and configuration:
// nothing of the host's /var/lib/containers or /run/libpod is used.
type pman struct {
	t   *testing.T
	dir string
	env []string
}

func startPodman(t *testing.T) *pman {
	t.Helper()
	dir, err := os.MkdirTemp("", "bpod-")
	if err != nil {
		t.Fatal(err)
	}
	removeIfCreated(t, "/run/containers", "/run/containers/networks")
	// podman puts containers under /libpod_parent and conmon in
	// /libpod_parent/conmon.
	removeIfCreated(t, append(cgroupDirs("libpod_parent"), cgroupDirs("libpod_parent/conmon")...)...)
	p := &pman{t: t, dir: dir}
	files := map[string]string{
		// network_config_dir keeps podman's network files out of /etc;
		// file locks live in --tmpdir instead of /dev/shm/libpod_lock.
		// podman gives root containers RLIMIT_NOFILE 1048576 and NPROC
		// 4194304 (and lowers its own NPROC to 32768); raising a hard limit
		// needs CAP_SYS_RESOURCE, which sandboxed CI machines may lack
		// (runc fails the same way), so ask for modest limits.
		"containers.conf": fmt.Sprintf("[containers]\ndefault_ulimits = [\"nofile=1024:4096\", \"nproc=4096:4096\"]\n[engine]\nlock_type = \"file\"\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n[network]\nnetwork_config_dir = %q\n", filepath.Join(dir, "net")),
		"storage.conf":    fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n", filepath.Join(dir, "runroot"), filepath.Join(dir, "root")),
		"registries.conf": "unqualified-search-registries = []\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.env = []string{
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
	}
	t.Cleanup(func() {
		p.t = t // subtests that last set p.t are over
		p.podman("rm", "--all", "--force", "--time", "0")
		// conmon outlives podman; any left (e.g. after a podman crash) has
		// our run dir in its argv.
		killPids(pidsWithArg(dir))
		p.podman("rmi", "--all", "--force")
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	})
	archive := filepath.Join(dir, "image.tar")
	buildImageArchive(t, archive)
	p.must("load", "-i", archive)
	return p
}

// argv is a podman command line with every location flag pointing at the
// suite's dirs and the runtime under test installed as runc.
func (p *pman) argv(args ...string) []string {
	return append([]string{"podman",
		"--root", filepath.Join(p.dir, "root"),
		"--runroot", filepath.Join(p.dir, "runroot"),
		"--tmpdir", filepath.Join(p.dir, "tmp"),
		"--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
		// No --runtime-flag root=...: podman 4.3 leaves it off the
		// delete --force of its exit-command cleanup, so the runtime's
		// state stays in its default root (podman removes its entries).
		"--runtime", runtimeBin,
	}, args...)
}

// podman runs a podman command in the suite's dir: conmon drops files in
// its working directory (an "oom" marker after an OOM kill), which must not
// land in the source tree.
func (p *pman) podman(args ...string) result {
	return runCmdIO(p.t, p.dir, p.env, "", nil, p.argv(args...)...)
}

func (p *pman) must(args ...string) result {
	p.t.Helper()
	r := p.podman(args...)
	if r.code != 0 {
		p.t.Fatalf("podman failed:\n%s", r)
	}
	return r
}

// inspect returns one Go-template field of podman inspect for a container.
func (p *pman) inspect(id, format string) string {
	return strings.TrimSpace(p.podman("inspect", "--type", "container", "--format", format, id).stdout)
}

// envPrefix renders p.env for an sh -c line run under script(1).
func (p *pman) envPrefix() string {
	return "env " + shellQuote(p.env) + " "
}

func TestPodman(t *testing.T) {
	testutil.RequireRoot(t)
	requireTool(t, "podman", "conmon", "script")
	p := startPodman(t)

	t.Run("RunInteractiveTTY", func(t *testing.T) {
		p.t = t
		line := p.envPrefix() + shellQuote(p.argv("run", "-it", "--rm", "--network", "none", imageTag, "sh", "-c", "tty; echo hi-it; exit 4"))
		r := runCmdIO(t, p.dir, p.env, "", nil, inPty(line)...)
		if r.code != 4 || !strings.Contains(r.stdout, "/dev/pts/") || !strings.Contains(r.stdout, "hi-it") {
			t.Fatalf("podman run -it: want exit 4, a pts name and hi-it:\n%s", r)
		}
		if !strings.Contains(r.trace, "'--console-socket'") || !strings.Contains(r.trace, "'--log-format=json'") {
			t.Fatalf("conmon did not pass --console-socket and JSON logging to the runtime:\n%s", r)
		}
	})

	t.Run("Detached", func(t *testing.T) {
		p.t = t
		const name = "det"
		t.Cleanup(func() { p.podman("rm", "--force", "--time", "0", name) })
		r := p.must("run", "-d", "--name", name, "--network", "none", imageTag,
			"sh", "-c", "echo started; trap 'exit 0' TERM; while :; do sleep 0.1; done")
		if len(strings.TrimSpace(r.stdout)) != 64 {
			t.Fatalf("podman run -d should print the container id:\n%s", r)
		}
		if st := p.inspect(name, "{{.State.Status}}"); st != "running" {
			t.Fatalf("status %q, want running", st)
		}
		pid, _ := strconv.Atoi(p.inspect(name, "{{.State.Pid}}"))
		if pid <= 0 {
			t.Fatalf("no pid for running container")
		}

		if !waitFor(5*time.Second, func() bool { return strings.Contains(p.podman("logs", name).stdout, "started") }) {
			t.Fatalf("podman logs lacks the container's output:\n%s", p.podman("logs", name))
		}

		r = p.podman("exec", name, "sh", "-c", "echo exec-out; exit 5")
		if r.code != 5 || strings.TrimSpace(r.stdout) != "exec-out" {
			t.Fatalf("podman exec: want exit 5 and exec-out:\n%s", r)
		}
		if !strings.Contains(r.trace, "'exec'") || !strings.Contains(r.trace, "'--process'") {
			t.Fatalf("podman exec did not reach the runtime's exec --process:\n%s", r)
		}
		line := p.envPrefix() + shellQuote(p.argv("exec", "-it", name, "sh", "-c", "tty; exit 6"))
		r = runCmdIO(t, p.dir, p.env, "", nil, inPty(line)...)
		if r.code != 6 || !strings.Contains(r.stdout, "/dev/pts/") {
			t.Fatalf("podman exec -it: want exit 6 and a pts name:\n%s", r)
		}

		// conmon takes a missing exec pid file as the runtime's failure and
		// podman maps the JSON log's message to 127/126.
		for _, tc := range []struct {
			arg, want string
			code      int
		}{
			{"/no/such/binary", "no such file or directory", 127},
			{"/bin/notexec", "permission denied", 126},
		} {
			r := p.podman("exec", name, tc.arg)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("podman exec %s: want exit %d and %q:\n%s", tc.arg, tc.code, tc.want, r)
			}
		}
		r = p.podman("exec", "--user", "65534", "--workdir", "/tmp", "--env", "FOO=bar", name, "sh", "-c", "echo $(id -u) $(pwd) $FOO")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "65534 /tmp bar" {
			t.Fatalf("podman exec --user --workdir --env: want \"65534 /tmp bar\":\n%s", r)
		}

		p.must("pause", name)
		if st := p.inspect(name, "{{.State.Status}}"); st != "paused" {
			t.Fatalf("after pause, status %q, want paused", st)
		}
		if st, err := cgroupFile(pid, "freezer", "freezer.state"); err != nil || st != "FROZEN" {
			t.Fatalf("after pause, freezer.state %q (%v), want FROZEN", st, err)
		}
		p.must("unpause", name)
		if st := p.inspect(name, "{{.State.Status}}"); st != "running" {
			t.Fatalf("after unpause, status %q, want running", st)
		}

		r = p.must("stats", "--no-stream", "--format", "{{.PIDs}} {{.MemUsage}}", name)
		f := strings.Fields(r.stdout)
		if len(f) < 2 || f[0] == "0" || f[0] == "--" || !strings.Contains(r.stdout, "B") {
			t.Fatalf("podman stats: want a pid count and memory usage:\n%s", r)
		}

		r = p.must("update", "--memory", "64m", name)
		if !strings.Contains(r.trace, "'update'") {
			t.Fatalf("podman update did not call the runtime's update:\n%s", r)
		}
		if v, err := cgroupFile(pid, "memory", "memory.limit_in_bytes"); err != nil || v != "67108864" {
			t.Fatalf("after update --memory 64m, memory.limit_in_bytes %q (%v), want 67108864\n%s", v, err, r)
		}

		off := traceOffset()
		p.must("stop", "--time", "10", name)
		if st := p.inspect(name, "{{.State.Status}}"); st != "exited" {
			t.Fatalf("after stop, status %q, want exited", st)
		}
		if code := p.inspect(name, "{{.State.ExitCode}}"); code != "0" {
			t.Fatalf("after stop, exit code %s, want 0 (the TERM trap)", code)
		}
		r = p.must("rm", name)
		// podman deletes the runtime's container when it cleans up after
		// the stop, so look for delete in both commands' calls.
		if calls := traceSince(off); !strings.Contains(calls, "'delete' '--force'") {
			t.Fatalf("podman stop + rm did not call the runtime's delete --force:\n%s", calls)
		}
		if r := p.podman("container", "exists", name); r.code == 0 {
			t.Fatalf("container still exists after rm")
		}
	})

	t.Run("StdinKillRestart", func(t *testing.T) {
		p.t = t
		r := runCmdIO(t, p.dir, p.env, "ping\n", nil, p.argv("run", "-i", "--rm", "--network", "none", imageTag, "sh", "-c", "read x; echo got-$x; exit 3")...)
		if r.code != 3 || strings.TrimSpace(r.stdout) != "got-ping" {
			t.Fatalf("podman run -i: want exit 3 and got-ping:\n%s", r)
		}

		const name = "killme"
		t.Cleanup(func() { p.podman("rm", "--force", "--time", "0", name) })
		p.must("run", "-d", "--name", name, "--network", "none", imageTag, "sleep", "1000")
		p.must("kill", "--signal", "KILL", name)
		if !waitFor(10*time.Second, func() bool { return p.inspect(name, "{{.State.Status}}") == "exited" }) {
			t.Fatalf("after kill, status %q, want exited", p.inspect(name, "{{.State.Status}}"))
		}
		if code := p.inspect(name, "{{.State.ExitCode}}"); code != "137" {
			t.Fatalf("after SIGKILL, exit code %s, want 137", code)
		}
		p.must("restart", name)
		if st := p.inspect(name, "{{.State.Status}}"); st != "running" {
			t.Fatalf("after restart, status %q, want running", st)
		}
		// sleep as pid 1 ignores SIGTERM: stop must escalate to SIGKILL.
		p.must("stop", "--time", "1", name)
		if code := p.inspect(name, "{{.State.ExitCode}}"); code != "137" {
			t.Fatalf("after stop of a TERM-ignoring init, exit code %s, want 137", code)
		}
		p.must("rm", name)
	})

	t.Run("SigProxy", func(t *testing.T) {
		p.t = t
		// An attached podman run forwards the signals it gets to the
		// container through the runtime's kill.
		off := traceOffset()
		argv := p.argv("run", "--rm", "--network", "none", imageTag, "sh", "-c", "echo ready; trap 'exit 3' TERM; while :; do sleep 0.1; done")
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = p.dir
		cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}, p.env...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		buf := make([]byte, 6)
		if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "ready\n" {
			t.Fatalf("container did not start: %q %v", buf, err)
		}
		// podman installs its signal proxy only after the attach has begun
		// (a SIGTERM before that makes podman itself exit 0, with runc as
		// well): give it a moment.
		time.Sleep(time.Second)
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		if code != 3 {
			t.Fatalf("podman run got SIGTERM: want the container's TERM trap exit 3, got %d (%v)\nruntime calls:\n%s", code, err, traceSince(off))
		}
		if calls := traceSince(off); !strings.Contains(calls, "'kill'") {
			t.Fatalf("podman did not forward the signal through the runtime's kill:\n%s", calls)
		}
	})

	t.Run("OOMKilled", func(t *testing.T) {
		p.t = t
		const name = "oom"
		t.Cleanup(func() { p.podman("rm", "--force", "--time", "0", name) })
		// The limits must reach the container's memory cgroup; swap is
		// capped too so the kernel has to kill.
		r := p.podman("run", "--name", name, "--network", "none", "--memory", "16m", "--memory-swap", "16m", imageTag,
			"sh", "-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived")
		if r.code != 137 || strings.Contains(r.stdout, "survived") {
			t.Fatalf("want the container OOM-killed (exit 137):\n%s", r)
		}
		// State.OOMKilled stays false here with runc too (conmon 2.1.6 on
		// cgroup v1), so it is not checked.
	})

	t.Run("RunFailures", func(t *testing.T) {
		p.t = t
		// podman maps the runtime's error message (from the JSON log) to
		// 127/126 by substring, so the wording is the contract.
		for _, tc := range []struct {
			arg, want string
			code      int
		}{
			{"/no/such/binary", "no such file or directory", 127},
			{"nosuchcommand", "executable file not found in $PATH", 127},
			{"/bin/notexec", "permission denied", 126},
		} {
			r := p.podman("run", "--rm", "--network", "none", imageTag, tc.arg)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.arg) || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("podman run %s: want exit %d and an error naming it with %q:\n%s", tc.arg, tc.code, tc.want, r)
			}
		}
	})
}

// TestPodmanSpecFeatures runs podman options that turn into OCI spec features
// the runtime has to implement, each checked from inside the container.
func TestPodmanSpecFeatures(t *testing.T) {
	testutil.RequireRoot(t)
	requireTool(t, "podman", "conmon")
	p := startPodman(t)
	for _, tc := range []struct {
		name  string
		flags []string
		cmd   string
		want  string
		gap   string // set when berth is known not to pass yet
	}{
		{"UserNamespace", []string{"--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"}, "cat /proc/self/uid_map; id -u; stat -c %u /bin/busybox", "100000", ""},
		{"Privileged", []string{"--privileged"}, "grep CapEff /proc/self/status; ls /dev | grep -c .", "000001ff", ""},
		// podman marks every tmpfs it adds (--tmpfs, --mount type=tmpfs and
		// --read-only's /run, /tmp, /var/tmp) with runc's "tmpcopyup"
		// extension: the image's files under the mount point are copied
		// into the new tmpfs.
		{"ReadOnlyTmpfs", []string{"--read-only"}, "touch /x 2>&1; touch /tmp/y && ls /run && echo ro-ok", "ro-ok", ""},
		{"TmpfsCopyUp", []string{"--tmpfs", "/etc:size=1m"}, "cat /etc/passwd", "root:x:0:0", ""},
		{"CapAddDrop", []string{"--cap-drop", "all", "--cap-add", "NET_ADMIN"}, "grep CapEff /proc/self/status", "0000000000001000", ""},
		{"Device", []string{"--device", "/dev/null:/dev/mynull"}, "echo x > /dev/mynull && ls -l /dev/mynull", "1,   3", ""},
		{"HostPID", []string{"--pid", "host"}, "test -d /proc/1 && cat /proc/1/comm", "", ""},
		{"UserHostname", []string{"--user", "65534:65534", "--hostname", "berthbox"}, "echo $(id -u):$(id -g) $(hostname)", "65534:65534 berthbox", ""},
		{"CgroupNS", []string{"--cgroupns", "private"}, "readlink /proc/self/ns/cgroup; cat /proc/self/cgroup | grep memory", ":/\n", ""},
		{"SecurityOpts", []string{"--security-opt", "no-new-privileges", "--security-opt", "seccomp=unconfined", "--security-opt", "mask=/etc/group"}, "grep -E 'NoNewPrivs|Seccomp:' /proc/self/status | tr -s '\\t' ' '; wc -c < /etc/group", "NoNewPrivs: 1\nSeccomp: 0\n0", ""},
		{"SysctlUlimitOOM", []string{"--sysctl", "net.ipv4.ip_forward=1", "--ulimit", "nofile=100:200", "--ulimit", "nproc=4096:4096", "--oom-score-adj", "200"}, "cat /proc/sys/net/ipv4/ip_forward; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj", "1\n100\n200\n200", ""},
		{"BindVolume", []string{"-v", "/etc/hostname:/host-hostname:ro", "--shm-size", "2m"}, "cat /host-hostname >/dev/null && echo bound; df -k /dev/shm | tail -1", "bound", ""},
		{"CPUSetSharesSwap", []string{"--cpuset-cpus", "0", "--cpu-shares", "512", "--memory", "64m", "--memory-swap", "128m", "--memory-reservation", "32m"}, "cat /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/memory/memory.soft_limit_in_bytes", "0\n512\n33554432", ""},
		{"MemoryCPU", []string{"--memory", "32m", "--cpus", "0.5", "--pids-limit", "64"}, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max", "33554432\n64", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.t = t
			if tc.gap != "" {
				knownGap(t, tc.gap)
			}
			args := append([]string{"run", "--rm", "--network", "none"}, tc.flags...)
			args = append(args, imageTag, "sh", "-c", tc.cmd)
			r := p.podman(args...)
			if r.code != 0 || !strings.Contains(r.stdout, tc.want) {
				t.Fatalf("want exit 0 and %q in stdout:\n%s", tc.want, r)
			}
		})
	}

	t.Run("JoinNamespaces", func(t *testing.T) {
		p.t = t
		// Sharing another container's namespaces is how pods work: the
		// runtime gets namespace paths (/proc/<pid>/ns/...) to setns into.
		const first = "nsowner"
		t.Cleanup(func() { p.podman("rm", "--force", "--time", "0", first) })
		p.must("run", "-d", "--name", first, "--network", "none", "--hostname", "owner", imageTag, "sleep", "1000")
		r := p.podman("run", "--rm", "--pid", "container:"+first, "--network", "container:"+first,
			"--ipc", "container:"+first, "--uts", "container:"+first, imageTag, "sh", "-c", "hostname; ps -o comm | grep -c sleep")
		if r.code != 0 || !strings.Contains(r.stdout, "owner\n1") {
			t.Fatalf("want the first container's hostname and its sleep visible:\n%s", r)
		}
	})

	t.Run("PreserveFDs", func(t *testing.T) {
		p.t = t
		f, err := os.CreateTemp(t.TempDir(), "fd3")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString("through-fd-3\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(0, 0); err != nil {
			t.Fatal(err)
		}
		r := runCmdIO(t, p.dir, p.env, "", []*os.File{f}, p.argv("run", "--rm", "--network", "none", "--preserve-fds", "1", imageTag, "sh", "-c", "cat <&3")...)
		if r.code != 0 || strings.TrimSpace(r.stdout) != "through-fd-3" {
			t.Fatalf("podman run --preserve-fds 1: want the container to read fd 3:\n%s", r)
		}
	})
}

// TestPodmanEdgeStates drives state transitions that go through the runtime
// in less common orders: removing a paused container, exec into a paused
// one, detached exec, updating the CPU quota.
func TestPodmanEdgeStates(t *testing.T) {
	testutil.RequireRoot(t)
	requireTool(t, "podman", "conmon")
	p := startPodman(t)
	const name = "edge"
	t.Cleanup(func() { p.podman("rm", "--force", "--time", "0", name) })
	p.must("run", "-d", "--name", name, "--network", "none", imageTag, "sleep", "1000")
	pid, _ := strconv.Atoi(p.inspect(name, "{{.State.Pid}}"))

	r := p.must("exec", "-d", name, "sh", "-c", "echo detached > /tmp/marker")
	if !waitFor(5*time.Second, func() bool { return p.podman("exec", name, "cat", "/tmp/marker").stdout == "detached\n" }) {
		t.Fatalf("podman exec -d did not run its command:\n%s", r)
	}

	r = p.must("update", "--cpus", "0.5", name)
	if v, err := cgroupFile(pid, "cpu", "cpu.cfs_quota_us"); err != nil || v != "50000" {
		t.Fatalf("after update --cpus 0.5, cpu.cfs_quota_us %q (%v), want 50000\n%s", v, err, r)
	}

	p.must("pause", name)
	if r := p.podman("exec", name, "true"); r.code == 0 {
		t.Fatalf("exec into a paused container succeeded:\n%s", r)
	}
	// rm -f of a paused container: podman kills through the runtime, which
	// must thaw the cgroup for SIGKILL to be delivered, then deletes.
	r = p.must("rm", "--force", "--time", "0", name)
	if r := p.podman("container", "exists", name); r.code == 0 {
		t.Fatalf("container still exists after rm -f")
	}
	if !waitFor(5*time.Second, func() bool { _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); return err != nil }) {
		t.Fatalf("init %d of the removed paused container is still alive\n%s", pid, r)
	}
}
