package clients

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"berth/internal/testutil"
)

// The CRI suite: Kubernetes' conformance tests for container runtimes
// (critest from sigs.k8s.io/cri-tools, built from the Go module proxy)
// against Debian's containerd 1.6 with its CRI plugin, whose runc v2 shim
// is pointed at berth for the "berth" runtime handler and at Debian's runc
// for "runc". Both handlers run the whole conformance set in the same run,
// and every spec that passes with runc must pass with berth.
//
// Everything lives in a network namespace the test creates: containerd, the
// pods' CNI bridge, the local docker-registry on 127.0.0.1:5000 that serves
// the images critest pulls (built offline here in place of registry.k8s.io's),
// and critest itself. The host's links, routes, firewall and sysctls are
// never touched.

// criToolsVersion is the cri-tools release the suite runs.
const criToolsVersion = "v1.37.0"

// criRegistry is the registry inside the suite's network namespace. It is
// containerd's mirror for every registry critest pulls from (criMirrored),
// so image names stay what critest asks for: critest's -registry-prefix
// would drop their tags.
const criRegistry = "127.0.0.1:5000"

// criMirrored are the registries critest's images come from.
var criMirrored = []string{"registry.k8s.io", "k8s.gcr.io", "gcr.io"}

// criHandlers are the runtime handlers critest runs with: berth first.
var criHandlers = []string{"berth", "runc"}

// buildCRITools builds critest (a ginkgo test binary) and crictl from the
// cri-tools module, downloaded through the Go module proxy.
func buildCRITools(t *testing.T, dir string) (critest, crictl string) {
	t.Helper()
	requireTool(t, "go")
	out, err := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/cri-tools@"+criToolsVersion).Output()
	if err != nil {
		t.Fatalf("go mod download sigs.k8s.io/cri-tools@%s: %v\n%s", criToolsVersion, err, out)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download: no module dir in %s (%v)", out, err)
	}
	critest, crictl = filepath.Join(dir, "critest"), filepath.Join(dir, "crictl")
	for _, args := range [][]string{
		{"test", "-c", "-o", critest, "./cmd/critest"},
		{"build", "-o", crictl, "./cmd/crictl"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = mod.Dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), mod.Dir, err, b)
		}
	}
	return critest, crictl
}

// criEnv is the suite's world: a network namespace with a registry and a
// containerd in it. containerd has an IPC namespace of its own too, which
// critest joins: critest's host-IPC specs make a shared memory segment
// "on the host" (ipcmk), and it must not outlive the suite.
type criEnv struct {
	t          *testing.T
	dir        string
	netns      string // name under /run/netns
	sock       string // containerd's socket
	crictl     string
	containerd int // containerd's pid, whose IPC namespace critest joins
}

// inNetns prefixes argv so that it runs in the suite's network namespace
// (nsenter --net only: ip netns exec would remount /sys and lose the
// cgroup mounts containerd needs) and, once containerd runs, in its IPC
// namespace.
func (e *criEnv) inNetns(argv ...string) []string {
	pre := []string{"nsenter", "--net=/run/netns/" + e.netns}
	if e.containerd != 0 {
		pre = append(pre, fmt.Sprintf("--ipc=/proc/%d/ns/ipc", e.containerd))
	}
	return append(append(pre, "--"), argv...)
}

// startDaemon starts argv in the namespace with its output in logName, and
// stops it (SIGTERM, then SIGKILL) at cleanup. It returns the daemon's pid
// (nsenter and unshare exec what they run, so it is the daemon's own).
func (e *criEnv) startDaemon(logName string, argv ...string) int {
	e.t.Helper()
	cmd := startLogged(e.t, filepath.Join(e.dir, logName), e.inNetns(argv...)...)
	e.t.Cleanup(func() { stopDaemon(cmd, 20*time.Second) })
	return cmd.Process.Pid
}

// logTail is the end of one of the suite's log files, for failure messages.
func (e *criEnv) logTail(name string, n int) string { return logTail(filepath.Join(e.dir, name), n) }

func startCRIEnv(t *testing.T) *criEnv {
	t.Helper()
	// containerd's socket must fit sun_path: keep the dir short.
	dir, err := os.MkdirTemp("", "bcri-")
	if err != nil {
		t.Fatal(err)
	}
	e := &criEnv{t: t, dir: dir, netns: fmt.Sprintf("berth-cri-%d", os.Getpid()), sock: filepath.Join(dir, "c.sock")}
	t.Cleanup(func() {
		// BERTH_CRITEST_LOGS keeps critest's, containerd's and the
		// registry's logs and the JSON reports.
		if keep := os.Getenv("BERTH_CRITEST_LOGS"); keep != "" {
			_ = os.MkdirAll(keep, 0o755)
			for _, pat := range []string{"*.log", "report-*.json"} {
				ms, _ := filepath.Glob(filepath.Join(dir, pat))
				for _, m := range ms {
					if b, err := os.ReadFile(m); err == nil {
						_ = os.WriteFile(filepath.Join(keep, filepath.Base(m)), b, 0o644)
					}
				}
			}
		}
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	})
	// Fixed host paths containerd and CNI use; critest's pods go below the
	// cgroup parent it asks for (/test.slice: containerd 1.6 does not
	// answer critest's RuntimeConfig call, so it assumes systemd's slice).
	removeIfCreated(t, "/run/containerd", "/run/containerd/s", "/run/containerd/fifo", "/var/lib/cni", "/var/lib/cni/results",
		"/run/netns")
	removeIfCreated(t, cgroupDirs("test.slice")...)
	if b, err := exec.Command("ip", "netns", "add", e.netns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", e.netns, err, b)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", e.netns).Run() })
	if b, err := exec.Command("ip", "-n", e.netns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v\n%s", err, b)
	}
	for _, d := range []string{"registry", "cni", "ipam", "opt", "state-berth", "state-runc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"registry.yml": fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
			filepath.Join(dir, "registry"), criRegistry),
		// The pods' network: a bridge in the suite's namespace, addresses
		// from a private range stored in the suite's dir.
		"cni/10-berth-cri.conflist": fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "berth-cri", "plugins": [
  {"type": "bridge", "bridge": "bcri0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.231.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
`, filepath.Join(dir, "ipam")),
		"config.toml": criContainerdConfig(dir, e.sock),
	}
	// The only host of each mirrored registry is the local one (as mirror
	// and as server): nothing is ever asked of the real registries, which
	// the namespace has no route to anyway.
	for _, host := range criMirrored {
		files["certs.d/"+host+"/hosts.toml"] = fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", criRegistry, criRegistry)
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.startDaemon("registry.log", "docker-registry", "serve", filepath.Join(dir, "registry.yml"))
	if !waitFor(15*time.Second, func() bool {
		argv := e.inNetns("busybox", "wget", "-q", "-O", "/dev/null", "http://"+criRegistry+"/v2/")
		return exec.Command(argv[0], argv[1:]...).Run() == nil
	}) {
		t.Fatalf("docker-registry did not come up:\n%s", e.logTail("registry.log", 20))
	}
	pushCRIImages(t, e)
	// Cleanups run last first: the pods go while containerd runs, then
	// containerd, then whatever a killed shim left.
	t.Cleanup(func() { e.cleanupShims() })
	e.containerd = e.startDaemon("containerd.log", "unshare", "--ipc", "containerd", "--config", filepath.Join(dir, "config.toml"))
	t.Cleanup(func() {
		if e.crictl != "" {
			runCmd(t, nil, "", e.inNetns(e.crictlArgv("rmp", "--all", "--force")...)...)
		}
	})
	return e
}

// criContainerdConfig is containerd 1.6 with the CRI plugin, every path in
// dir, and two runtime handlers on the runc v2 shim: berth (the wrapper in
// front of the runtime under test) and runc (Debian's).
func criContainerdConfig(dir, sock string) string {
	cri := `plugins."io.containerd.grpc.v1.cri"`
	runtime := func(name, bin string) string {
		return fmt.Sprintf(`[%s.containerd.runtimes.%s]
  runtime_type = "io.containerd.runc.v2"
[%s.containerd.runtimes.%s.options]
  BinaryName = %q
  Root = %q
`, cri, name, cri, name, bin, filepath.Join(dir, "state-"+name))
	}
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[%s]
  sandbox_image = "registry.k8s.io/pause:3.9"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which CI machines may
  # lack; this keeps the sandbox's at containerd's own, for both handlers.
  restrict_oom_score_adj = true
  enable_selinux = false
[%s.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
%s%s[%s.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = %q
[%s.registry]
  config_path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"),
		cri, cri, runtime("berth", runtimeBin), runtime("runc", "/usr/sbin/runc"),
		cri, filepath.Join(dir, "cni"), cri, filepath.Join(dir, "certs.d"))
}

// crictlArgv is crictl against the suite's containerd.
func (e *criEnv) crictlArgv(args ...string) []string {
	return append([]string{e.crictl, "--runtime-endpoint", "unix://" + e.sock, "--image-endpoint", "unix://" + e.sock, "--timeout", "60s"}, args...)
}

// cleanupShims kills shims still running for this containerd and deletes
// what the runtimes still know (a killed shim leaves its container).
func (e *criEnv) cleanupShims() {
	killPids(pidsWithArg(e.sock))
	for _, h := range criHandlers {
		bin := map[string]string{"berth": realBin, "runc": "/usr/sbin/runc"}[h]
		roots, _ := filepath.Glob(filepath.Join(e.dir, "state-"+h, "*"))
		for _, root := range roots {
			deleteRuntimeContainers(bin, root)
		}
	}
}

// specResult is one critest spec's outcome.
type specResult struct {
	name    string
	state   string // passed, failed, skipped, pending, panicked, timedout, ...
	failure string
}

// runCritest runs the conformance set (or, with bench, the benchmarks) for
// one runtime handler and returns every spec's outcome, keyed by name.
func (e *criEnv) runCritest(t *testing.T, critest, handler string, bench bool, extra ...string) map[string]specResult {
	t.Helper()
	report := filepath.Join(e.dir, "report-"+handler+".json")
	args := []string{critest,
		"-runtime-endpoint", "unix://" + e.sock, "-image-endpoint", "unix://" + e.sock,
		"-runtime-handler", handler,
		"-ginkgo.json-report", report, "-ginkgo.no-color", "-ginkgo.timeout", "2h",
	}
	if bench {
		args = append(args, "-benchmark")
	}
	args = append(args, extra...)
	logName := "critest-" + handler + ".log"
	logf, err := os.Create(filepath.Join(e.dir, logName))
	if err != nil {
		t.Fatal(err)
	}
	argv := e.inNetns(args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	// critest makes temp dirs for pod logs and seccomp profiles.
	cmd.Dir = e.dir
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TMPDIR=" + e.dir}
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	err = cmd.Run()
	logf.Close()
	t.Logf("critest with handler %s: %s (exit: %v)", handler, time.Since(start).Round(time.Second), err)
	b, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("critest %s wrote no report (%v, %v):\n%s", handler, err, rerr, e.logTail(logName, 60))
	}
	res, perr := parseGinkgoReport(b)
	if perr != nil {
		t.Fatalf("critest %s report: %v", handler, perr)
	}
	return res
}

// parseGinkgoReport reads ginkgo v2's JSON report: one object per suite,
// each with its spec reports.
func parseGinkgoReport(b []byte) (map[string]specResult, error) {
	var suites []struct {
		SpecReports []struct {
			ContainerHierarchyTexts []string
			LeafNodeText            string
			LeafNodeType            string
			State                   string
			Failure                 *struct{ Message string }
		}
	}
	if err := json.Unmarshal(b, &suites); err != nil {
		return nil, err
	}
	out := map[string]specResult{}
	for _, s := range suites {
		for _, r := range s.SpecReports {
			if r.LeafNodeType != "It" {
				continue // suite-level setup nodes
			}
			name := strings.Join(append(append([]string{}, r.ContainerHierarchyTexts...), r.LeafNodeText), " ")
			res := specResult{name: name, state: r.State}
			if r.Failure != nil {
				res.failure = r.Failure.Message
			}
			out[name] = res
		}
	}
	return out, nil
}

// counts tallies spec states.
func counts(res map[string]specResult) map[string]int {
	c := map[string]int{}
	for _, r := range res {
		c[r.state]++
	}
	return c
}

// firstLine is the first line of s, cut to n bytes.
func firstLine(s string, n int) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// criMinRuncPassed is how many conformance specs runc passes here at
// least (90 of 142 when measured; 48 are skipped by critest itself). Fewer
// means the suite's world is broken (an image, the network), not that berth
// is as good as runc.
const criMinRuncPassed = 85

// setupCRI gates the CRI tests (scripts/test.sh runs them as their own step
// with BERTH_CRITEST=1: they take minutes and time-sensitive specs do
// better without other packages' tests beside them), builds critest and
// crictl and starts the suite's world.
func setupCRI(t *testing.T, gate string) (*criEnv, string) {
	t.Helper()
	if os.Getenv(gate) != "1" {
		t.Skipf("set %s=1 to run (scripts/test.sh does, in a step of its own)", gate)
	}
	testutil.RequireRoot(t)
	requireTool(t, "containerd", "containerd-shim-runc-v2", "runc", "docker-registry", "nsenter", "unshare", "ip", "busybox", "iptables", "ipcmk")
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		requireTool(t, "/usr/lib/cni/bridge")
	}
	start := time.Now()
	critest, crictl := buildCRITools(t, t.TempDir())
	t.Logf("built critest and crictl %s in %s", criToolsVersion, time.Since(start).Round(time.Second))
	e := startCRIEnv(t)
	e.crictl = crictl
	if !waitFor(30*time.Second, func() bool { return runCmd(t, nil, "", e.inNetns(e.crictlArgv("version")...)...).code == 0 }) {
		t.Fatalf("containerd's CRI did not come up:\n%s", e.logTail("containerd.log", 40))
	}
	return e, critest
}

// TestCRI runs critest's conformance set with the runc and the berth runtime
// handler of one containerd, and fails for every spec that passes with runc
// and not with berth. It also records, in the log, the specs that fail with
// both (features containerd 1.6 does not have, images that cannot be rebuilt
// offline) and why. BERTH_CRITEST_FOCUS narrows the run to the specs whose
// names match (ginkgo.focus), for work on one spec.
func TestCRI(t *testing.T) {
	e, critest := setupCRI(t, "BERTH_CRITEST")
	var extra []string
	if f := os.Getenv("BERTH_CRITEST_FOCUS"); f != "" {
		extra = append(extra, "-ginkgo.focus", f)
	}
	results := map[string]map[string]specResult{}
	for _, h := range criHandlers {
		results[h] = e.runCritest(t, critest, h, false, extra...)
	}
	berth, runc := results["berth"], results["runc"]
	t.Logf("critest %s conformance: runc %v, berth %v", criToolsVersion, counts(runc), counts(berth))
	var names []string
	for n := range runc {
		names = append(names, n)
	}
	sort.Strings(names)
	var both []string
	for _, n := range names {
		r, b := runc[n], berth[n]
		switch {
		case r.state == "passed" && b.state != "passed":
			t.Errorf("passes with runc, %s with berth: %s\n    %s", b.state, n, firstLine(b.failure, 400))
		case r.state != "passed" && r.state != "skipped" && b.state != "passed":
			both = append(both, fmt.Sprintf("%s (runc %s, berth %s): %s", n, r.state, b.state, firstLine(r.failure, 200)))
		}
	}
	if len(both) > 0 {
		t.Logf("%d specs fail with both runtimes:\n  %s", len(both), strings.Join(both, "\n  "))
	}
	if len(berth) != len(runc) {
		t.Errorf("critest ran %d specs with berth and %d with runc", len(berth), len(runc))
	}
	if n := counts(runc)["passed"]; len(extra) == 0 && n < criMinRuncPassed {
		t.Errorf("runc passed only %d specs (at least %d pass here): the suite's images or network are broken", n, criMinRuncPassed)
	}
	if t.Failed() {
		t.Logf("containerd log (tail):\n%s", e.logTail("containerd.log", 40))
	}
}

// TestCRIBenchmark is `critest -benchmark`'s pod and container lifecycle
// benchmarks for both handlers, in alternating rounds, reported as medians
// and the ratio berth/runc per CRI operation (bench/cri). It asserts
// nothing about time; BERTH_CRITEST_BENCH=1 runs it, BERTH_CRITEST_BENCH_N
// sets the samples per round (default 20).
func TestCRIBenchmark(t *testing.T) {
	e, critest := setupCRI(t, "BERTH_CRITEST_BENCH")
	n := 20
	if v := os.Getenv("BERTH_CRITEST_BENCH_N"); v != "" {
		fmt.Sscan(v, &n)
	}
	params := filepath.Join(e.dir, "bench.yml")
	if err := os.WriteFile(params, []byte(fmt.Sprintf("containersNumber: %d\ncontainersNumberParallel: 1\npodsNumber: %d\npodsNumberParallel: 1\n", n, n)), 0o644); err != nil {
		t.Fatal(err)
	}
	// op -> handler -> durations (ns); perRound: op -> "round handler" medians
	samples := map[string]map[string][]int64{}
	perRound := map[string][]string{}
	var ops []string
	median := func(v []int64) float64 {
		if len(v) == 0 {
			return 0
		}
		c := append([]int64(nil), v...)
		sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
		return float64(c[len(c)/2]) / 1e6
	}
	for round, h := range []string{"berth", "runc", "runc", "berth"} {
		out := filepath.Join(e.dir, fmt.Sprintf("bench-%d-%s", round, h))
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		res := e.runCritest(t, critest, h, true, "-benchmarking-params-file", params, "-benchmarking-output-dir", out,
			"-ginkgo.skip", "Image|from scratch")
		for name, r := range res {
			if r.state != "passed" && r.state != "skipped" {
				t.Fatalf("benchmark %q with %s: %s\n%s", name, h, r.state, firstLine(r.failure, 400))
			}
		}
		for _, f := range []string{"pod_benchmark_data.json", "container_benchmark_data.json"} {
			b, err := os.ReadFile(filepath.Join(out, f))
			if err != nil {
				t.Fatalf("benchmark results of %s: %v", h, err)
			}
			var set struct {
				OperationsNames []string
				Datapoints      []struct{ OperationsDurationsNs []int64 }
			}
			if err := json.Unmarshal(b, &set); err != nil {
				t.Fatal(err)
			}
			for i, op := range set.OperationsNames {
				var round []int64
				for _, d := range set.Datapoints {
					if i < len(d.OperationsDurationsNs) {
						round = append(round, d.OperationsDurationsNs[i])
					}
				}
				if samples[op] == nil {
					samples[op] = map[string][]int64{}
					ops = append(ops, op)
				}
				samples[op][h] = append(samples[op][h], round...)
				perRound[op] = append(perRound[op], fmt.Sprintf("%s %.1f", h, median(round)))
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "critest %s -benchmark, %d samples per handler and operation (median ms):\n", criToolsVersion, 2*n)
	fmt.Fprintf(&b, "%-16s %10s %10s %8s\n", "operation", "berth", "runc", "ratio")
	for _, op := range ops {
		bm, rm := median(samples[op]["berth"]), median(samples[op]["runc"])
		ratio := 0.0
		if rm > 0 {
			ratio = bm / rm
		}
		fmt.Fprintf(&b, "%-16s %10.1f %10.1f %7.2fx   rounds: %s\n", op, bm, rm, ratio, strings.Join(perRound[op], ", "))
	}
	t.Log(b.String())
	if p := os.Getenv("BERTH_CRITEST_BENCH_OUT"); p != "" {
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}
