package integration

// The fault-injection suite (issue 22): berth is SIGKILLed at every named
// step of create, start, exec, delete -f, network create/connect/disconnect/
// rm and container run -d/--rm (BERTH_TEST_KILL_AT, internal/killpoint),
// then the cleanup a user would run (delete -f, disconnect, rm, container
// rm -f) must succeed and leave nothing: no state dir, cgroup on any
// hierarchy, mount, netns file, veth, bridge, nft rule, lease, marker or
// process, while things berth does not own, planted beforehand, stay as
// they were. Each subtest logs its step and what was left (nothing).

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/testutil"
)

// berthNet builds a berth command run in the world's host netns.
func (w *nwWorld) berthCmd(args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--net=" + w.ns(w.host), berthBin}, args...)...)
	cmd.Env = append(os.Environ(), "BERTH_NETWORK_DIR="+w.stateDir, "BERTH_NETNS_DIR="+w.netnsDir)
	return cmd
}

// checkClean runs `network check`, which must find nothing.
func (w *nwWorld) checkClean(t *testing.T, what string) {
	t.Helper()
	if out, err := w.berth("network", "check"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("%s: network check: %v\n%s", what, err, out)
	}
}

var connectSteps = []string{
	"network connect: netns marker written",
	"network connect: netns file linked",
	"network connect: netns identity recorded",
	"network connect: netns mounted",
	"network connect: lease reserved",
	"network connect: veth created",
	"network connect: ports published",
	"network connect: lease saved",
}

// TestFaultKillNetworkConnect (defect 2): `connect --create-netns -p` killed
// at each step, then `disconnect` succeeds and removes the netns, its bind
// mount, the marker, veth, DNAT rule and lease; check is clean; the foreign
// bridge, veth, table and netns are untouched.
func TestFaultKillNetworkConnect(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "fk", "--bridge", w.bridge)
	foreignID := w.addForeign(t)
	before, fid := w.snapshot(t), foreignID()
	for _, step := range connectSteps {
		t.Run(step, func(t *testing.T) {
			runKilled(t, w.berthCmd("network", "connect", "fk", "--netns", "k1", "--create-netns", "-p", "9400:80"), step)
			w.mustBerth(t, "network", "disconnect", "fk", "--netns", "k1")
			after := w.snapshot(t)
			nwSameSnap(t, "after disconnect", before, after)
			w.checkClean(t, "after disconnect")
			if got := foreignID(); got != fid {
				t.Errorf("the foreign netns changed: %s, was %s", got, fid)
			}
			t.Logf("killed at %q; after disconnect: leftovers none (links %q)", step, after.Links)
		})
	}
	// The same kills, recovered by prune instead of disconnect.
	for _, step := range connectSteps {
		t.Run("prune/"+step, func(t *testing.T) {
			runKilled(t, w.berthCmd("network", "connect", "fk", "--netns", "k2", "--create-netns", "-p", "9401:80"), step)
			if step == "network connect: lease saved" {
				w.mustBerth(t, "network", "disconnect", "fk", "--netns", "k2") // a finished connect is not a leak
			} else {
				w.mustBerth(t, "network", "prune")
			}
			nwSameSnap(t, "after prune", before, w.snapshot(t))
			w.checkClean(t, "after prune")
			if got := foreignID(); got != fid {
				t.Errorf("the foreign netns changed: %s, was %s", got, fid)
			}
		})
	}
	w.mustBerth(t, "network", "rm", "fk")
}

// TestFaultRandomKillNetworkConnect: `connect --create-netns -p` SIGKILLed
// after a random delay (between named steps too: inside the netns
// creation, between a link's creation and its alias), 40 times; disconnect
// must leave the host as before each time.
func TestFaultRandomKillNetworkConnect(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "fz", "--bridge", w.bridge)
	foreignID := w.addForeign(t)
	before, fid := w.snapshot(t), foreignID()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	killed := 0
	for i := 0; i < 40; i++ {
		cmd := w.berthCmd("network", "connect", "fz", "--netns", "z1", "--create-netns", "-p", "9450:80")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Intn(150000)) * time.Microsecond)
		cmd.Process.Kill()
		if cmd.Wait() != nil {
			killed++
		}
		w.mustBerth(t, "network", "disconnect", "fz", "--netns", "z1")
		nwSameSnap(t, fmt.Sprintf("iteration %d, after disconnect", i), before, w.snapshot(t))
		w.checkClean(t, fmt.Sprintf("iteration %d", i))
	}
	if got := foreignID(); got != fid {
		t.Errorf("the foreign netns changed: %s, was %s", got, fid)
	}
	t.Logf("40 connects killed at random points (%d before they finished): disconnect left nothing each time", killed)
	w.mustBerth(t, "network", "rm", "fz")
}

// TestFaultRandomKillRuntime: `run -d` and `delete -f` SIGKILLed after a
// random delay, 20 times each; delete -f then leaves nothing.
func TestFaultRandomKillRuntime(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for _, op := range []string{"run -d", "delete -f"} {
		killed := 0
		for i := 0; i < 20; i++ {
			id := r.id()
			sc := newCtScope(r, id, b)
			args := []string{"--root", r.root, "run", "-d", "-b", b, id}
			if op == "delete -f" {
				r.must("run", "-d", "-b", b, id)
				args = []string{"--root", r.root, "delete", "-f", id}
			}
			cmd := exec.Command(berthBin, args...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(rng.Intn(60000)) * time.Microsecond)
			cmd.Process.Kill()
			if cmd.Wait() != nil {
				killed++
			}
			if x := r.run("delete", "-f", id); x.code != 0 {
				t.Errorf("%s, iteration %d: delete -f: %+v", op, i, x)
			}
			assertNone(t, fmt.Sprintf("%s, iteration %d", op, i), sc.leftovers(t))
		}
		t.Logf("%s killed at 20 random points (%d before it finished): delete -f left nothing each time", op, killed)
	}
}

// TestFaultKillNetworkDisconnect: `disconnect` killed at each step, then
// disconnect again finishes the job.
func TestFaultKillNetworkDisconnect(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "fd", "--bridge", w.bridge)
	foreignID := w.addForeign(t)
	before, fid := w.snapshot(t), foreignID()
	for _, step := range []string{
		"network disconnect: ports unpublished",
		"network disconnect: veth removed",
		"network disconnect: netns unmounted",
		"network disconnect: netns removed",
		"network disconnect: lease released",
	} {
		t.Run(step, func(t *testing.T) {
			w.connect(t, "fd", "--netns", "d1", "--create-netns", "-p", "9500:80")
			runKilled(t, w.berthCmd("network", "disconnect", "fd", "--netns", "d1"), step)
			w.mustBerth(t, "network", "disconnect", "fd", "--netns", "d1")
			nwSameSnap(t, "after the second disconnect", before, w.snapshot(t))
			w.checkClean(t, "after the second disconnect")
			if got := foreignID(); got != fid {
				t.Errorf("the foreign netns changed: %s, was %s", got, fid)
			}
			t.Logf("killed at %q; after disconnect: leftovers none", step)
		})
	}
	w.mustBerth(t, "network", "rm", "fd")
}

// TestFaultKillNetworkCreateRm: `network create` and `network rm --force`
// (with a connected endpoint) killed at each step; rm --force afterwards
// leaves the host as it was before the network existed.
func TestFaultKillNetworkCreateRm(t *testing.T) {
	w := nwNewWorld(t, false)
	foreignID := w.addForeign(t)
	before, fid := w.snapshot(t), foreignID()
	for _, step := range []string{
		"network create: definition saved",
		"network create: bridge created",
		"network create: bridge up",
		"network create: rules written",
	} {
		t.Run(step, func(t *testing.T) {
			runKilled(t, w.berthCmd("network", "create", "fc", "--bridge", w.bridge), step)
			if out, err := w.berth("network", "connect", "fc", "--netns", "c0", "--create-netns"); err == nil || !strings.Contains(out, "did not finish") {
				t.Errorf("connect to an unfinished network: %v\n%s", err, out)
			}
			w.mustBerth(t, "network", "rm", "--force", "fc")
			nwSameSnap(t, "after rm", before, w.snapshot(t))
			w.checkClean(t, "after rm")
			// Created again, the create finishes.
			runKilled(t, w.berthCmd("network", "create", "fc", "--bridge", w.bridge), step)
			w.mustBerth(t, "network", "create", "fc", "--bridge", w.bridge)
			w.checkClean(t, "after create again")
			w.mustBerth(t, "network", "rm", "fc")
			nwSameSnap(t, "after create again and rm", before, w.snapshot(t))
			if got := foreignID(); got != fid {
				t.Errorf("the foreign netns changed: %s, was %s", got, fid)
			}
			t.Logf("killed at %q; after rm --force: leftovers none", step)
		})
	}
	for _, step := range []string{
		"network rm: rules removed",
		"network disconnect: veth removed",
		"network disconnect: netns removed",
		"network rm: endpoints removed",
		"network rm: bridge removed",
	} {
		t.Run(step, func(t *testing.T) {
			w.mustBerth(t, "network", "create", "fr", "--bridge", w.bridge)
			w.connect(t, "fr", "--netns", "r1", "--create-netns", "-p", "9600:80")
			// A connect killed before its lease: rm must sweep what it made too.
			runKilled(t, w.berthCmd("network", "connect", "fr", "--netns", "r2", "--create-netns"), "network connect: netns mounted")
			runKilled(t, w.berthCmd("network", "rm", "--force", "fr"), step)
			w.mustBerth(t, "network", "rm", "--force", "fr")
			nwSameSnap(t, "after rm --force", before, w.snapshot(t))
			w.checkClean(t, "after rm --force")
			if got := foreignID(); got != fid {
				t.Errorf("the foreign netns changed: %s, was %s", got, fid)
			}
			t.Logf("killed at %q; after rm --force: leftovers none", step)
		})
	}
}

// TestFaultStaleMarkerNeverOwnsForeignNetns (defect 3): a connect killed
// after writing its marker, before the netns exists; then another tool
// makes a netns of that name. check must not call it berth's, prune must
// not delete it; both report and remove only the stale marker. An empty
// or torn marker file is treated the same way.
func TestFaultStaleMarkerNeverOwnsForeignNetns(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "fm", "--bridge", w.bridge)
	runKilled(t, w.berthCmd("network", "connect", "fm", "--netns", "m1", "--create-netns"), "network connect: netns marker written")
	other := filepath.Join(w.netnsDir, "m1")
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatalf("the killed connect made %s: %v", other, err)
	}
	pinNetns(t, other)
	id := func() string {
		b, _ := exec.Command("stat", "-L", "-c", "%d:%i", other).Output()
		return strings.TrimSpace(string(b))
	}
	want := id()
	// Torn and empty markers, as a kill mid-write on another filesystem or a
	// marker of an older berth could leave.
	markers := filepath.Join(w.stateDir, ".netns")
	os.WriteFile(filepath.Join(markers, "torn"), []byte(`{"netns":"/x`), 0o600)
	os.WriteFile(filepath.Join(markers, "empty"), nil, 0o600)
	out, err := w.berth("network", "check")
	if err == nil || strings.Contains(out, "leaked-netns") || strings.Count(out, "stale-marker") != 3 {
		t.Errorf("check: err=%v\n%s", err, out)
	}
	out = w.mustBerth(t, "network", "prune")
	if strings.Contains(out, "leaked-netns") || strings.Count(out, "stale-marker") != 3 {
		t.Errorf("prune:\n%s", out)
	}
	if got := id(); got != want || got == "" {
		t.Fatalf("prune touched the foreign netns: %q, was %q", got, want)
	}
	if ents, _ := os.ReadDir(markers); len(ents) != 0 {
		t.Errorf("markers left: %v", ents)
	}
	w.checkClean(t, "after prune")
	// disconnect of that name is not connect's either: the netns stays.
	w.mustBerth(t, "network", "disconnect", "fm", "--netns", "m1")
	if got := id(); got != want {
		t.Fatalf("disconnect touched the foreign netns: %q, was %q", got, want)
	}
	// connect --create-netns joins it, and its disconnect keeps it.
	w.connect(t, "fm", "--netns", "m1", "--create-netns")
	w.mustBerth(t, "network", "disconnect", "fm", "--netns", "m1")
	if got := id(); got != want {
		t.Fatalf("connect/disconnect of the foreign netns removed it: %q, was %q", got, want)
	}
	w.checkClean(t, "at the end")
	w.mustBerth(t, "network", "rm", "fm")
}

// TestFaultConnectContainerPidReuse (issue 21, item 7): `network connect
// --container ID` after the container's init died and its pid was reused by
// another process with a network namespace of its own. berth must refuse
// (the runtime's start-time check) and never wire the other process.
func TestFaultConnectContainerPidReuse(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "pr", "--bridge", w.bridge)
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	id := r.id()
	r.must("create", "-b", b, id)
	pid := initPid(t, r, id)
	connect := func() (string, error) {
		return w.berth("--root", r.root, "network", "connect", "pr", "--container", id, "--format", "json")
	}
	// While init lives, connect works (and disconnect undoes it).
	if out, err := connect(); err != nil {
		t.Fatalf("connect to the live container: %v\n%s", err, out)
	}
	w.mustBerth(t, "--root", r.root, "network", "disconnect", "pr", "--container", id)
	// Kill init; start a process in a new netns under the very same pid.
	killWait(t, pid)
	victim := reusePid(t, pid, "unshare", "--net", "sleep", "100")
	victimNS, _ := os.Readlink("/proc/" + itoa(pid) + "/ns/net")
	out, err := connect()
	if err == nil || !strings.Contains(out, "container not running") {
		t.Errorf("connect --container after the pid was reused: err=%v\n%s", err, out)
	}
	links, _ := exec.Command("nsenter", "--net=/proc/"+itoa(pid)+"/ns/net", "ip", "-o", "link").Output()
	if strings.Contains(string(links), "eth0") {
		t.Errorf("the process that reused the pid was wired:\n%s", links)
	}
	if ns, _ := os.Readlink("/proc/" + itoa(pid) + "/ns/net"); ns != victimNS || victim.Process.Signal(syscall.Signal(0)) != nil {
		t.Errorf("the victim changed: %s (was %s)", ns, victimNS)
	}
	w.checkClean(t, "after the refused connect")
	r.must("delete", "-f", id)
	w.mustBerth(t, "network", "rm", "pr")
}

// TestFaultKillRuntime: create, start, run -d, exec and delete -f killed at
// each named phase (the runtime's debug phases), then delete -f leaves no
// state dir, cgroup (any hierarchy), mount, container or berth process, and
// the id can be used again.
func TestFaultKillRuntime(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	brief := testutil.Bundle(t, nil, "true")
	hooked := testutil.Bundle(t, func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{Poststart: []specs.Hook{{Path: "/bin/true"}}}
	}, "sleep", "100")
	createSteps := []string{
		"load config, state dir",
		"exec.fifo, cgroup, limits",
		"spawn init",
		"plan compiled and sent",
		"network; placed",
		"init setup until ready",
		"state, pid file",
	}
	type tc struct {
		name  string
		setup func(id string) // before the killed command
		cmd   func(id string) []string
		steps []string
		env   []string
	}
	cases := []tc{
		{"create", nil, func(id string) []string { return []string{"create", "-b", b, id} }, createSteps, nil},
		{"run -d", nil, func(id string) []string { return []string{"run", "-d", "-b", b, id} }, append(append([]string(nil), createSteps...), "process released"), nil},
		{"start", func(id string) { r.must("create", "-b", b, id) }, func(id string) []string { return []string{"start", id} }, []string{"load state", "process released"}, nil},
		{"start/poststart hook", func(id string) { r.must("create", "-b", hooked, id) }, func(id string) []string { return []string{"start", id} }, []string{"poststart hooks"}, nil},
		{"exec", func(id string) { r.must("run", "-d", "-b", b, id) }, func(id string) []string { return []string{"exec", id, "sleep", "100"} },
			[]string{"load state", "exec process started, placed and ready"}, nil},
		{"exec/ran", func(id string) { r.must("run", "-d", "-b", b, id) }, func(id string) []string { return []string{"exec", id, "true"} }, []string{"process ran"}, nil},
		{"delete -f", func(id string) { r.must("run", "-d", "-b", b, id) }, func(id string) []string { return []string{"delete", "-f", id} },
			[]string{"load state", "killed", "cgroup removed", "state dir removed"}, nil},
		{"delete -f/created", func(id string) { r.must("create", "-b", b, id) }, func(id string) []string { return []string{"delete", "-f", id} },
			[]string{"load state", "killed", "cgroup removed"}, nil},
		{"run", nil, func(id string) []string { return []string{"run", "-b", b, id} }, []string{"spawn init", "process released"}, nil},
		{"run/exited", nil, func(id string) []string { return []string{"run", "-b", brief, id} }, []string{"process ran", "cgroup removed", "state dir removed"}, nil},
	}
	for _, c := range cases {
		for _, step := range c.steps {
			t.Run(c.name+"/"+step, func(t *testing.T) {
				id := r.id()
				sc := newCtScope(r, id, b)
				if c.setup != nil {
					c.setup(id)
				}
				cmd := exec.Command(berthBin, append([]string{"--root", r.root}, c.cmd(id)...)...)
				cmd.Env = append(os.Environ(), c.env...)
				runKilled(t, cmd, step)
				if x := r.run("delete", "-f", id); x.code != 0 {
					t.Errorf("delete -f after the kill: %+v", x)
				}
				left := sc.leftovers(t)
				assertNone(t, "after delete -f", left)
				// The id is free again.
				r.must("create", "-b", b, id)
				r.must("delete", "-f", id)
				assertNone(t, "after reusing the id", sc.leftovers(t))
				t.Logf("%s killed at %q; after delete -f: %d leftovers", c.name, step, len(left))
			})
		}
	}
}

// TestFaultKillContainerRun: `container run -d` and `container run --rm`
// killed at each step of the client, its monitor, the runtime and the
// network attach; `container rm -f` then leaves no record, bundle mount,
// runtime state, cgroup, process, endpoint, veth or rule.
func TestFaultKillContainerRun(t *testing.T) {
	w := newCtWorld(t)
	// The default network exists before the snapshot: run's first use
	// creates it, which is network create's matrix.
	w.mustCt(t, "run", "--home", w.home, "--rm", "--name", "warm", w.image, "sh", "-c", "true")
	before := w.snapshot(t)
	prepare := []string{"container run: record written", "container run: bundle mounted", "container run: config written"}
	inCreate := []string{
		"exec.fifo, cgroup, limits",
		"spawn init",
		"network connect: lease reserved",
		"network connect: veth created",
		"network connect: ports published",
		"network connect: lease saved",
		"network; placed",
		"state, pid file",
		"process released",
	}
	steps := append(append([]string(nil), prepare...), inCreate...)
	// The teardown of a foreground --rm run, after its process exited.
	teardown := []string{"process ran", "cgroup removed", "network detached", "state dir removed"}
	for _, mode := range []string{"-d", "--rm", "--rm/exited"} {
		steps := steps
		if mode == "--rm/exited" {
			steps = teardown
		}
		for _, step := range steps {
			t.Run(mode+"/"+step, func(t *testing.T) {
				name := "k" + strings.NewReplacer(" ", "", ":", "", ",", "", ";", "").Replace(step)
				if len(name) > 40 {
					name = name[:40]
				}
				beforePids := berthPids()
				// Whatever happens below, the next step starts from a clean home.
				t.Cleanup(func() { w.ct("rm", "--home", w.home, "-f", name) })
				script := "sleep 100"
				if mode == "--rm/exited" {
					script = "exit 0"
				}
				args := []string{"--root", w.root, "container", "run", "--home", w.home, strings.TrimSuffix(mode, "/exited"), "--name", name, "-p", "8480:80", w.image, "sh", "-c", script}
				if mode == "-d" && !strings.HasPrefix(step, "container run:") {
					runKilledMonitor(t, w.berthCmd(args...), step)
				} else {
					runKilled(t, w.berthCmd(args...), step)
				}
				if out, err := w.ct("rm", "--home", w.home, "-f", name); err != nil {
					t.Errorf("container rm -f after the kill: %v\n%s", err, out)
				}
				var left []string
				if ents, _ := os.ReadDir(w.home); len(ents) != 0 {
					left = append(left, "container dir(s) in home")
				}
				if ents, _ := os.ReadDir(w.root); len(ents) != 0 {
					left = append(left, "runtime state")
				}
				for _, m := range mountsUnder(w.home) {
					left = append(left, "mount "+m)
				}
				for _, p := range procsUnder(w.home) {
					left = append(left, "container process "+p)
				}
				for _, d := range cgroupDirs(t, "", name) {
					if _, err := os.Stat(d); err == nil {
						left = append(left, "cgroup "+d)
					}
				}
				for pid, cmd := range berthPids() {
					if _, ok := beforePids[pid]; !ok {
						left = append(left, "berth process "+itoa(pid)+" "+cmd)
					}
				}
				assertNone(t, "after container rm -f", left)
				nwSameSnap(t, "network after container rm -f", before, w.snapshot(t))
				w.checkClean(t, "after container rm -f")
				t.Logf("container run %s killed at %q; after rm -f: %d leftovers", mode, step, len(left))
			})
		}
	}
}

// TestFaultNonEmptyCgroupRefused (defect 1): two configs with one
// cgroupsPath. runc refuses the second create ("container's cgroup is not
// empty: 1 process(es) found"); deleting it must not take the first's
// cgroup or leave a state without its cgroup.
func TestFaultNonEmptyCgroupRefused(t *testing.T) {
	r := newRT(t)
	cg := "/i22-shared-" + itoa(os.Getpid())
	b := testutil.Bundle(t, func(s *specs.Spec) { s.Linux.CgroupsPath = cg }, "sleep", "100")
	a, bID := r.id(), r.id()
	r.must("run", "-d", "-b", b, a)
	x := r.run("run", "-d", "-b", b, bID)
	if x.code == 0 {
		// Both inits go first: either delete alone cannot empty the cgroup.
		for _, id := range []string{a, bID} {
			r.must("kill", id, "KILL")
			waitStatus(t, r, id, "stopped")
		}
		r.must("delete", a)
		r.must("delete", bID)
		t.Fatal("a second container was created in the first one's cgroup")
	}
	if x.code != 1 || !strings.Contains(x.stderr, "container's cgroup is not empty: 1 process(es) found") {
		t.Errorf("second create: %+v", x)
	}
	if _, err := os.Stat(filepath.Join(r.root, bID)); !os.IsNotExist(err) {
		t.Errorf("the refused create left its state dir")
	}
	if st := status(t, r, a); st != "running" {
		t.Errorf("the first container after the refused create: %s", st)
	}
	for _, d := range cgroupDirs(t, cg, a) {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("the refused create removed the first's cgroup %s", d)
		}
	}
	r.must("delete", "-f", a)
	sc := &ctScope{r: r, id: a, bundle: b, cgroupsPath: cg, before: berthPids()}
	assertNone(t, "after delete", sc.leftovers(t))
}

// TestFaultDeleteKeepsStateUntilCgroupGone: a cgroup delete cannot remove
// (a process outside the container's pid namespace holds it) makes delete
// fail and keep the state, so a later delete can finish; before, the state
// went first and the cgroup was lost.
func TestFaultDeleteKeepsStateUntilCgroupGone(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	holder := exec.Command("sleep", "100")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	var paths map[string]string
	raw, _ := os.ReadFile(filepath.Join(r.root, id, "state.json"))
	var st struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	json.Unmarshal(raw, &st)
	paths = st.CgroupPaths
	if err := os.WriteFile(filepath.Join(paths["memory"], "cgroup.procs"), []byte(itoa(holder.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	// delete -f kills init (its pid namespace) but not the holder, which
	// is in the cgroup from outside: the cgroup cannot go.
	x := r.run("delete", "-f", id)
	if x.code == 0 || !strings.Contains(x.stderr, "remove cgroup") {
		t.Fatalf("delete with a held cgroup: %+v", x)
	}
	if _, err := os.Stat(filepath.Join(r.root, id, "state.json")); err != nil {
		t.Fatalf("the state was removed although the cgroup is left: %v", err)
	}
	holder.Process.Kill()
	holder.Wait()
	r.must("delete", "-f", id)
	assertNone(t, "after the second delete", newCtScope(r, id, b).leftovers(t))
}
