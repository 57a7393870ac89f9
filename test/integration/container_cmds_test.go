package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/testutil"
)

// ctConfigImage exercises every part of the image config the container
// path honours.
const ctConfigImage = `{"Env":["PATH=/bin","FROM_IMAGE=1"],"Entrypoint":["/bin/entry"],"Cmd":["default-arg"],
"WorkingDir":"/srv/app","User":"web","StopSignal":"SIGUSR1","ExposedPorts":{"80/tcp":{},"53/udp":{}},
"Volumes":{"/data":{}},"Labels":{"org.example.role":"test"}}`

// ctEntry prints what it was started with; "serve" waits for the stop
// signal (SIGUSR1 in the image) and exits 0 on it.
const ctEntry = `#!/bin/sh
echo "args:$*"
echo "id:$(id)"
echo "pwd:$(pwd)"
echo "env:$FROM_IMAGE:$HOME:$HOSTNAME"
if [ "$1" = serve ]; then
	trap 'echo got-usr1; exit 0' USR1
	while :; do sleep 0.1; done
fi
`

func ctConfigRootfs(rootfs string) {
	os.WriteFile(filepath.Join(rootfs, "bin/entry"), []byte(ctEntry), 0o755)
	os.MkdirAll(filepath.Join(rootfs, "data"), 0o750)
	os.WriteFile(filepath.Join(rootfs, "data/seed"), []byte("from-the-image\n"), 0o640)
	os.Chown(filepath.Join(rootfs, "data"), 1000, 1000)
	os.Chown(filepath.Join(rootfs, "data/seed"), 1000, 1000)
}

func TestContainerImageConfig(t *testing.T) {
	w := newCtWorldImage(t, ctConfigImage, ctConfigRootfs)
	run := func(args ...string) string {
		t.Helper()
		return w.mustCt(t, append([]string{"run", "--rm", "--network", "none", "--name", "cfg"}, args...)...)
	}
	out := run(w.image)
	for _, want := range []string{"args:default-arg\n", "id:uid=1000(web) gid=1000(web) groups=10(wheel)", "pwd:/srv/app\n", "env:1:/home/web:cfg\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("image defaults: no %q in\n%s", want, out)
		}
	}
	// docker's override rules: a command replaces Cmd, --entrypoint
	// replaces the entrypoint and drops Cmd.
	if out := run(w.image, "a", "b"); !strings.Contains(out, "args:a b\n") {
		t.Errorf("cmd override:\n%s", out)
	}
	if out := run("--entrypoint", "/bin/echo", w.image); out != "\n" {
		t.Errorf("--entrypoint without a command kept the image's cmd: %q", out)
	}
	if out := run("--entrypoint", "/bin/echo", w.image, "hello"); out != "hello\n" {
		t.Errorf("--entrypoint with a command: %q", out)
	}
	if out := run("--entrypoint", `["/bin/echo","from","json"]`, w.image); out != "from json\n" {
		t.Errorf("--entrypoint JSON array: %q", out)
	}
	if out := run("--entrypoint", "", w.image, "sh", "-c", "echo direct"); out != "direct\n" {
		t.Errorf(`--entrypoint "": %q`, out)
	}
	// User: names, numbers, name:group, uid:gid, --group-add.
	for _, c := range []struct{ flag, want string }{
		{"0", "id:uid=0(root) gid=0(root)"},
		{"root", "id:uid=0(root) gid=0(root)"},
		{"1000", "id:uid=1000(web) gid=1000(web) groups=10(wheel)"},
		{"web:wheel", "id:uid=1000(web) gid=10(wheel)\n"},
		{"1234:5678", "id:uid=1234 gid=5678\n"},
	} {
		if out := run("-u", c.flag, w.image); !strings.Contains(out, c.want) {
			t.Errorf("-u %s: want %q in\n%s", c.flag, c.want, out)
		}
	}
	if out := run("-u", "0", "--group-add", "wheel", "--group-add", "4242", w.image); !strings.Contains(out, "groups=10(wheel),4242") && !strings.Contains(out, "groups=0(root),10(wheel),4242") {
		t.Errorf("--group-add:\n%s", out)
	}
	if out := run("-u", "web", "-e", "HOME=/elsewhere", w.image); !strings.Contains(out, ":/elsewhere:") {
		t.Errorf("-e HOME does not win over the user's home:\n%s", out)
	}
	// A missing working dir is created.
	if out := run("-w", "/made/for/you", w.image); !strings.Contains(out, "pwd:/made/for/you\n") {
		t.Errorf("-w:\n%s", out)
	}
	// The image's volume is an anonymous volume with the image's content,
	// owner and mode, removed by --rm.
	if out := run("--entrypoint", "", w.image, "sh", "-c", "stat -c '%u:%g %a' /data; cat /data/seed; echo more > /data/new && echo wrote"); out != "1000:1000 750\nfrom-the-image\nwrote\n" {
		t.Errorf("image volume: %q", out)
	}
	if ents, _ := os.ReadDir(w.vols); len(ents) != 0 {
		t.Errorf("--rm left the anonymous volume: %v", ents)
	}
	// Labels, exposed ports (-P), stop signal, all in inspect; stop sends
	// the image's StopSignal.
	w.mustCt(t, "run", "-d", "--name", "svc", "-P", "--label", "extra=yes", w.image, "serve")
	doc := w.inspect(t, "svc")
	if l := field(doc, "Config", "Labels").(map[string]any); l["org.example.role"] != "test" || l["extra"] != "yes" {
		t.Errorf("labels: %v", l)
	}
	if s := field(doc, "Config", "StopSignal"); s != "SIGUSR1" {
		t.Errorf("stop signal: %v", s)
	}
	pb, _ := field(doc, "HostConfig", "PortBindings").(map[string]any)
	for _, p := range []string{"80/tcp", "53/udp"} {
		b, _ := pb[p].([]any)
		if len(b) != 1 {
			t.Errorf("-P did not publish %s: %v", p, pb)
			continue
		}
		hp, _ := strconv.Atoi(b[0].(map[string]any)["HostPort"].(string))
		if hp < 1024 {
			t.Errorf("-P host port for %s: %v", p, b)
		}
	}
	if out := w.mustCt(t, "port", "svc", "80"); !regexp.MustCompile(`^0\.0\.0\.0:\d+\n$`).MatchString(out) {
		t.Errorf("port svc 80: %q", out)
	}
	mounts, _ := field(doc, "Mounts").([]any)
	if len(mounts) != 1 || mounts[0].(map[string]any)["Destination"] != "/data" || mounts[0].(map[string]any)["Type"] != "volume" {
		t.Errorf("mounts: %v", mounts)
	}
	start := time.Now()
	w.mustCt(t, "stop", "-t", "20", "svc")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stop took %v: the image's stop signal was not used", d)
	}
	if st := w.format(t, "svc", "{{.State.ExitCode}}"); st != "0" {
		t.Errorf("exit after the stop signal: %s", st)
	}
	if logs := w.mustCt(t, "logs", "svc"); !strings.Contains(logs, "got-usr1") {
		t.Errorf("logs: %q", logs)
	}
	// rm without -v keeps the anonymous volume (docker's rule); -v removes it.
	w.rmAndCheck(t, "svc", "-v")
	w.assertClean(t)
}

func TestContainerExec(t *testing.T) {
	w := newCtWorld(t)
	w.mustCt(t, "run", "-d", "--name", "ex", "-e", "FROM_RUN=1", w.image, "sh", "-c", "exec sleep 1000")
	if out := w.mustCt(t, "exec", "ex", "sh", "-c", "id; echo $FROM_RUN $FROM_IMAGE; pwd"); out != "uid=0(root) gid=0(root)\n1 1\n/\n" {
		t.Errorf("exec: %q", out)
	}
	if out := w.mustCt(t, "exec", "-u", "web", "ex", "sh", "-c", "id; echo $HOME"); !strings.Contains(out, "uid=1000(web) gid=1000(web) groups=10(wheel)") || !strings.HasSuffix(out, "/home/web\n") {
		t.Errorf("exec -u web: %q", out)
	}
	if out := w.mustCt(t, "exec", "-u", "1000:10", "ex", "id"); out != "uid=1000(web) gid=10(wheel)\n" {
		t.Errorf("exec -u 1000:10: %q", out)
	}
	env := filepath.Join(t.TempDir(), "env")
	os.WriteFile(env, []byte("# comment\nFROM_FILE=yes\n\nFROM_HOST\n"), 0o644)
	t.Setenv("FROM_HOST", "host-value")
	if out := w.mustCt(t, "exec", "-w", "/tmp", "-e", "A=1", "--env-file", env, "ex", "sh", "-c", "pwd; echo $A $FROM_FILE $FROM_HOST"); out != "/tmp\n1 yes host-value\n" {
		t.Errorf("exec -w -e --env-file: %q", out)
	}
	cmd := exec.Command("nsenter", "--net="+w.ns(w.host), berthBin, "--root", w.root, "container", "exec", "-i", "ex", "cat")
	cmd.Stdin = strings.NewReader("through stdin\n")
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "through stdin\n" {
		t.Errorf("exec -i: %v %q", err, out)
	}
	if out, err := w.ct("exec", "ex", "cat"); err != nil || out != "" {
		t.Errorf("exec without -i gets stdin: %v %q", err, out)
	}
	if _, err := w.ct("exec", "ex", "sh", "-c", "exit 4"); ctExit(err) != 4 {
		t.Errorf("exec exit status: %v", err)
	}
	if _, err := w.ct("exec", "ex", "no-such-command"); ctExit(err) != 127 {
		t.Errorf("exec of a missing command: %v", err)
	}
	w.mustCt(t, "exec", "-d", "ex", "sh", "-c", "echo bg > /tmp/bg")
	if !waitFor(5*time.Second, func() bool { out, _ := w.ct("exec", "ex", "cat", "/tmp/bg"); return out == "bg\n" }) {
		t.Error("exec -d did not run")
	}
	if out := w.mustCt(t, "exec", "--privileged", "ex", "sh", "-c", "grep CapEff /proc/self/status"); !strings.Contains(out, hostCapBnd(t)) {
		t.Errorf("exec --privileged: %q, want %s", out, hostCapBnd(t))
	}
	if _, err := exec.LookPath("script"); err == nil {
		cmdline := berthBin + " --root " + w.root + " container exec -it ex sh"
		cmd := exec.Command("script", "-qec", cmdline, "/dev/null")
		cmd.Env = os.Environ()
		stdin, _ := cmd.StdinPipe()
		go func() {
			time.Sleep(500 * time.Millisecond)
			stdin.Write([]byte("tty; exit 6\n"))
		}()
		out, err := cmd.CombinedOutput()
		if ctExit(err) != 6 || !strings.Contains(string(out), "/dev/pts/") {
			t.Errorf("exec -it: %v\n%s", err, out)
		}
	}
	w.mustCt(t, "stop", "-t", "1", "ex")
	if _, err := w.ct("exec", "ex", "true"); ctExit(err) != 125 {
		t.Errorf("exec in a stopped container: %v", err)
	}
	w.rmAndCheck(t, "ex")
	w.assertClean(t)
}

// hostCapBnd is the capability bounding set of the test process: what
// --privileged gives.
func hostCapBnd(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`CapBnd:\s+([0-9a-f]+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no CapBnd")
	}
	return string(m[1])
}

func TestContainerLifecycle(t *testing.T) {
	w := newCtWorld(t)
	loop := "trap 'echo bye; exit 0' TERM; echo hello; while :; do sleep 0.1; done"
	w.mustCt(t, "run", "-d", "--name", "life", w.image, "sh", "-c", loop)
	if !waitFor(5*time.Second, func() bool { return strings.Contains(w.mustCt(t, "logs", "life"), "hello") }) {
		t.Fatal("no hello")
	}
	if out := w.mustCt(t, "top", "life"); !strings.Contains(out, "PID") || !strings.Contains(out, "sleep") && !strings.Contains(out, "sh -c") {
		t.Errorf("top:\n%s", out)
	}
	if out := w.mustCt(t, "top", "life", "-o", "pid,comm"); !strings.Contains(out, "COMMAND") {
		t.Errorf("top with ps options:\n%s", out)
	}
	out := w.mustCt(t, "stats", "--no-stream", "life")
	if !strings.Contains(out, "MEM USAGE / LIMIT") || !strings.Contains(out, " life ") {
		t.Errorf("stats:\n%s", out)
	}
	var st struct {
		Name string `json:"name"`
		Pids int    `json:"pids"`
		Mem  uint64 `json:"mem_usage"`
	}
	if err := json.Unmarshal([]byte(w.mustCt(t, "stats", "--no-stream", "--format", "json", "life")), &st); err != nil || st.Name != "life" || st.Pids < 1 || st.Mem == 0 {
		t.Errorf("stats json: %v %+v", err, st)
	}
	w.mustCt(t, "pause", "life")
	if s := w.format(t, "life", "{{.State.Status}}"); s != "paused" {
		t.Errorf("after pause: %s", s)
	}
	w.mustCt(t, "unpause", "life")
	started := w.format(t, "life", "{{.State.StartedAt}}")
	w.mustCt(t, "restart", "-t", "5", "life")
	if s := w.format(t, "life", "{{.State.Status}} {{.State.StartedAt}}"); !strings.HasPrefix(s, "running ") || strings.HasSuffix(s, started) {
		t.Errorf("after restart: %s (started %s before)", s, started)
	}
	// kill -s: the signal reaches the process; wait prints its status.
	waitc := make(chan string, 1)
	go func() { out, _ := w.ct("wait", "life"); waitc <- out }()
	time.Sleep(200 * time.Millisecond)
	w.mustCt(t, "kill", "-s", "TERM", "life")
	select {
	case out := <-waitc:
		if out != "0\n" {
			t.Errorf("wait: %q", out)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("wait did not return")
	}
	if logs := w.mustCt(t, "logs", "life"); strings.Count(logs, "bye") != 2 {
		t.Errorf("logs after restart and kill: %q", logs)
	}
	if _, err := w.ct("kill", "life"); ctExit(err) != 125 {
		t.Errorf("kill of a stopped container: %v", err)
	}
	w.mustCt(t, "start", "life")
	if s := w.format(t, "life", "{{.State.Status}}"); s != "running" {
		t.Errorf("after start: %s", s)
	}
	// logs: --tail, --timestamps, -f until the container stops.
	w.mustCt(t, "run", "-d", "--name", "talk", w.image, "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done; printf no-newline")
	out = w.mustCt(t, "logs", "-f", "talk")
	if out != "line1\nline2\nline3\nline4\nline5\nno-newline" {
		t.Errorf("logs -f: %q", out)
	}
	if out := w.mustCt(t, "logs", "--tail", "2", "talk"); out != "line5\nno-newline" {
		t.Errorf("logs --tail 2: %q", out)
	}
	if out := w.mustCt(t, "logs", "-t", "--tail", "1", "talk"); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z no-newline$`).MatchString(out) {
		t.Errorf("logs -t: %q", out)
	}
	// ps -a -q, prune (keeps the running one), rm -f.
	if ids := strings.Fields(w.mustCt(t, "ps", "-a", "-q")); len(ids) != 2 {
		t.Errorf("ps -a -q: %v", ids)
	}
	talk := w.procsOf(t, "talk")
	if out := w.mustCt(t, "prune", "-f"); len(strings.TrimSpace(out)) != 64 {
		t.Errorf("prune: %q", out)
	}
	talk.gone(t)
	if ps := w.mustCt(t, "ps", "-a", "--format", "{{.Name}}"); ps != "life\n" {
		t.Errorf("after prune: %q", ps)
	}
	w.rmAndCheck(t, "life", "-f")
	w.assertClean(t)
}

func TestContainerRestartPolicy(t *testing.T) {
	w := newCtWorld(t)
	w.mustCt(t, "run", "-d", "--name", "fails", "--restart", "on-failure:2", "--network", "none", w.image, "sh", "-c", "echo attempt; exit 3")
	if out := w.mustCt(t, "wait", "fails"); out == "" {
		t.Error("wait printed nothing")
	}
	waitFor(10*time.Second, func() bool {
		return w.format(t, "fails", "{{.State.Status}}") == "exited" && !w.runnerAlive(t, "fails")
	})
	if s := w.format(t, "fails", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"); s != "exited 2 3 on-failure:2" {
		t.Errorf("on-failure:2: %s", s)
	}
	if n := strings.Count(w.mustCt(t, "logs", "fails"), "attempt"); n != 3 {
		t.Errorf("on-failure:2 ran %d times, want 3", n)
	}
	// on-failure does not restart a clean exit.
	w.mustCt(t, "run", "-d", "--name", "clean", "--restart", "on-failure", "--network", "none", w.image, "sh", "-c", "exit 0")
	waitFor(10*time.Second, func() bool { return !w.runnerAlive(t, "clean") })
	if s := w.format(t, "clean", "{{.RestartCount}} {{.State.ExitCode}}"); s != "0 0" {
		t.Errorf("on-failure after exit 0: %s", s)
	}
	// always restarts until stopped; stop (and kill) are not followed by a
	// restart.
	w.mustCt(t, "run", "-d", "--name", "again", "--restart", "always", "--network", "none", w.image, "sh", "-c", "echo run; sleep 0.2")
	if !waitFor(15*time.Second, func() bool { return strings.Count(w.mustCt(t, "logs", "again"), "run") >= 3 }) {
		t.Fatalf("always did not restart: %q", w.mustCt(t, "logs", "again"))
	}
	w.mustCt(t, "stop", "-t", "1", "again")
	n := strings.Count(w.mustCt(t, "logs", "again"), "run")
	time.Sleep(1500 * time.Millisecond)
	if m := strings.Count(w.mustCt(t, "logs", "again"), "run"); m != n || w.format(t, "again", "{{.State.Status}}") != "exited" {
		t.Errorf("restarted after stop: %d runs then %d, %s", n, m, w.format(t, "again", "{{.State.Status}}"))
	}
	w.mustCt(t, "start", "again")
	if !waitFor(10*time.Second, func() bool { return strings.Count(w.mustCt(t, "logs", "again"), "run") > n }) {
		t.Error("start did not run it again")
	}
	w.mustCt(t, "kill", "again")
	time.Sleep(300 * time.Millisecond)
	n = strings.Count(w.mustCt(t, "logs", "again"), "run")
	time.Sleep(1500 * time.Millisecond)
	if m := strings.Count(w.mustCt(t, "logs", "again"), "run"); m != n {
		t.Errorf("restarted after kill: %d then %d", n, m)
	}
	for _, n := range []string{"fails", "clean", "again"} {
		w.rmAndCheck(t, n, "-f")
	}
	w.assertClean(t)
}

func (w *ctWorld) runnerAlive(t *testing.T, name string) bool {
	p := w.procsOf(t, name)
	for _, pid := range p.pids {
		if err := unix.Kill(pid, 0); err == nil {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), "x-monitor") {
				return true
			}
		}
	}
	return false
}

func TestContainerVolumes(t *testing.T) {
	w := newCtWorldImage(t, ctConfigImage, ctConfigRootfs)
	sh := func(name string, args ...string) string {
		t.Helper()
		base := []string{"run", "--network", "none", "--entrypoint", ""}
		if name == "" {
			base = append(base, "--rm")
		} else {
			base = append(base, "--name", name)
		}
		return w.mustCt(t, append(base, args...)...)
	}
	// A named volume is created on first use, filled from the image, and
	// outlives its containers.
	if out := sh("v1", "-v", "keep:/data", w.image, "sh", "-c", "cat /data/seed; echo written > /data/mine"); out != "from-the-image\n" {
		t.Errorf("new named volume: %q", out)
	}
	if out, err := w.berth("volume", "rm", "keep"); err == nil || !strings.Contains(out, "in use") {
		t.Errorf("volume rm of a volume in use: %v %s", err, out)
	}
	w.rmAndCheck(t, "v1")
	if out := sh("", "-v", "keep:/data", w.image, "cat", "/data/mine"); out != "written\n" {
		t.Errorf("named volume after rm: %q", out)
	}
	if out := w.mustBerth(t, "volume", "ls", "-q"); out != "keep\n" {
		t.Errorf("volume ls -q: %q", out)
	}
	// rm without -v keeps an anonymous volume; prune removes it.
	sh("v2", w.image, "sh", "-c", "exit 0")
	w.rmAndCheck(t, "v2")
	if ents, _ := os.ReadDir(w.vols); len(ents) != 2 {
		t.Errorf("anonymous volume after rm without -v: %v", ents)
	}
	// prune takes the unused anonymous volumes (docker's rule); the named
	// one stays.
	if out := w.mustBerth(t, "volume", "prune", "-f"); len(strings.TrimSpace(out)) != 64 {
		t.Errorf("volume prune: %q", out)
	}
	w.mustBerth(t, "volume", "create", "unused")
	if out := w.mustBerth(t, "volume", "prune", "-f", "--all"); out != "keep\nunused\n" {
		t.Errorf("volume prune --all: %q", out)
	}
	w.mustBerth(t, "volume", "create", "keep")
	// -v /host:/ctr[:ro], anonymous -v /path, --mount, volume create.
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "f"), []byte("host-file\n"), 0o644)
	if out := sh("", "-u", "0", "-v", host+":/mnt:ro", "-v", "/anon", "--mount", "type=tmpfs,destination=/t,tmpfs-size=1m", w.image,
		"sh", "-c", "cat /mnt/f; touch /mnt/x 2>/dev/null || echo ro; touch /anon/x && echo anon; grep ' /t ' /proc/mounts | grep -c size=1024k"); out != "host-file\nro\nanon\n1\n" {
		t.Errorf("binds and mounts: %q", out)
	}
	w.mustBerth(t, "volume", "create", "--label", "owner=test", "made")
	if out := w.mustBerth(t, "volume", "inspect", "-f", "{{.Name}} {{.Labels.owner}} {{.Mountpoint}}", "made"); out != "made test "+filepath.Join(w.vols, "made", "_data")+"\n" {
		t.Errorf("volume inspect: %q", out)
	}
	if out := sh("", "--mount", "type=volume,src=made,dst=/data", w.image, "cat", "/data/seed"); out != "from-the-image\n" {
		t.Errorf("--mount volume: %q", out)
	}
	for _, v := range []string{"keep", "made"} {
		w.mustBerth(t, "volume", "rm", v)
	}
	if out, err := w.berth("volume", "rm", "keep"); err == nil || !strings.Contains(out, "no such volume") {
		t.Errorf("volume rm twice: %v %s", err, out)
	}
	w.assertClean(t)
}

// TestContainerCp: cp in and out of running and stopped containers, and
// symlinks in the container that point out of it (absolute, relative,
// to the host's files) never lead out.
func TestContainerCp(t *testing.T) {
	w := newCtWorld(t)
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "secret")
	os.WriteFile(secret, []byte("host-secret\n"), 0o600)
	hostEtc := "berth-cp-" + strconv.Itoa(os.Getpid())
	setup := fmt.Sprintf("ln -s / /tmp/toroot; ln -s %s /tmp/tosecret; ln -s ../../../../../.. /tmp/up; ln -s %s /tmp/todir; "+
		"mkdir -p /srv/tree/sub && echo a > /srv/tree/a && echo b > /srv/tree/sub/b; exec sleep 1000", secret, secretDir)
	w.mustCt(t, "run", "-d", "--name", "cp", "--tmpfs", "/scratch", w.image, "sh", "-c", setup)
	time.Sleep(300 * time.Millisecond)
	out := t.TempDir()
	// Out: through links, only the container's own files.
	w.mustCt(t, "cp", "cp:/tmp/toroot/etc/passwd", filepath.Join(out, "passwd"))
	if b, _ := os.ReadFile(filepath.Join(out, "passwd")); !strings.Contains(string(b), "web:x:1000") {
		t.Errorf("cp through /tmp/toroot read %q, not the container's passwd", b)
	}
	w.mustCt(t, "cp", "cp:/tmp/tosecret", filepath.Join(out, "link"))
	if l, err := os.Readlink(filepath.Join(out, "link")); err != nil || l != secret {
		t.Errorf("cp of a symlink copied %v %q, want the link itself", err, l)
	}
	if o, err := w.ct("cp", "cp:/tmp/todir/secret", filepath.Join(out, "x")); err == nil {
		t.Errorf("cp followed a link to a host directory: %s", o)
	}
	if o, err := w.ct("cp", "cp:/tmp/up/"+secretDir+"/secret", filepath.Join(out, "y")); err == nil {
		t.Errorf("cp followed .. out of the container: %s", o)
	}
	// In: through links, only into the container.
	src := filepath.Join(t.TempDir(), hostEtc)
	os.WriteFile(src, []byte("copied-in\n"), 0o644)
	w.mustCt(t, "cp", src, "cp:/tmp/toroot/etc/")
	if _, err := os.Stat("/etc/" + hostEtc); err == nil {
		os.Remove("/etc/" + hostEtc)
		t.Fatal("cp into /tmp/toroot/etc/ wrote the host's /etc")
	}
	if o := w.mustCt(t, "exec", "cp", "cat", "/etc/"+hostEtc); o != "copied-in\n" {
		t.Errorf("cp in through a link: %q", o)
	}
	// The link is followed inside the container, where its target's
	// directory does not exist: an error, and the host file untouched.
	w.ct("cp", src, "cp:/tmp/tosecret")
	if b, _ := os.ReadFile(secret); string(b) != "host-secret\n" {
		t.Fatalf("cp in through a link to a host file overwrote it: %q", b)
	}
	// Directories, SRC/. and mounts of the running container (a tmpfs).
	w.mustCt(t, "cp", "cp:/srv/tree", filepath.Join(out, "tree"))
	if b, _ := os.ReadFile(filepath.Join(out, "tree/sub/b")); string(b) != "b\n" {
		t.Errorf("cp of a tree: %q", b)
	}
	w.mustCt(t, "cp", filepath.Join(out, "tree")+"/.", "cp:/scratch")
	if o := w.mustCt(t, "exec", "cp", "sh", "-c", "cat /scratch/a /scratch/sub/b; stat -c %u /scratch/a"); o != "a\nb\n0\n" {
		t.Errorf("cp of a tree's contents into a tmpfs: %q", o)
	}
	// Stopped: the rootfs is still there.
	w.mustCt(t, "stop", "-t", "0", "cp")
	w.mustCt(t, "cp", "cp:/srv/tree/a", filepath.Join(out, "a-stopped"))
	if b, _ := os.ReadFile(filepath.Join(out, "a-stopped")); string(b) != "a\n" {
		t.Errorf("cp from a stopped container: %q", b)
	}
	w.rmAndCheck(t, "cp")
	w.assertClean(t)
}

func TestContainerRunFlags(t *testing.T) {
	w := newCtWorld(t)
	run := func(args ...string) (string, error) {
		return w.ct(append([]string{"run", "--rm"}, args...)...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("run %v: %v\n%s", args, err, out)
		}
		return out
	}
	env := filepath.Join(t.TempDir(), "env")
	os.WriteFile(env, []byte("# comment\nA=from-file\nB=x=y\nPASSED\n"), 0o644)
	t.Setenv("PASSED", "from-host")
	if out := must("--network", "none", "--env-file", env, "-e", "C", "-e", "D=d", w.image, "sh", "-c", "echo $A $B $PASSED $D; env | grep -c ^C= || true"); out != "from-file x=y from-host d\n0\n" {
		t.Errorf("--env-file/-e: %q", out)
	}
	// Hosts, DNS (the uplink's DNS server answers example.test).
	if out := must("--network", "none", "--add-host", "db.example:192.0.2.9", "--hostname", "box", w.image, "sh", "-c", "grep db.example /etc/hosts; cat /etc/hostname; hostname"); out != "192.0.2.9\tdb.example\nbox\nbox\n" {
		t.Errorf("--add-host on --network none: %q", out)
	}
	out := must("--dns", nwDNSIP, "--dns-search", "example.test", "--dns-option", "ndots:2", "--add-host", "db.example:192.0.2.9", w.image,
		"sh", "-c", "cat /etc/resolv.conf; grep db.example /etc/hosts; nslookup example.test "+nwDNSIP+" | grep -c "+nwEchoIP)
	for _, want := range []string{"nameserver " + nwDNSIP, "search example.test", "options ndots:2", "192.0.2.9\tdb.example", "\n1\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("--dns*: no %q in\n%s", want, out)
		}
	}
	// Resource limits: the default NOFILE (podman's, capped at what berth
	// may give), --ulimit, --shm-size, --tmpfs, --pids-limit.
	var nofile unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
	want := min(nofile.Max, 1048576)
	if out := must("--network", "none", w.image, "sh", "-c", "ulimit -n"); strings.TrimSpace(out) != strconv.FormatUint(want, 10) {
		t.Errorf("default nofile: %q, want %d", out, want)
	}
	if out := must("--network", "none", "--ulimit", "nofile=512:1024", "--ulimit", "core=0", w.image, "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c"); out != "512\n1024\n0\n" {
		t.Errorf("--ulimit: %q", out)
	}
	if !hasCapSysResource() {
		if out, err := run("--network", "none", "--ulimit", "nofile=4000000", w.image, "true"); ctExit(err) != 125 || !strings.Contains(out, "CAP_SYS_RESOURCE") {
			t.Errorf("--ulimit above berth's hard limit: %v %s", err, out)
		}
	}
	if out := must("--network", "none", "--shm-size", "2m", "--tmpfs", "/scratch:size=1m,exec", "--pids-limit", "50", w.image,
		"sh", "-c", "grep ' /dev/shm ' /proc/mounts | grep -c size=2048k; grep ' /scratch ' /proc/mounts | grep -c size=1024k; grep ' /scratch ' /proc/mounts | grep -c noexec || true"); out != "1\n1\n0\n" {
		t.Errorf("--shm-size/--tmpfs: %q", out)
	}
	// Block I/O throttles on a block device of the host, swappiness,
	// --unsetenv.
	for _, dev := range []string{"/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda"} {
		var st unix.Stat_t
		if unix.Stat(dev, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
			continue
		}
		mm := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		out := must("--network", "none", "--device-read-bps", dev+":1mb", "--device-write-iops", dev+":100", "--memory-swappiness", "10", "-m", "64m", "--unsetenv", "FROM_IMAGE", w.image,
			"sh", "-c", "cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device /sys/fs/cgroup/memory/memory.swappiness 2>/dev/null || cat /sys/fs/cgroup/io.max; echo from-image=$FROM_IMAGE")
		if out != mm+" 1048576\n"+mm+" 100\n10\nfrom-image=\n" && !strings.Contains(out, mm+" rbps=1048576") {
			t.Errorf("--device-read-bps/--device-write-iops/--memory-swappiness/--unsetenv: %q", out)
		}
		break
	}
	// --device.
	if out := must("--network", "none", "--device", "/dev/null:/dev/mynull", w.image, "sh", "-c", "stat -c '%t:%T' /dev/mynull; echo x > /dev/mynull && echo ok"); out != "1:3\nok\n" {
		t.Errorf("--device: %q", out)
	}
	// Security: no-new-privileges, seccomp (default, unconfined, a docker
	// format profile that forbids mkdir), read-only.
	status := "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\\t '"
	if out := must("--network", "none", w.image, "sh", "-c", status); out != "NoNewPrivs:0\nSeccomp:2\n" {
		t.Errorf("default security: %q", out)
	}
	if out := must("--network", "none", "--security-opt", "no-new-privileges", "--security-opt", "seccomp=unconfined", w.image, "sh", "-c", status); out != "NoNewPrivs:1\nSeccomp:0\n" {
		t.Errorf("--security-opt no-new-privileges,seccomp=unconfined: %q", out)
	}
	prof := filepath.Join(t.TempDir(), "seccomp.json")
	os.WriteFile(prof, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644)
	if out := must("--network", "none", "--security-opt", "seccomp="+prof, w.image, "sh", "-c", "mkdir /x 2>/dev/null || echo denied; "+status); out != "denied\nNoNewPrivs:0\nSeccomp:2\n" {
		t.Errorf("--security-opt seccomp=FILE: %q", out)
	}
	if out := must("--network", "none", "--read-only", w.image, "sh", "-c", "touch /x 2>/dev/null || echo ro; touch /tmp/x /run/x /var/tmp/x 2>/dev/null && echo tmp-ok"); out != "ro\ntmp-ok\n" {
		t.Errorf("--read-only: %q", out)
	}
	if out := must("--network", "none", "--read-only", "--read-only-tmpfs=false", w.image, "sh", "-c", "touch /tmp/x 2>/dev/null || echo ro"); out != "ro\n" {
		t.Errorf("--read-only-tmpfs=false: %q", out)
	}
	// Capabilities.
	if out := must("--network", "none", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", w.image, "sh", "-c", "grep CapEff /proc/self/status"); !strings.Contains(out, "0000000000001000") {
		t.Errorf("--cap-drop ALL --cap-add NET_ADMIN: %q", out)
	}
	// --init: berth is pid 1 and reaps the orphans a shell leaves.
	if out := must("--network", "none", "--init", w.image, "sh", "-c",
		"cat /proc/1/cmdline | tr '\\0' ' '; echo; sh -c 'sleep 0.2 &'; sleep 0.8; grep -l '^[0-9]* ([a-z]*) Z' /proc/[0-9]*/stat | wc -l"); out != "/dev/init -- sh -c cat /proc/1/cmdline | tr '\\0' ' '; echo; sh -c 'sleep 0.2 &'; sleep 0.8; grep -l '^[0-9]* ([a-z]*) Z' /proc/[0-9]*/stat | wc -l \n0\n" {
		t.Errorf("--init: %q", out)
	}
	// --privileged: every capability berth holds, no seccomp, no masked
	// paths, /sys and the cgroup mount writable, the host's devices, mounts.
	out = must("--network", "none", "--privileged", w.image, "sh", "-c",
		"grep CapEff /proc/self/status; "+status+"; grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; "+
			"grep -c ' /proc/kcore ' /proc/mounts; ls /dev | grep -c '^kmsg$'; mkdir /m && mount -t tmpfs none /m && echo mounted")
	for _, want := range []string{hostCapBnd(t), "NoNewPrivs:0\nSeccomp:0\n", "\nrw\n", "\n0\n1\nmounted\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("--privileged: no %q in\n%s", want, out)
		}
	}
	// --init with --privileged: the container could remount /dev/init
	// read-write, so it binds a copy of berth of its own, not the host's.
	w.mustCt(t, "run", "-d", "--name", "privinit", "--privileged", "--init", "--network", "none", w.image, "sh", "-c", "sleep 100")
	if out := w.mustCt(t, "exec", "privinit", "sh", "-c", "mount -o remount,rw,bind /dev/init && echo remounted"); out != "remounted\n" {
		t.Errorf("remount in a privileged container: %q", out)
	}
	if fi, err := os.Stat(filepath.Join(w.home, "privinit", "init")); err != nil || fi.Size() == 0 {
		t.Errorf("no private copy of the init binary: %v", err)
	}
	w.rmAndCheck(t, "privinit", "-f")
	// --cidfile, --stop-signal, --sysctl, --domainname.
	cid := filepath.Join(t.TempDir(), "cid")
	w.mustCt(t, "run", "-d", "--name", "opts", "--cidfile", cid, "--stop-signal", "SIGHUP", "--sysctl", "net.ipv4.ip_forward=1", "--domainname", "example.org",
		w.image, "sh", "-c", "trap 'echo hup; exit 0' HUP; while :; do sleep 0.1; done")
	if b, _ := os.ReadFile(cid); len(b) != 64 {
		t.Errorf("--cidfile: %q", b)
	}
	if o := w.mustCt(t, "exec", "opts", "sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/domainname"); o != "1\nexample.org\n" {
		t.Errorf("--sysctl/--domainname: %q", o)
	}
	w.mustCt(t, "stop", "opts")
	if logs := w.mustCt(t, "logs", "opts"); logs != "hup\n" {
		t.Errorf("--stop-signal: %q", logs)
	}
	// --replace.
	w.mustCt(t, "run", "-d", "--name", "opts", "--replace", "--network", "none", w.image, "sh", "-c", "sleep 100")
	w.rmAndCheck(t, "opts", "-f")
	w.assertClean(t)
}

func hasCapSysResource() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_SYS_RESOURCE) != 0
}

// TestContainerUnpackWritableRoot is the skopeo/umoci/runc walkthrough done
// with berth: the bundle `berth unpack` writes has a writable root, as
// umoci's does.
func TestContainerUnpackWritableRoot(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "src")
	unpackBusybox(t, rootfs)
	layout := filepath.Join(dir, "layout")
	unpackMakeImage(t, layout, "latest", `{"Env":["PATH=/bin"],"Cmd":["sh"]}`, rootfs+":gzip")
	b := filepath.Join(dir, "bundle")
	if out, err := unpackRun(t, nil, "unpack", "--image", layout+":latest", "--terminal=false", "--args", `["sh","-c","echo data > /written && cat /written"]`, b); err != nil {
		t.Fatalf("unpack: %v\n%s", err, out)
	}
	if s := readSpec(t, b); s.Root.Readonly {
		t.Error("berth unpack wrote root.readonly: true (umoci writes a writable root)")
	}
	root := t.TempDir()
	if out, err := unpackRun(t, nil, "--root", root, "run", "-b", b, "unpack-rw"); err != nil || out != "data\n" {
		t.Errorf("run of the unpacked bundle: %v %q", err, out)
	}
}

func TestContainerUpdateDiffExport(t *testing.T) {
	w := newCtWorld(t)
	w.mustCt(t, "run", "-d", "--name", "u", "--network", "none", w.image, "sh", "-c", "echo x > /new; rm /etc/group; echo more >> /etc/passwd; exec sleep 1000")
	time.Sleep(300 * time.Millisecond)
	if out := w.mustCt(t, "diff", "u"); out != "C /etc\nD /etc/group\nC /etc/passwd\nA /new\n" {
		t.Errorf("diff: %q", out)
	}
	w.mustCt(t, "update", "--pids-limit", "33", "--memory", "64m", "--restart", "on-failure:2", "u")
	if out := w.mustCt(t, "exec", "u", "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max"); out != "33\n67108864\n" {
		t.Errorf("live limits after update: %q", out)
	}
	if s := w.format(t, "u", "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"); s != "on-failure:2" {
		t.Errorf("restart policy after update: %s", s)
	}
	// Kept for the next run.
	w.mustCt(t, "restart", "-t", "0", "u")
	if out := w.mustCt(t, "exec", "u", "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"); out != "33\n" {
		t.Errorf("limits after a restart: %q", out)
	}
	tarball := filepath.Join(t.TempDir(), "u.tar")
	w.mustCt(t, "export", "-o", tarball, "u")
	list, err := exec.Command("tar", "tf", tarball).Output()
	if err != nil || !strings.Contains(string(list), "\nnew\n") || !strings.Contains(string(list), "etc/passwd\n") || strings.Contains(string(list), "etc/group") {
		t.Errorf("export: %v\n%s", err, list)
	}
	for _, cmd := range []string{"attach", "commit", "rename"} {
		if out, err := w.ct(cmd, "u", "x"); ctExit(err) != 125 || !strings.Contains(out, "container "+cmd+":") {
			t.Errorf("%s: %v %s", cmd, err, out)
		}
	}
	w.rmAndCheck(t, "u", "-f")
	w.assertClean(t)
}
