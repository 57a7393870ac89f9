package checks

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer a child process writes while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func run(t *testing.T, env []string, dir string, argv ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	return runCmd(t, cmd, 4*time.Minute)
}

func mustRun(t *testing.T, env []string, dir string, argv ...string) string {
	t.Helper()
	out, err := run(t, env, dir, argv...)
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return out
}

func image(t *testing.T) string {
	t.Helper()
	need(t)
	img := os.Getenv("CHECK_IMAGE")
	if img == "" {
		t.Skip("CHECK_IMAGE is not set")
	}
	return img
}

// TestContainerd: containerd 1.6's runc shim on the runtime, with the
// shim's SystemdCgroup option (ctr --runc-systemd-cgroup) when the driver
// is systemd: ctr run, an exec joining the task's cgroup, kill, delete.
func TestContainerd(t *testing.T) {
	img := image(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "containerd.sock")
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock)), 0o644)
	daemon := exec.Command("containerd", "--config", cfg)
	var dlog syncBuffer
	daemon.Stdout, daemon.Stderr = &dlog, &dlog
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	ctr := func(args ...string) (string, error) {
		return run(t, nil, dir, append([]string{"ctr", "--address", sock, "--namespace", "checks"}, args...)...)
	}
	id := runtimeID + "-ctr"
	if systemd {
		id += "-sd"
	}
	t.Cleanup(func() {
		ctr("tasks", "kill", "-s", "SIGKILL", id)
		time.Sleep(500 * time.Millisecond)
		ctr("tasks", "delete", "-f", id)
		ctr("containers", "delete", id)
		daemon.Process.Kill()
		daemon.Wait()
		exec.Command("umount", "-R", dir).Run()
		if t.Failed() {
			t.Logf("containerd log:\n%s", lastLines(dlog.String(), 30))
		}
	})
	if !waitFor(60*time.Second, func() bool { _, err := ctr("version"); return err == nil }) {
		t.Fatalf("containerd did not come up:\n%s", dlog.String())
	}
	out, err := ctr("images", "import", "--no-unpack", img)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	ref := strings.Fields(mustRun(t, nil, dir, "ctr", "--address", sock, "--namespace", "checks", "images", "ls", "-q"))
	if len(ref) == 0 {
		t.Fatal("no image after import")
	}
	args := []string{"run", "-d", "--snapshotter", "native", "--runc-binary", runtimeBin}
	cg := "/checks-ctr/" + id
	want := cg
	if systemd {
		cg = "system.slice:ctr:" + id
		want = "/system.slice/ctr-" + id + ".scope"
		args = append(args, "--runc-systemd-cgroup")
	}
	args = append(args, "--cgroup", cg, ref[0], id, "sleep", "1000")
	if out, err := ctr(args...); err != nil {
		t.Fatalf("ctr run: %v\n%s", err, out)
	}
	pid := 0
	waitFor(30*time.Second, func() bool {
		out, _ := ctr("tasks", "ls")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == id && f[2] == "RUNNING" {
				pid, _ = strconv.Atoi(f[1])
			}
		}
		return pid > 0
	})
	if pid == 0 {
		out, _ := ctr("tasks", "ls")
		t.Fatalf("task not running:\n%s", out)
	}
	if got := cgroupOf(t, pid); got != want {
		t.Errorf("task in %s, want %s", got, want)
	}
	out, err = ctr("tasks", "exec", "--exec-id", "e1", id, "sh", "-c", "echo exec-ok; exit 3")
	if !strings.Contains(out, "exec-ok") || err == nil {
		t.Errorf("ctr task exec: %v %q (want exec-ok and exit 3)", err, out)
	}
	if out, err := ctr("tasks", "exec", "--detach", "--exec-id", "e2", id, "sleep", "100"); err != nil {
		t.Errorf("exec --detach: %v %s", err, out)
	}
	waitFor(10*time.Second, func() bool {
		out, _ := ctr("tasks", "ps", id)
		return strings.Count(out, "\n") >= 3
	})
	out, _ = ctr("tasks", "ps", id)
	for _, l := range strings.Split(out, "\n")[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			if p, err := strconv.Atoi(f[0]); err == nil {
				if got := cgroupOf(t, p); got != want {
					t.Errorf("process %d of the task in %s, want %s", p, got, want)
				}
			}
		}
	}
	ctr("tasks", "kill", "-s", "SIGKILL", id)
	if !waitFor(20*time.Second, func() bool {
		out, _ := ctr("tasks", "ls")
		return strings.Contains(out, "STOPPED") || !strings.Contains(out, id)
	}) {
		out, _ := ctr("tasks", "ls")
		t.Errorf("task not stopped after SIGKILL:\n%s", out)
	}
	if out, err := ctr("tasks", "delete", id); err != nil {
		t.Errorf("tasks delete: %v %s", err, out)
	}
	if !waitFor(10*time.Second, func() bool { return gone(cgDir(want)) }) {
		t.Errorf("cgroup %s left after delete", want)
	}
}

// TestPodman: podman 4.3 with conmon, cgroup_manager systemd when the
// driver is systemd: run -d, exec, stop, rm.
func TestPodman(t *testing.T) {
	img := image(t)
	dir := t.TempDir()
	manager := "cgroupfs"
	if systemd {
		manager = "systemd"
	}
	files := map[string]string{
		"containers.conf": fmt.Sprintf("[containers]\ndefault_ulimits = [\"nofile=1024:4096\"]\n[engine]\nlock_type = \"file\"\nevents_logger = \"file\"\ncgroup_manager = %q\n[network]\nnetwork_config_dir = %q\n", manager, filepath.Join(dir, "net")),
		"storage.conf":    fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n", filepath.Join(dir, "runroot"), filepath.Join(dir, "root")),
		"registries.conf": "unqualified-search-registries = []\n",
	}
	for n, c := range files {
		os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644)
	}
	env := []string{
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
	}
	podman := func(args ...string) (string, error) {
		return run(t, env, dir, append([]string{"podman", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"),
			"--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs", "--cgroup-manager", manager, "--events-backend", "file",
			"--runtime", runtimeBin}, args...)...)
	}
	name := runtimeID + "-pm"
	t.Cleanup(func() {
		podman("rm", "--all", "--force", "--time", "0")
		podman("rmi", "--all", "--force")
		exec.Command("umount", "-R", dir).Run()
	})
	if out, err := podman("load", "-i", img); err != nil {
		t.Fatalf("podman load: %v\n%s", err, out)
	}
	if out, err := podman("run", "-d", "--name", name, "--network", "none", "localhost/berth-checks:latest", "sleep", "1000"); err != nil {
		t.Fatalf("podman run -d: %v\n%s", err, out)
	}
	out, err := podman("inspect", "-f", "{{.State.Pid}}", name)
	pid, _ := strconv.Atoi(strings.TrimSpace(out))
	if err != nil || pid <= 0 {
		t.Fatalf("inspect: %v %q", err, out)
	}
	cg := cgroupOf(t, pid)
	if systemd && !(strings.HasPrefix(cg, "/machine.slice/libpod-") && strings.HasSuffix(cg, ".scope")) {
		t.Errorf("container in %s, want a libpod scope in machine.slice", cg)
	}
	if !systemd && strings.Contains(cg, ".scope") {
		t.Errorf("container in %s with cgroupfs", cg)
	}
	out, err = podman("exec", name, "sh", "-c", "echo exec-ok; exit 4")
	if !strings.Contains(out, "exec-ok") || err == nil {
		t.Errorf("podman exec: %v %q (want exec-ok, exit 4)", err, out)
	}
	if out, err := podman("stop", "-t", "2", name); err != nil {
		t.Errorf("podman stop: %v %s", err, out)
	}
	out, _ = podman("inspect", "-f", "{{.State.Status}}", name)
	if strings.TrimSpace(out) != "exited" {
		t.Errorf("status after stop: %q", out)
	}
	if out, err := podman("rm", name); err != nil {
		t.Errorf("podman rm: %v %s", err, out)
	}
	if !waitFor(10*time.Second, func() bool { return gone(cgDir(cg)) }) {
		t.Errorf("cgroup %s left after rm", cg)
	}
}
