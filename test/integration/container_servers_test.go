package integration

// Real servers from Debian packages: nginx and PostgreSQL in images built
// here, from Debian's mirror (the only network the tests use besides the
// netns they create), with mmdebstrap --variant=minbase. The build takes
// one to two minutes on a clean machine; the image and its extracted layer
// are cached under /var/cache/berth-test, keyed by the packages' versions,
// so later runs start at once.

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/testutil"
)

// debRecipe changes whenever the build below does, so a cached image from
// an older recipe is not used.
const debRecipe = "4"

var debPackages = []string{"nginx-light", "postgresql-15"}

// debCacheRoot holds the built images.
const debCacheRoot = "/var/cache/berth-test"

const debNginxConfig = `{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
"Cmd":["nginx","-g","daemon off;"],"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGQUIT",
"Labels":{"org.opencontainers.image.title":"nginx from Debian"}}`

const debPostgresConfig = `{"Env":["PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
"PGDATA=/var/lib/postgresql/data","LANG=C.UTF-8"],"Entrypoint":["/usr/local/bin/pg-entrypoint"],"Cmd":["postgres"],
"User":"postgres","Volumes":{"/var/lib/postgresql/data":{}},"ExposedPorts":{"5432/tcp":{}},"StopSignal":"SIGINT"}`

// debPost prepares the rootfs the way the official images do: nginx logs
// to the container's stdout and stderr; PostgreSQL has no cluster of the
// package's own, its data directory (the image's volume) belongs to
// postgres, and an entrypoint initialises it on first start.
const debPost = `set -e
r="$1"
ln -sf /dev/stdout "$r/var/log/nginx/access.log"
ln -sf /dev/stderr "$r/var/log/nginx/error.log"
echo berth-nginx-ok > "$r/var/www/html/index.html"
rm -rf "$r/var/lib/postgresql/15" "$r/etc/postgresql/15/main"
chroot "$r" install -d -m 0700 -o postgres -g postgres /var/lib/postgresql/data
chroot "$r" install -d -m 2775 -o postgres -g postgres /run/postgresql
cat > "$r/usr/local/bin/pg-entrypoint" <<'EOF'
#!/bin/sh
set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	echo "initializing $PGDATA"
	initdb --username=postgres --auth=trust --no-instructions -D "$PGDATA" >/dev/null
	echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
	echo "host all all 0.0.0.0/0 trust" >> "$PGDATA/pg_hba.conf"
fi
exec "$@" -D "$PGDATA"
EOF
chmod 755 "$r/usr/local/bin/pg-entrypoint"
`

var (
	debOnce   sync.Once
	debLayout string
	debLayers string
	debErr    error
)

// debImages returns the OCI layout with the images "nginx" and "postgres"
// (one shared layer) and a layer cache that already holds it, building
// them if no cached build matches.
func debImages(t *testing.T) (layout, layers string) {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		testutil.Require(t, false, "mmdebstrap is not installed (scripts/apt-packages.txt)")
	}
	debOnce.Do(func() { debLayout, debLayers, debErr = debBuild(t) })
	if debErr != nil {
		// Without Debian's mirror there is no image; in CI that is a failure.
		testutil.Require(t, false, "building the Debian images: "+debErr.Error())
	}
	return debLayout, debLayers
}

// debKey names a build by the recipe and the versions apt would install now.
func debKey() string {
	h := sha256.New()
	fmt.Fprint(h, debRecipe, "\n", strings.Join(debPackages, ","), "\n", debNginxConfig, "\n", debPostgresConfig, "\n", debPost)
	out, _ := exec.Command("apt-cache", append([]string{"policy"}, append(debPackages, "libc6", "base-files")...)...).Output()
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasSuffix(l, ":") || strings.HasPrefix(l, "Candidate:") {
			fmt.Fprintln(h, l)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func debBuild(t *testing.T) (string, string, error) {
	dir := filepath.Join(debCacheRoot, "debian-"+debKey())
	layout, layers := filepath.Join(dir, "layout"), filepath.Join(dir, "layers")
	if _, err := os.Stat(filepath.Join(layout, "index.json")); err == nil {
		return layout, layers, nil
	}
	if err := os.MkdirAll(debCacheRoot, 0o755); err != nil {
		return "", "", err
	}
	// One build at a time, across test processes.
	lock, err := os.OpenFile(filepath.Join(debCacheRoot, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", "", err
	}
	if _, err := os.Stat(filepath.Join(layout, "index.json")); err == nil {
		return layout, layers, nil
	}
	// Older builds go.
	old, _ := filepath.Glob(filepath.Join(debCacheRoot, "debian-*"))
	for _, o := range old {
		unmountUnder(o)
		os.RemoveAll(o)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	work, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(work)
	post := filepath.Join(work, "post.sh")
	if err := os.WriteFile(post, []byte(debPost), 0o644); err != nil {
		return "", "", err
	}
	tarball := filepath.Join(work, "rootfs.tar")
	args := []string{"--mount", "--propagation", "private", "mmdebstrap", "--variant=minbase", "--include=" + strings.Join(debPackages, ","),
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/info/*",
		// /run keeps the socket directory the hook makes (mmdebstrap
		// empties /run by default).
		"--skip=cleanup/run", "--customize-hook=sh " + post + ` "$1"`, "bookworm", tarball}
	// The host's own Debian mirror configuration, if it has one.
	for _, src := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		if b, err := os.ReadFile(src); err == nil && strings.Contains(string(b), "debian") {
			args = append(args, src)
			break
		}
	}
	start := time.Now()
	// mmdebstrap runs in its own mount namespace (unshare), so the /proc,
	// /sys and /dev it mounts into the chroot never show on the host;
	// maintainer scripts start no services (its policy-rc.d).
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		tail := string(out)
		if len(tail) > 3000 {
			tail = tail[len(tail)-3000:]
		}
		return "", "", fmt.Errorf("mmdebstrap: %w\n%s", err, tail)
	}
	t.Logf("mmdebstrap (%s): %v", strings.Join(debPackages, ", "), time.Since(start).Round(time.Second))
	tmpLayout := filepath.Join(work, "layout")
	unpackMakeImage(t, tmpLayout, "nginx", debNginxConfig, tarball+":none")
	unpackMakeImage(t, tmpLayout, "postgres", debPostgresConfig, tarball+":none")
	if err := os.Rename(tmpLayout, layout); err != nil {
		return "", "", err
	}
	t.Logf("Debian images built in %v, cached in %s", time.Since(start).Round(time.Second), dir)
	return layout, layers, nil
}

func unmountUnder(dir string) {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			unix.Unmount(f[4], unix.MNT_DETACH)
		}
	}
}

// newServerWorld is a container world whose layer cache is the Debian
// images' (already extracted after the first run).
func newServerWorld(t *testing.T) (*ctWorld, string) {
	w := newCtWorld(t)
	layout, layers := debImages(t)
	t.Setenv("BERTH_LAYERS", layers)
	return w, layout
}

// httpGet sends a GET from inside netns ns and returns the status line and
// body.
func httpGet(ns, addr string) (string, error) {
	var c net.Conn
	if err := nwInErr(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\nUser-Agent: berth-test\r\n\r\n", addr)
	b, err := io.ReadAll(c)
	return string(b), err
}

func waitHTTP(t *testing.T, ns, addr, want string) {
	t.Helper()
	var last string
	var err error
	if !waitFor(30*time.Second, func() bool {
		last, err = httpGet(ns, addr)
		return err == nil && strings.Contains(last, want)
	}) {
		t.Fatalf("GET http://%s/ from %s: %v\n%s", addr, ns, err, last)
	}
}

func TestContainerNginx(t *testing.T) {
	w, layout := newServerWorld(t)
	img := layout + ":nginx"
	id := strings.TrimSpace(w.mustCt(t, "run", "-d", "--name", "web", "-p", "8080:80", img))
	// From the host (its own netns: locally generated traffic) and from
	// the uplink (traffic arriving from "the internet").
	hostAddr := nwHostIP + ":8080"
	waitHTTP(t, w.ns(w.host), hostAddr, "berth-nginx-ok")
	waitHTTP(t, w.ns(w.uplink), hostAddr, "berth-nginx-ok")
	if r, _ := httpGet(w.ns(w.uplink), hostAddr); !strings.HasPrefix(r, "HTTP/1.1 200") {
		t.Errorf("from the uplink: %q", r)
	}
	// The access log goes to the container's stdout, as in the official
	// image; the uplink's address is the client's (DNAT, no masquerade).
	if !waitFor(5*time.Second, func() bool { return strings.Contains(w.mustCt(t, "logs", "web"), nwUplinkIP+" - - ") }) {
		t.Errorf("access log:\n%s", w.mustCt(t, "logs", "web"))
	}
	if out := w.mustCt(t, "exec", "web", "nginx", "-t"); !strings.Contains(out, "syntax is ok") {
		t.Errorf("exec nginx -t: %s", out)
	}
	if out := w.mustCt(t, "top", "web"); !strings.Contains(out, "nginx: master process") || !strings.Contains(out, "nginx: worker process") {
		t.Errorf("top:\n%s", out)
	}
	if s := w.format(t, id, "{{.Config.StopSignal}} {{json .Config.Cmd}}"); s != `SIGQUIT ["nginx","-g","daemon off;"]` {
		t.Errorf("config: %s", s)
	}
	// -P publishes the image's EXPOSE on a free port.
	w.mustCt(t, "run", "-d", "--name", "web2", "-P", img)
	port := strings.TrimSpace(w.mustCt(t, "port", "web2", "80/tcp"))
	_, hp, _ := strings.Cut(port, ":")
	waitHTTP(t, w.ns(w.uplink), nwHostIP+":"+hp, "berth-nginx-ok")
	// stop sends SIGQUIT, nginx's graceful shutdown: exit 0, long before
	// the SIGKILL deadline.
	start := time.Now()
	w.mustCt(t, "stop", "-t", "20", "web")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stop took %v", d)
	}
	if s := w.format(t, "web", "{{.State.Status}} {{.State.ExitCode}}"); s != "exited 0" {
		t.Errorf("after stop: %s", s)
	}
	w.rmAndCheck(t, "web")
	w.rmAndCheck(t, "web2", "-f")
	w.assertClean(t)
}

// pgReady waits until the server in the container answers.
func pgReady(t *testing.T, w *ctWorld, name string) {
	t.Helper()
	var out string
	if !waitFor(60*time.Second, func() bool {
		var err error
		out, err = w.ct("exec", name, "pg_isready", "-q")
		return err == nil
	}) {
		t.Fatalf("postgres in %s is not ready: %s\nlogs:\n%s", name, out, w.mustCt(t, "logs", name))
	}
}

func TestContainerPostgres(t *testing.T) {
	w, layout := newServerWorld(t)
	img := layout + ":postgres"
	w.mustCt(t, "run", "-d", "--name", "db", "-p", "5432:5432", "-v", "pgdata:/var/lib/postgresql/data", img)
	pgReady(t, w, "db")
	w.mustCt(t, "exec", "db", "psql", "-q", "-c", "create table t (v text); insert into t values ('survives');")
	if out := w.mustCt(t, "exec", "db", "psql", "-tAc", "select v from t"); out != "survives\n" {
		t.Errorf("query: %q", out)
	}
	if out := w.mustCt(t, "exec", "-u", "root", "db", "id", "-un"); out != "root\n" {
		t.Errorf("exec -u root: %q", out)
	}
	// The server answers on the published port from the uplink: an
	// SSLRequest gets PostgreSQL's one-byte "N" (no TLS here).
	if !waitFor(10*time.Second, func() bool {
		var c net.Conn
		if nwInErr(w.ns(w.uplink), func() (err error) { c, err = net.DialTimeout("tcp", nwHostIP+":5432", 2*time.Second); return err }) != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		req := make([]byte, 8)
		binary.BigEndian.PutUint32(req, 8)
		binary.BigEndian.PutUint32(req[4:], 80877103)
		c.Write(req)
		b := make([]byte, 1)
		_, err := io.ReadFull(c, b)
		return err == nil && b[0] == 'N'
	}) {
		t.Error("PostgreSQL is not reachable on the published port from the uplink")
	}
	if logs := w.mustCt(t, "logs", "db"); !strings.Contains(logs, "initializing /var/lib/postgresql/data") {
		t.Errorf("logs: %s", logs)
	}
	// The data is in the named volume: it outlives the container.
	w.rmAndCheck(t, "db", "-f")
	w.mustCt(t, "run", "-d", "--name", "db2", "-v", "pgdata:/var/lib/postgresql/data", img)
	pgReady(t, w, "db2")
	if out := w.mustCt(t, "exec", "db2", "psql", "-tAc", "select v from t"); out != "survives\n" {
		t.Errorf("after rm and a new run: %q", out)
	}
	if logs := w.mustCt(t, "logs", "db2"); strings.Contains(logs, "initializing") {
		t.Errorf("the second server initialised the data again:\n%s", logs)
	}
	// stop sends SIGINT, PostgreSQL's fast shutdown: exit 0.
	w.mustCt(t, "stop", "db2")
	if s := w.format(t, "db2", "{{.State.ExitCode}}"); s != "0" {
		t.Errorf("exit after stop: %s\n%s", s, w.mustCt(t, "logs", "db2"))
	}
	w.rmAndCheck(t, "db2")
	w.assertClean(t, "pgdata")
	w.mustBerth(t, "volume", "rm", "pgdata")
	w.assertClean(t)
}

// TestContainerCrashingServerRestarts: nginx under --init (berth as pid 1,
// so a signal the server does not handle reaches it) crashes on SIGSEGV;
// --restart on-failure:3 brings it back, serving, exactly three times.
func TestContainerCrashingServerRestarts(t *testing.T) {
	w, layout := newServerWorld(t)
	w.mustCt(t, "run", "-d", "--name", "crashy", "--init", "--restart", "on-failure:3", "-p", "8081:80", layout+":nginx")
	addr := nwHostIP + ":8081"
	for i := 0; i < 4; i++ {
		waitHTTP(t, w.ns(w.uplink), addr, "berth-nginx-ok")
		if n := w.format(t, "crashy", "{{.RestartCount}}"); n != strconv.Itoa(i) {
			t.Fatalf("crash %d: restart count %s", i, n)
		}
		started := w.format(t, "crashy", "{{.State.StartedAt}}")
		w.mustCt(t, "kill", "-s", "SEGV", "crashy")
		if i < 3 && !waitFor(30*time.Second, func() bool {
			return w.format(t, "crashy", "{{.State.Status}}") == "running" && w.format(t, "crashy", "{{.State.StartedAt}}") != started
		}) {
			t.Fatalf("not restarted after crash %d: %s", i, w.format(t, "crashy", "{{.State.Status}} {{.RestartCount}}"))
		}
	}
	if !waitFor(15*time.Second, func() bool { return !w.runnerAlive(t, "crashy") }) {
		t.Fatal("the runner is still there after the fourth crash")
	}
	if s := w.format(t, "crashy", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}"); s != "exited 3 139" {
		t.Errorf("after four crashes: %s", s)
	}
	if _, err := httpGet(w.ns(w.uplink), addr); err == nil {
		t.Error("still serving after the restarts ran out")
	}
	w.rmAndCheck(t, "crashy")
	w.assertClean(t)
}
