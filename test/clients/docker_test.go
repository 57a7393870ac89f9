package clients

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/internal/linux/cgroups"
	"berth/internal/testutil"
)

// dockerCLI is Debian's docker.io client; another docker on PATH (a newer
// static CLI in /usr/local/bin, say) is not the one this suite pins.
const dockerCLI = "/usr/bin/docker"

// dockerTag is the name the test image is loaded under.
const dockerTag = "localhost/berth-clients:latest"

// dockerd is a private Docker Engine: its own data-root, exec-root, pidfile,
// socket and cgroup parent, no iptables, no bridge and no ip_forward change,
// so the host's firewall, links and sysctls stay as they are. Two runtimes
// are registered: "berth" (the wrapper named runc in front of the runtime
// under test) and Docker's own "runc" (Debian's), the reference every
// subtest is run against too.
type dockerd struct {
	t      *testing.T
	dir    string
	sock   string
	parent string // cgroup parent of every container
}

// dockerRuntimes are the runtimes each Docker subtest runs with.
var dockerRuntimes = []string{"berth", "runc"}

func startDocker(t *testing.T) *dockerd {
	t.Helper()
	// exec-root holds containerd's socket: keep the paths short (sun_path).
	dir, err := os.MkdirTemp("", "bdock-")
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerd{t: t, dir: dir, sock: filepath.Join(dir, "d.sock"), parent: fmt.Sprintf("/berthtest-docker-%d", os.Getpid())}
	// dockerd writes a trust key and a plugin directory at fixed places,
	// and its containerd's shims put their sockets in /run/containerd/s.
	removeIfCreated(t, "/etc/docker", "/etc/docker/key.json", "/run/docker", "/run/docker/plugins",
		"/run/containerd", "/run/containerd/s", "/opt/containerd", "/opt/containerd/bin", "/opt/containerd/lib")
	removeIfCreated(t, cgroupDirs(strings.TrimPrefix(d.parent, "/"))...)
	// dockerd raises the kernel's key quotas for root at start: put them
	// back when it is gone.
	for _, k := range []string{"/proc/sys/kernel/keys/root_maxkeys", "/proc/sys/kernel/keys/root_maxbytes"} {
		if b, err := os.ReadFile(k); err == nil {
			t.Cleanup(func() { _ = os.WriteFile(k, b, 0o644) })
		}
	}
	cfg := map[string]any{
		"data-root":      filepath.Join(dir, "root"),
		"exec-root":      filepath.Join(dir, "x"),
		"pidfile":        filepath.Join(dir, "docker.pid"),
		"hosts":          []string{"unix://" + d.sock},
		"iptables":       false,
		"ip6tables":      false,
		"ip-forward":     false,
		"ip-masq":        false,
		"bridge":         "none",
		"storage-driver": "vfs",
		"cgroup-parent":  d.parent,
		"runtimes":       map[string]any{"berth": map[string]string{"path": runtimeBin}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	})
	cmd := startLogged(t, filepath.Join(dir, "dockerd.log"), "dockerd", "--config-file", filepath.Join(dir, "daemon.json"))
	t.Cleanup(func() {
		d.t = t
		d.cleanup(cmd)
		if t.Failed() {
			t.Logf("dockerd log (tail):\n%s", logTail(filepath.Join(dir, "dockerd.log"), 40))
		}
	})
	if !waitFor(30*time.Second, func() bool { return d.docker("version").code == 0 }) {
		t.Fatalf("dockerd did not come up: %s", d.docker("version"))
	}
	d.must("load", "-i", berthArchive(t, t.TempDir(), dockerTag))
	return d
}

// cleanup removes every container, stops the daemon (it stops its
// containerd), kills shims still running for it and deletes what the
// runtimes still know.
func (d *dockerd) cleanup(daemon *exec.Cmd) {
	if ids := strings.Fields(d.docker("ps", "-aq").stdout); len(ids) > 0 {
		d.docker(append([]string{"rm", "-f"}, ids...)...)
	}
	stopDaemon(daemon, 30*time.Second)
	// containerd and the shims have the exec-root in their argv.
	killPids(pidsWithArg(d.dir))
	roots, _ := filepath.Glob(filepath.Join(d.dir, "x", "runtime-*", "moby"))
	for _, root := range roots {
		deleteRuntimeContainers(realBin, root)
	}
}

// argv is a docker command line against this daemon.
func (d *dockerd) argv(args ...string) []string {
	return append([]string{dockerCLI, "-H", "unix://" + d.sock}, args...)
}

func (d *dockerd) docker(args ...string) result {
	return runCmd(d.t, nil, "", d.argv(args...)...)
}

func (d *dockerd) must(args ...string) result {
	d.t.Helper()
	r := d.docker(args...)
	if r.code != 0 {
		d.t.Fatalf("docker failed:\n%s", r)
	}
	return r
}

// inspect is one Go-template field of docker inspect.
func (d *dockerd) inspect(name, format string) string {
	return strings.TrimSpace(d.docker("inspect", "--format", format, name).stdout)
}

// run is `docker run --rm --runtime rt --network none FLAGS IMAGE CMD...`:
// with "bridge": "none" a container has a loopback only, or the host's
// network with --network host.
func (d *dockerd) run(rt string, flags []string, cmd ...string) result {
	args := append([]string{"run", "--rm", "--runtime", rt, "--network", "none"}, flags...)
	return d.docker(append(append(args, dockerTag), cmd...)...)
}

// usedRuntime fails t unless r reached the runtime under test (only the
// berth runtime goes through the traced wrapper).
func usedRuntime(t *testing.T, rt string, r result, call string) {
	t.Helper()
	if rt == "berth" && !strings.Contains(r.trace, call) {
		t.Fatalf("%s did not reach the runtime under test:\n%s", call, r)
	}
}

// cgroupFiles names the files the limits test reads inside a container,
// for the host's cgroup version.
func cgroupFiles() (mem, swap, shares, quota, pids string) {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.swap.max", "/sys/fs/cgroup/cpu.weight", "/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/pids.max"
	}
	return "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
		"/sys/fs/cgroup/cpu/cpu.shares", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/pids/pids.max"
}

func TestDocker(t *testing.T) {
	testutil.RequireRoot(t)
	requireTool(t, "dockerd", "containerd", "containerd-shim-runc-v2", "docker-init", "runc", "script", dockerCLI)
	d := startDocker(t)
	for _, rt := range dockerRuntimes {
		t.Run(rt, func(t *testing.T) {
			d.t = t
			dockerRun(t, d, rt)
			dockerLifecycle(t, d, rt)
			dockerOOM(t, d, rt)
		})
	}
}

// dockerRun covers docker run's options that become runtime config, and
// the exit codes docker derives from the runtime's errors.
func dockerRun(t *testing.T, d *dockerd, rt string) {
	t.Run("ExitCodes", func(t *testing.T) {
		d.t = t
		r := d.run(rt, nil, "sh", "-c", "echo out; echo err >&2; exit 3")
		if r.code != 3 || strings.TrimSpace(r.stdout) != "out" || !strings.Contains(r.stderr, "err") {
			t.Fatalf("want exit 3, stdout out, stderr err:\n%s", r)
		}
		usedRuntime(t, rt, r, "'create'")
		// docker maps the runtime's create error (the last log.json
		// message) to 127 and 126 by its text, anything else to 125.
		for _, tc := range []struct {
			flags []string
			arg   string
			code  int
			want  string
		}{
			{nil, "/no/such/binary", 127, "no such file or directory"},
			{nil, "nosuchcommand", 127, "executable file not found in $PATH"},
			{nil, "/bin/notexec", 126, "permission denied"},
			// An rlimit above fs.nr_open: setrlimit fails with EPERM even
			// with CAP_SYS_RESOURCE.
			{[]string{"--ulimit", "nofile=2000000:2000000"}, "true", 125, "operation not permitted"},
		} {
			r := d.run(rt, tc.flags, tc.arg)
			if r.code != tc.code || !strings.Contains(r.stderr, "OCI runtime create failed") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("docker run %v %s: want exit %d, \"OCI runtime create failed\" and %q:\n%s", tc.flags, tc.arg, tc.code, tc.want, r)
			}
		}
	})

	t.Run("NotExecutableOnPath", func(t *testing.T) {
		d.t = t
		r := d.run(rt, nil, "notexec")
		if r.code != 127 || !strings.Contains(r.stderr, "executable file not found in $PATH") {
			t.Fatalf("docker run of /bin/notexec (mode 0644) by name: want exit 127 and \"executable file not found in $PATH\":\n%s", r)
		}
	})

	t.Run("UserWorkdirEnv", func(t *testing.T) {
		d.t = t
		r := d.run(rt, []string{"-u", "65534:65534", "-w", "/tmp", "-e", "FOO=bar"}, "sh", "-c", "echo $(id -u):$(id -g) $(pwd) $FOO")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "65534:65534 /tmp bar" {
			t.Fatalf("want \"65534:65534 /tmp bar\":\n%s", r)
		}
	})

	t.Run("ReadOnlyTmpfs", func(t *testing.T) {
		d.t = t
		r := d.run(rt, []string{"--read-only", "--tmpfs", "/run:size=1m"}, "sh", "-c",
			"touch /x 2>/dev/null || echo ro; touch /run/y && grep ' /run ' /proc/mounts")
		if r.code != 0 || !strings.Contains(r.stdout, "ro\n") || !strings.Contains(r.stdout, "tmpfs /run tmpfs rw") || !strings.Contains(r.stdout, "size=1024k") {
			t.Fatalf("want a read-only root and a 1 MiB tmpfs on /run:\n%s", r)
		}
	})

	t.Run("Init", func(t *testing.T) {
		d.t = t
		r := d.run(rt, []string{"--init"}, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "/sbin/docker-init -- sh") || strings.TrimSpace(strings.Split(r.stdout, "\n")[1]) == "1" {
			t.Fatalf("want docker-init as pid 1 and the command below it:\n%s", r)
		}
	})

	t.Run("Limits", func(t *testing.T) {
		d.t = t
		mem, swap, shares, quota, pids := cgroupFiles()
		r := d.run(rt, []string{"--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5", "--cpu-shares", "512", "--pids-limit", "50"},
			"cat", mem, swap, shares, quota, pids)
		want := "67108864\n134217728\n512\n50000\n50\n"
		if mem == "/sys/fs/cgroup/memory.max" {
			want = fmt.Sprintf("67108864\n67108864\n%d\n50000 100000\n50\n", cgroups.SharesToWeight(512))
		}
		if r.code != 0 || r.stdout != want {
			t.Fatalf("cgroup limits seen in the container: want %q:\n%s", want, r)
		}
	})

	t.Run("Device", func(t *testing.T) {
		d.t = t
		r := d.run(rt, []string{"--device", "/dev/zero:/dev/myzero"}, "sh", "-c", "head -c 3 /dev/myzero | od -An -c")
		if r.code != 0 || strings.Join(strings.Fields(r.stdout), " ") != `\0 \0 \0` {
			t.Fatalf("want three NUL bytes from /dev/myzero:\n%s", r)
		}
	})

	t.Run("CapAddDrop", func(t *testing.T) {
		d.t = t
		// Docker's default set is 0xa80425fb; drop CHOWN (bit 0), add
		// SYS_TIME (bit 25).
		r := d.run(rt, []string{"--cap-add", "SYS_TIME", "--cap-drop", "CHOWN"}, "grep", "CapEff", "/proc/self/status")
		if r.code != 0 || !strings.Contains(r.stdout, "00000000aa0425fa") {
			t.Fatalf("want CapEff 00000000aa0425fa:\n%s", r)
		}
	})

	t.Run("InteractiveTTY", func(t *testing.T) {
		d.t = t
		line := shellQuote(d.argv("run", "--rm", "-it", "--runtime", rt, "--network", "none", dockerTag, "sh", "-c", "tty; echo hi-it; exit 4"))
		r := runCmd(t, nil, "", inPty(line)...)
		if r.code != 4 || !strings.Contains(r.stdout, "/dev/pts/") || !strings.Contains(r.stdout, "hi-it") {
			t.Fatalf("docker run -it: want exit 4, a pts name and hi-it:\n%s", r)
		}
		usedRuntime(t, rt, r, "'--console-socket'")
	})
}

// dockerLifecycle drives one detached container through everything docker
// does with a running container.
func dockerLifecycle(t *testing.T, d *dockerd, rt string) {
	t.Run("Lifecycle", func(t *testing.T) {
		d.t = t
		name := rt + "-life"
		t.Cleanup(func() { d.docker("rm", "-f", name) })
		r := d.must("run", "-d", "--name", name, "--runtime", rt, "--network", "none", dockerTag,
			"sh", "-c", "echo started; trap 'echo term; exit 0' TERM; while :; do sleep 0.1; done")
		if len(strings.TrimSpace(r.stdout)) != 64 {
			t.Fatalf("docker run -d should print the container id:\n%s", r)
		}
		if st := d.inspect(name, "{{.State.Status}}"); st != "running" {
			t.Fatalf("status %q, want running", st)
		}
		pid, _ := strconv.Atoi(d.inspect(name, "{{.State.Pid}}"))
		if pid <= 0 {
			t.Fatal("no pid for the running container")
		}
		if !waitFor(5*time.Second, func() bool { return strings.Contains(d.docker("logs", name).stdout, "started") }) {
			t.Fatalf("docker logs lacks the container's output:\n%s", d.docker("logs", name))
		}

		r = d.docker("exec", "-u", "65534", "-w", "/tmp", "-e", "FOO=bar", name, "sh", "-c", "echo $(id -u) $(pwd) $FOO; exit 5")
		if r.code != 5 || strings.TrimSpace(r.stdout) != "65534 /tmp bar" {
			t.Fatalf("docker exec -u -w -e: want exit 5 and \"65534 /tmp bar\":\n%s", r)
		}
		usedRuntime(t, rt, r, "'exec'")
		r = runCmd(t, nil, "", inPty(shellQuote(d.argv("exec", "-it", name, "sh", "-c", "tty; exit 6")))...)
		if r.code != 6 || !strings.Contains(r.stdout, "/dev/pts/") {
			t.Fatalf("docker exec -it: want exit 6 and a pts name:\n%s", r)
		}
		// docker exec reports every failure to start as 126, with the
		// runtime's message on stdout.
		for _, tc := range []struct{ arg, want string }{
			{"/no/such/binary", "no such file or directory"},
			{"/bin/notexec", "permission denied"},
		} {
			r := d.docker("exec", name, tc.arg)
			if out := r.stdout + r.stderr; r.code != 126 || !strings.Contains(out, "OCI runtime exec failed") || !strings.Contains(out, tc.want) {
				t.Errorf("docker exec %s: want exit 126, \"OCI runtime exec failed\" and %q:\n%s", tc.arg, tc.want, r)
			}
		}

		r = d.must("top", name)
		if !strings.Contains(r.stdout, strconv.Itoa(pid)) || !strings.Contains(r.stdout, "trap") {
			t.Fatalf("docker top does not list init %d:\n%s", pid, r)
		}
		usedRuntime(t, rt, r, "'ps' '--format' 'json'")
		r = d.must("stats", "--no-stream", "--format", "{{.PIDs}} {{.MemUsage}}", name)
		if f := strings.Fields(r.stdout); len(f) < 2 || f[0] == "0" || !strings.Contains(r.stdout, "B /") {
			t.Fatalf("docker stats: want a pid count and memory usage:\n%s", r)
		}

		r = d.must("pause", name)
		usedRuntime(t, rt, r, "'pause'")
		if st := d.inspect(name, "{{.State.Status}}"); st != "paused" {
			t.Fatalf("after pause, status %q, want paused", st)
		}
		if st, err := cgroupFile(pid, "freezer", "freezer.state"); err == nil && st != "FROZEN" {
			t.Fatalf("after pause, freezer.state %q, want FROZEN", st)
		}
		d.must("unpause", name)
		if st := d.inspect(name, "{{.State.Status}}"); st != "running" {
			t.Fatalf("after unpause, status %q, want running", st)
		}

		// docker update sends every knob, the unset ones as 0.
		r = d.must("update", "--memory", "100m", "--memory-swap", "200m", "--cpu-shares", "256", "--pids-limit", "20", name)
		usedRuntime(t, rt, r, "'update'")
		mem, _, shares, _, pids := cgroupFiles()
		r = d.docker("exec", name, "cat", mem, shares, pids)
		want := "104857600\n256\n20\n"
		if mem == "/sys/fs/cgroup/memory.max" {
			want = fmt.Sprintf("104857600\n%d\n20\n", cgroups.SharesToWeight(256))
		}
		if r.code != 0 || r.stdout != want {
			t.Fatalf("after docker update, the container sees %q, want %q:\n%s", r.stdout, want, r)
		}

		d.must("restart", "-t", "5", name)
		if st := d.inspect(name, "{{.State.Status}}"); st != "running" {
			t.Fatalf("after restart, status %q, want running", st)
		}
		if !waitFor(5*time.Second, func() bool { return d.docker("logs", name).stdout == "started\nterm\nstarted\n" }) {
			t.Fatalf("after restart, logs should show the TERM trap and a second start:\n%s", d.docker("logs", name))
		}

		d.must("stop", "-t", "5", name)
		if code := d.inspect(name, "{{.State.ExitCode}}"); code != "0" {
			t.Fatalf("after stop, exit code %s, want 0 (the TERM trap)", code)
		}
		d.must("start", name)
		d.must("kill", name)
		r = d.must("wait", name)
		if strings.TrimSpace(r.stdout) != "137" {
			t.Fatalf("docker wait after docker kill: want 137:\n%s", r)
		}
		id := d.inspect(name, "{{.Id}}")
		off := traceOffset()
		d.must("rm", name)
		if left, _ := filepath.Glob(filepath.Join(d.dir, "x", "runtime-*", "moby", id)); len(left) > 0 {
			t.Fatalf("runtime state %v left after docker rm\nruntime calls:\n%s", left, traceSince(off))
		}
		if r := d.docker("inspect", name); r.code == 0 {
			t.Fatalf("container still exists after rm")
		}
	})
}

// dockerOOM: the shim watches the container's memory cgroup, so an
// OOM-killed init must be in the cgroup the runtime was given.
func dockerOOM(t *testing.T, d *dockerd, rt string) {
	t.Run("OOMKilled", func(t *testing.T) {
		d.t = t
		name := rt + "-oom"
		t.Cleanup(func() { d.docker("rm", "-f", name) })
		r := d.docker("run", "--name", name, "--runtime", rt, "--network", "none", "--memory", "16m", "--memory-swap", "16m",
			dockerTag, "sh", "-c", "x=a; while :; do x=$x$x; done")
		if r.code != 137 {
			t.Fatalf("want exit 137 from the OOM kill:\n%s", r)
		}
		if got := d.inspect(name, "{{.State.OOMKilled}} {{.State.ExitCode}}"); got != "true 137" {
			t.Fatalf("docker inspect: OOMKilled and exit code %q, want \"true 137\"", got)
		}
	})
}
