package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/testutil"
)

// ctWorld is a network world (see network_test.go) plus a busybox image and
// private homes for the one-shot containers.
type ctWorld struct {
	*nwWorld
	image, home, root string
}

func newCtWorld(t *testing.T) *ctWorld {
	testutil.RequireRoot(t)
	w := &ctWorld{nwWorld: nwNewWorld(t, true), home: t.TempDir(), root: t.TempDir()}
	// Private image store and layer cache.
	t.Setenv("BERTH_STORE", t.TempDir())
	t.Setenv("BERTH_LAYERS", t.TempDir())
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "src")
	unpackBusybox(t, rootfs)
	os.MkdirAll(filepath.Join(rootfs, "www"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "www", "index.html"), []byte("published-ok\n"), 0o644)
	w.image = filepath.Join(dir, "layout")
	unpackMakeImage(t, w.image, "latest", `{"Env":["PATH=/bin"],"Cmd":["sh"]}`, rootfs+":gzip")
	w.image += ":latest"
	t.Cleanup(func() {
		// Whatever a failing test left: containers, overlay mounts.
		ents, _ := os.ReadDir(w.home)
		for _, e := range ents {
			w.berth("--root", w.root, "container", "rm", "--home", w.home, "-f", e.Name())
		}
		b, _ := os.ReadFile("/proc/self/mountinfo")
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], w.home) {
				unix.Unmount(f[4], unix.MNT_DETACH)
			}
		}
	})
	return w
}

func (w *ctWorld) ct(args ...string) (string, error) {
	return w.berth(append([]string{"--root", w.root, "container"}, args...)...)
}

func (w *ctWorld) mustCt(t *testing.T, args ...string) string {
	t.Helper()
	out, err := w.ct(args...)
	if err != nil {
		t.Fatalf("berth container %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// assertClean checks that no container record, runtime state, overlay
// mount or network endpoint is left.
func (w *ctWorld) assertClean(t *testing.T) {
	t.Helper()
	if ents, _ := os.ReadDir(w.home); len(ents) != 0 {
		t.Errorf("container dirs left: %v", ents)
	}
	if ents, _ := os.ReadDir(w.root); len(ents) != 0 {
		t.Errorf("runtime state left: %v", ents)
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(b), w.home) {
		t.Errorf("mounts left under %s", w.home)
	}
	out, err := w.berth("network", "inspect", "berth")
	if err != nil && strings.Contains(out, "does not exist") {
		return
	}
	if strings.Contains(out, `"ip"`) || strings.Contains(out, "10.") && strings.Contains(out, `"endpoints": [`) && !strings.Contains(out, `"endpoints": []`) {
		t.Errorf("network endpoints left:\n%s", out)
	}
}

func TestContainerRunRm(t *testing.T) {
	w := newCtWorld(t)
	out := w.mustCt(t, "run", "--home", w.home, "--rm", "--name", "one", "-e", "GREETING=hi", w.image,
		"sh", "-c", "echo $GREETING; hostname; grep -c nameserver /etc/resolv.conf; ip -4 addr show eth0 | grep -c inet; nc "+nwEchoIP+" 7 </dev/null")
	for _, want := range []string{"hi\n", "one\n", "1\n", "uplink " + nwHostIP} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	w.assertClean(t)
}

func TestContainerExitCodeAndNoNetwork(t *testing.T) {
	w := newCtWorld(t)
	out, err := w.ct("run", "--home", w.home, "--rm", "--network", "none", w.image, "sh", "-c", "ls /sys/class/net; exit 3")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if strings.Contains(out, "eth0") {
		t.Errorf("--network none still has eth0:\n%s", out)
	}
	w.assertClean(t)
}

func TestContainerDetachedLogsPublish(t *testing.T) {
	w := newCtWorld(t)
	name := w.mustCt(t, "run", "--home", w.home, "-d", "--name", "web", "-p", "8080:80", w.image,
		"sh", "-c", "echo started-web; exec httpd -f -p 80 -h /www")
	if strings.TrimSpace(name) != "web" {
		t.Fatalf("run -d printed %q", name)
	}
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := exec.Command("nsenter", "--net="+w.ns(w.host), "wget", "-q", "-T", "2", "-O-", "http://"+nwHostIP+":8080/").CombinedOutput()
		if body = string(b); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(body, "published-ok") {
		t.Errorf("published port: %q", body)
	}
	if logs := w.mustCt(t, "logs", "--home", w.home, "web"); !strings.Contains(logs, "started-web") {
		t.Errorf("logs: %q", logs)
	}
	if ls := w.mustCt(t, "ls", "--home", w.home); !strings.Contains(ls, "web") || !strings.Contains(ls, "running") {
		t.Errorf("ls:\n%s", ls)
	}
	if out, err := w.ct("rm", "--home", w.home, "web"); err == nil {
		t.Errorf("rm of a running container without -f succeeded: %s", out)
	}
	w.mustCt(t, "stop", "--home", w.home, "-t", "2", "web")
	w.mustCt(t, "rm", "--home", w.home, "web")
	w.assertClean(t)
}

func TestContainerDetachedRmCleansUpOnExit(t *testing.T) {
	w := newCtWorld(t)
	w.mustCt(t, "run", "--home", w.home, "-d", "--rm", "--name", "brief", w.image, "sh", "-c", "sleep 0.3")
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if ents, _ := os.ReadDir(w.home); len(ents) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.assertClean(t)
}

func TestContainerBadInput(t *testing.T) {
	w := newCtWorld(t)
	for _, args := range [][]string{
		{"run", "--home", w.home, "--pull", "never", "no-such-image:latest"},
		{"run", "--home", w.home, "-v", "relative:/x", w.image, "true"},
		{"run", "--home", w.home, "-p", "notaport", w.image, "true"},
		{"run", "--home", w.home, "--memory", "lots", w.image, "true"},
		{"run", "--home", w.home, "--name", "bad/name", w.image, "true"},
	} {
		if out, err := w.ct(args...); err == nil {
			t.Errorf("%v succeeded: %s", args, out)
		}
	}
	w.assertClean(t)
}

// TestContainerInteractiveTTY drives -it through a pty (script), as a user
// at a terminal would: the shell reads our input, its exit status comes back.
func TestContainerInteractiveTTY(t *testing.T) {
	w := newCtWorld(t)
	if _, err := exec.LookPath("script"); err != nil {
		testutil.Require(t, false, "script (util-linux) is not installed")
	}
	cmdline := berthBin + " --root " + w.root + " container run --home " + w.home + " --rm -it --network none " + w.image + " sh"
	cmd := exec.Command("script", "-qec", cmdline, "/dev/null")
	cmd.Env = os.Environ()
	stdin, _ := cmd.StdinPipe()
	go func() {
		time.Sleep(500 * time.Millisecond)
		stdin.Write([]byte("tty; echo typed-$((6*7)); exit 5\n"))
	}()
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "/dev/pts/0") || !strings.Contains(string(out), "typed-42") {
		t.Errorf("terminal session output:\n%s", out)
	}
	w.assertClean(t)
}
