package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/testutil"
)

// ctWorld is a network world (see network_test.go) plus a busybox image and
// private homes for the containers and their volumes. The default network
// exists before any container, so what a container leaves behind shows as
// a difference from the snapshot taken then.
type ctWorld struct {
	*nwWorld
	image, home, root, vols string
	base                    nwSnap
}

// ctBusyboxConfig is the test image's config: a shell, a user with a
// supplementary group, a volume with content the image owns.
const ctBusyboxConfig = `{"Env":["PATH=/bin","FROM_IMAGE=1"],"Cmd":["sh"],"Labels":{"org.example.role":"test"}}`

func newCtWorld(t *testing.T) *ctWorld {
	return newCtWorldImage(t, ctBusyboxConfig, nil)
}

// newCtWorldImage makes the world with an image of the given config; edit,
// if set, adds to the busybox rootfs first.
func newCtWorldImage(t *testing.T, config string, edit func(rootfs string)) *ctWorld {
	w := newCtWorldBare(t, config, edit)
	w.mustBerth(t, "network", "create", "berth")
	w.base = w.snapshot(t)
	return w
}

// newCtWorldBare is the world without the default network.
func newCtWorldBare(t *testing.T, config string, edit func(rootfs string)) *ctWorld {
	testutil.RequireRoot(t)
	w := &ctWorld{nwWorld: nwNewWorld(t, true), home: t.TempDir(), root: t.TempDir(), vols: t.TempDir()}
	// Private image store, layer cache, container and volume homes.
	t.Setenv("BERTH_STORE", t.TempDir())
	t.Setenv("BERTH_LAYERS", t.TempDir())
	t.Setenv("BERTH_CONTAINERS", w.home)
	t.Setenv("BERTH_VOLUMES", w.vols)
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "src")
	unpackBusybox(t, rootfs)
	os.MkdirAll(filepath.Join(rootfs, "www"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "www", "index.html"), []byte("published-ok\n"), 0o644)
	if edit != nil {
		edit(rootfs)
	}
	w.image = filepath.Join(dir, "layout")
	unpackMakeImage(t, w.image, "latest", config, rootfs+":gzip")
	w.image += ":latest"
	t.Cleanup(func() {
		// Whatever a failing test left: containers, overlay mounts.
		ents, _ := os.ReadDir(w.home)
		for _, e := range ents {
			w.berth("--root", w.root, "container", "rm", "-f", "-v", e.Name())
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

// ctExit returns the exit status of err (0 for nil, -1 if it is not an exit).
func ctExit(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// inspect returns `container inspect NAME` decoded.
func (w *ctWorld) inspect(t *testing.T, name string) map[string]any {
	t.Helper()
	out, err := w.berth("--root", w.root, "container", "inspect", name)
	if err != nil {
		t.Fatalf("inspect %s: %v\n%s", name, err, out)
	}
	var docs []map[string]any
	if err := json.Unmarshal([]byte(out), &docs); err != nil || len(docs) != 1 {
		t.Fatalf("inspect %s: %v\n%s", name, err, out)
	}
	return docs[0]
}

// field walks a decoded JSON document: field(doc, "State", "Pid").
func field(doc map[string]any, keys ...string) any {
	var v any = doc
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func (w *ctWorld) format(t *testing.T, name, tmpl string) string {
	t.Helper()
	return strings.TrimSpace(w.mustCt(t, "inspect", "-f", tmpl, name))
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// procs are the processes of a container: its init and its runner.
type ctProcs struct {
	pids []int
	home string
}

// procsOf records a container's processes so rmAndCheck can check they
// are gone.
func (w *ctWorld) procsOf(t *testing.T, name string) ctProcs {
	t.Helper()
	var p ctProcs
	if pid := w.format(t, name, "{{.State.Pid}}"); pid != "0" {
		n, _ := strconv.Atoi(pid)
		p.pids = append(p.pids, n)
	}
	b, err := os.ReadFile(filepath.Join(w.home, name, "container.json"))
	if err == nil {
		var rec struct {
			State struct {
				RunnerPid int `json:"runnerPid"`
			} `json:"state"`
		}
		json.Unmarshal(b, &rec)
		if rec.State.RunnerPid > 0 && rec.State.RunnerPid != os.Getpid() {
			p.pids = append(p.pids, rec.State.RunnerPid)
		}
	}
	return p
}

// gone checks that none of the processes is left (a zombie counts as gone).
func (p ctProcs) gone(t *testing.T) {
	t.Helper()
	for _, pid := range p.pids {
		if !waitFor(5*time.Second, func() bool {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				return true
			}
			s := string(b)
			return strings.Contains(s[strings.LastIndex(s, ")")+1:], " Z ")
		}) {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			t.Errorf("process %d is still running: %q", pid, cmd)
		}
	}
}

// rmAndCheck removes a container (rm args + name) and checks its processes
// are gone.
func (w *ctWorld) rmAndCheck(t *testing.T, name string, args ...string) {
	t.Helper()
	p := w.procsOf(t, name)
	w.mustCt(t, append(append([]string{"rm"}, args...), name)...)
	p.gone(t)
}

// assertClean checks that nothing of any container is left: records and
// dirs, runtime state, overlay mounts, the network's endpoints (leases),
// veths, nft rules and netns files (all as in the snapshot taken when the
// world was made), and volumes other than the named ones in keep.
func (w *ctWorld) assertClean(t *testing.T, keep ...string) {
	t.Helper()
	if ents, _ := os.ReadDir(w.home); len(ents) != 0 {
		t.Errorf("container dirs left: %v", ents)
	}
	if ents, _ := os.ReadDir(w.root); len(ents) != 0 {
		t.Errorf("runtime state left: %v", ents)
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, dir := range []string{w.home, w.vols} {
		if strings.Contains(string(b), dir) {
			t.Errorf("mounts left under %s", dir)
		}
	}
	var left []string
	ents, _ := os.ReadDir(w.vols)
	for _, e := range ents {
		found := false
		for _, k := range keep {
			found = found || e.Name() == k
		}
		if !found {
			left = append(left, e.Name())
		}
	}
	if len(left) > 0 {
		t.Errorf("volumes left: %v", left)
	}
	out := w.mustBerth(t, "network", "inspect", "berth")
	var info []struct {
		Endpoints []json.RawMessage `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info) != 1 || len(info[0].Endpoints) != 0 {
		t.Errorf("network endpoints (leases) left: %v\n%s", err, out)
	}
	after := w.snapshot(t)
	if after.Links != w.base.Links {
		t.Errorf("links differ:\nbefore: %s\nafter:  %s", w.base.Links, after.Links)
	}
	if after.Ruleset != w.base.Ruleset {
		t.Errorf("nft ruleset differs:\nbefore:\n%s\nafter:\n%s", w.base.Ruleset, after.Ruleset)
	}
	if after.Netns != w.base.Netns {
		t.Errorf("netns files differ: before %q after %q", w.base.Netns, after.Netns)
	}
	// No runner (monitor) of this world's containers is left.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if cmd, err := os.ReadFile(p); err == nil && strings.Contains(string(cmd), "x-monitor") && strings.Contains(string(cmd), w.home) {
			t.Errorf("monitor left: %s %q", p, cmd)
		}
	}
}

func TestContainerRunRm(t *testing.T) {
	w := newCtWorld(t)
	out := w.mustCt(t, "run", "--rm", "--name", "one", "-e", "GREETING=hi", w.image,
		"sh", "-c", "echo $GREETING; hostname; grep -c nameserver /etc/resolv.conf; ip -4 addr show eth0 | grep -c inet; nc "+nwEchoIP+" 7 </dev/null; touch /root-is-writable && echo wrote-root")
	for _, want := range []string{"hi\n", "one\n", "1\n", "uplink " + nwHostIP, "wrote-root\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	w.assertClean(t)
}

// TestContainerCreatesDefaultNetwork: the first container makes the
// default network "berth" (bridge, NAT); its removal leaves the network and
// nothing else.
func TestContainerCreatesDefaultNetwork(t *testing.T) {
	w := newCtWorldBare(t, ctBusyboxConfig, nil)
	if out, err := w.berth("network", "inspect", "berth"); err == nil {
		t.Fatalf("the default network exists already: %s", out)
	}
	out := w.mustCt(t, "run", "--rm", w.image, "sh", "-c", "nc "+nwEchoIP+" 7 </dev/null")
	if !strings.Contains(out, "uplink "+nwHostIP) {
		t.Errorf("through the new default network: %q", out)
	}
	if out := w.mustBerth(t, "network", "ls"); !strings.Contains(out, "berth") {
		t.Errorf("network ls: %s", out)
	}
	w.base = w.snapshot(t)
	w.assertClean(t)
}

// TestContainerExitCodes: the container's status, and docker's 125 (berth's
// own error), 126 (cannot run) and 127 (not found), in the foreground and
// detached, with and without --init.
func TestContainerExitCodes(t *testing.T) {
	w := newCtWorld(t)
	out, err := w.ct("run", "--rm", "--network", "none", w.image, "sh", "-c", "ls /sys/class/net; exit 3")
	if ctExit(err) != 3 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if strings.Contains(out, "eth0") {
		t.Errorf("--network none still has eth0:\n%s", out)
	}
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"run", "--rm", "--network", "none", w.image, "no-such-command"}, 127},
		{[]string{"run", "--rm", "--network", "none", w.image, "/bin/no-such-file"}, 127},
		{[]string{"run", "--rm", "--network", "none", w.image, "/etc/passwd"}, 126},
		{[]string{"run", "--rm", "--init", "--network", "none", w.image, "no-such-command"}, 127},
		{[]string{"run", "--rm", "-d", "--network", "none", w.image, "no-such-command"}, 127},
		{[]string{"run", "--rm", "-d", "--network", "none", w.image, "/etc/passwd"}, 126},
		{[]string{"run", "--rm", "--network", "none", "--pull", "never", "no-such-image:latest"}, 125},
		{[]string{"run", "--rm", "--network", "none", "--ulimit", "bogus=1", w.image, "true"}, 125},
		{[]string{"run", "--rm", "--network", "none", "--init", w.image, "sh", "-c", "kill -9 $$"}, 137},
	} {
		out, err := w.ct(c.args...)
		if got := ctExit(err); got != c.code {
			t.Errorf("%v: exit %d, want %d\n%s", c.args, got, c.code, out)
		}
	}
	// A container that failed to start stays, created, without --rm.
	if _, err := w.ct("run", "--name", "failed", "--network", "none", w.image, "no-such-command"); ctExit(err) != 127 {
		t.Errorf("exit %v", err)
	}
	if st := w.format(t, "failed", "{{.State.Status}} {{.State.ExitCode}}"); st != "exited 127" && st != "created 127" {
		t.Errorf("failed container: %q", st)
	}
	w.rmAndCheck(t, "failed")
	w.assertClean(t)
}

func TestContainerDetachedLogsPublish(t *testing.T) {
	w := newCtWorld(t)
	id := strings.TrimSpace(w.mustCt(t, "run", "-d", "--name", "web", "-p", "8080:80", w.image,
		"sh", "-c", "echo started-web; echo to-stderr >&2; exec httpd -f -p 80 -h /www"))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q, want the container id", id)
	}
	var body string
	waitFor(10*time.Second, func() bool {
		b, err := exec.Command("nsenter", "--net="+w.ns(w.host), "wget", "-q", "-T", "2", "-O-", "http://"+nwHostIP+":8080/").CombinedOutput()
		body = string(b)
		return err == nil
	})
	if !strings.Contains(body, "published-ok") {
		t.Errorf("published port: %q", body)
	}
	if logs := w.mustCt(t, "logs", "web"); !strings.Contains(logs, "started-web") || !strings.Contains(logs, "to-stderr") {
		t.Errorf("logs: %q", logs)
	}
	if ls := w.mustCt(t, "ps"); !strings.Contains(ls, "web") || !strings.Contains(ls, "Up ") || !strings.Contains(ls, "0.0.0.0:8080->80/tcp") {
		t.Errorf("ps:\n%s", ls)
	}
	if q := strings.TrimSpace(w.mustCt(t, "ps", "-q")); q != id[:12] {
		t.Errorf("ps -q: %q, want %q", q, id[:12])
	}
	if got := w.format(t, id[:8], "{{.Name}}"); got != "web" {
		t.Errorf("lookup by id prefix: %q", got)
	}
	if out, err := w.ct("rm", "web"); err == nil {
		t.Errorf("rm of a running container without -f succeeded: %s", out)
	}
	p := w.procsOf(t, "web")
	w.mustCt(t, "stop", "-t", "2", "web")
	p.gone(t)
	if ps := w.mustCt(t, "ps"); strings.Contains(ps, "web") {
		t.Errorf("ps lists a stopped container:\n%s", ps)
	}
	if ps := w.mustCt(t, "ps", "-a"); !strings.Contains(ps, "web") || !strings.Contains(ps, "Exited (") {
		t.Errorf("ps -a:\n%s", ps)
	}
	w.rmAndCheck(t, "web")
	w.assertClean(t)
}

func TestContainerDetachedRmCleansUpOnExit(t *testing.T) {
	w := newCtWorld(t)
	w.mustCt(t, "run", "-d", "--rm", "--name", "brief", w.image, "sh", "-c", "sleep 0.3; exit 7")
	// wait reports the status of a container --rm removed as it exited.
	if out := w.mustCt(t, "wait", "brief"); out != "7\n" {
		t.Errorf("wait: %q", out)
	}
	waitFor(15*time.Second, func() bool {
		ents, _ := os.ReadDir(w.home)
		return len(ents) == 0
	})
	w.assertClean(t)
}

func TestContainerBadInput(t *testing.T) {
	w := newCtWorld(t)
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"run", "--pull", "never", "no-such-image:latest"}, "not in the store"},
		{[]string{"run", "-v", "relative/path:/x", w.image, "true"}, "-v"},
		{[]string{"run", "-v", "/no/such/dir:/x", w.image, "true"}, "no such file"},
		{[]string{"run", "-p", "notaport", w.image, "true"}, "port"},
		{[]string{"run", "--memory", "lots", w.image, "true"}, "--memory"},
		{[]string{"run", "--name", "bad/name", w.image, "true"}, "name"},
		{[]string{"run", "--rm", "--restart", "always", w.image, "true"}, "--rm and --restart"},
		{[]string{"run", "--restart", "sometimes", w.image, "true"}, "--restart"},
		{[]string{"run", "--health-cmd", "true", w.image, "true"}, "health checks"},
		{[]string{"run", "--userns", "keep-id", w.image, "true"}, "user namespaces"},
		{[]string{"run", "-a", "stdout", w.image, "true"}, "no attach"},
		{[]string{"run", "--log-driver", "journald", w.image, "true"}, "k8s-file"},
		{[]string{"run", "--security-opt", "apparmor=docker-default", w.image, "true"}, "AppArmor"},
		{[]string{"run", "--device", "/dev/null:/dev/n:rx", w.image, "true"}, "want a combination of r, w and m"},
		{[]string{"run", "--platform", "linux/arm64", w.image, "true"}, "platform"},
		{[]string{"run", "-u", "nobody", w.image, "true"}, "unable to find user nobody"},
		{[]string{"run", "--network", "none", "-p", "80:80", w.image, "true"}, "bridge network"},
		{[]string{"logs", "no-such-container"}, "no such container"},
		{[]string{"cp", "a:/x", "b:/y"}, "between containers"},
	} {
		out, err := w.ct(c.args...)
		if ctExit(err) != 125 || !strings.Contains(out, c.msg) {
			t.Errorf("%v: exit %d, want 125 and %q:\n%s", c.args, ctExit(err), c.msg, out)
		}
	}
	w.assertClean(t)
}

// TestContainerInteractiveTTY drives -it through a pty (script), as a user
// at a terminal would: the shell reads our input, its exit status comes back,
// and the session is in the container's log.
func TestContainerInteractiveTTY(t *testing.T) {
	w := newCtWorld(t)
	if _, err := exec.LookPath("script"); err != nil {
		testutil.Require(t, false, "script (util-linux) is not installed")
	}
	for _, init := range []string{"", "--init "} {
		cmdline := berthBin + " --root " + w.root + " container run --name tty -it " + init + "--network none " + w.image + " sh"
		cmd := exec.Command("script", "-qec", cmdline, "/dev/null")
		cmd.Env = os.Environ()
		stdin, _ := cmd.StdinPipe()
		go func() {
			time.Sleep(700 * time.Millisecond)
			stdin.Write([]byte("tty; echo typed-$((6*7)); echo $TERM; exit 5\n"))
		}()
		out, err := cmd.CombinedOutput()
		if ctExit(err) != 5 {
			t.Fatalf("%sexit: %v\n%s", init, err, out)
		}
		if !strings.Contains(string(out), "/dev/pts/0") || !strings.Contains(string(out), "typed-42") || !strings.Contains(string(out), "xterm") {
			t.Errorf("%sterminal session output:\n%s", init, out)
		}
		if logs := w.mustCt(t, "logs", "tty"); !strings.Contains(logs, "typed-42") {
			t.Errorf("%slog of the terminal session: %q", init, logs)
		}
		w.rmAndCheck(t, "tty")
	}
	w.assertClean(t)
}
