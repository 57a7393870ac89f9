package integration

import (
	"encoding/json"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/testutil"
)

// §6 of the security reference: reliability behaviours a runtime is trusted
// with (same-id concurrency, crash mid-create, stale state, signals).

func cgroupLeft(id string) bool {
	matches, _ := filepath.Glob("/sys/fs/cgroup/*/" + id)
	m2, _ := filepath.Glob("/sys/fs/cgroup/" + id)
	return len(matches)+len(m2) > 0
}

// TestReliability_SameIDConcurrentCreate (§6.2): 32 parallel creates of one
// id: exactly one wins, the others say the id exists, nothing leaks.
func TestReliability_SameIDConcurrentCreate(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	id := r.id()
	const n = 32
	var wg sync.WaitGroup
	res := make([]result, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res[i] = r.run("create", "-b", b, id)
		}(i)
	}
	wg.Wait()
	ok := 0
	for _, x := range res {
		switch {
		case x.code == 0:
			ok++
		case !strings.Contains(x.stderr, "container with given ID already exists"):
			t.Errorf("losing create: %+v", x)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d creates of one id succeeded, want exactly 1", ok, n)
	}
	if st := status(t, r, id); st != "created" {
		t.Errorf("status after the race: %s", st)
	}
	r.must("delete", "-f", id)
	if cgroupLeft(id) {
		t.Errorf("cgroup of %s left after delete", id)
	}
	if p := procsUnder(filepath.Join(b, "rootfs")); len(p) != 0 {
		t.Errorf("processes left in the rootfs: %v", p)
	}
}

// TestReliability_ListDuringDelete (§6.2): `list` and `state` while
// containers are deleted (and `delete -f` racing `start`) never fail with
// a half-read state ("unexpected end of JSON") or a spurious ENOENT.
func TestReliability_ListDuringDelete(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	var ids []string
	for i := 0; i < 8; i++ {
		id := r.id()
		r.must("create", "-b", b, id)
		ids = append(ids, id)
	}
	stop := make(chan struct{})
	var bad []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			x := r.run("list", "-f", "json")
			var v []map[string]any
			if x.code != 0 || json.Unmarshal([]byte(x.stdout), &v) != nil {
				mu.Lock()
				bad = append(bad, x.stdout+x.stderr)
				mu.Unlock()
			}
		}
	}()
	for i, id := range ids {
		if i%2 == 0 {
			go r.run("start", id) // races the delete below
		}
		x := r.run("delete", "-f", id)
		if x.code != 0 {
			t.Errorf("delete -f %s: %+v", id, x)
		}
	}
	close(stop)
	wg.Wait()
	for _, x := range bad {
		t.Errorf("list during deletes: %s", x)
	}
	if ents, _ := os.ReadDir(r.root); len(ents) != 0 {
		t.Errorf("%d state dirs left", len(ents))
	}
}

// TestReliability_StalePidReuse (§6.4/§6.5): state.json names a pid that
// now belongs to an unrelated live process (a reboot, or pid reuse). The
// container must be reported stopped, kill must refuse and never signal the
// victim, and delete must clean up.
func TestReliability_StalePidReuse(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	id := r.id()
	r.must("create", "-b", b, id)
	// A reused pid belongs to a process started later; start times count
	// in clock ticks (10 ms), and create is faster than that, so the victim
	// waits a few ticks to be told apart, as any real reuse would be.
	time.Sleep(30 * time.Millisecond)
	victim := exec.Command("sleep", "100")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Process.Kill(); victim.Wait() })
	// The real init is killed first (as a reboot would), then its record
	// is pointed at the victim.
	pid := initPid(t, r, id)
	syscall.Kill(pid, syscall.SIGKILL)
	sp := filepath.Join(r.root, id, "state.json")
	raw, err := os.ReadFile(sp)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	st["init_process_pid"] = victim.Process.Pid
	nb, _ := json.Marshal(st)
	if err := os.WriteFile(sp, nb, 0o600); err != nil {
		t.Fatal(err)
	}
	if s := status(t, r, id); s != "stopped" {
		t.Errorf("status with a reused pid: %s, want stopped", s)
	}
	if x := r.run("kill", id, "KILL"); x.code == 0 {
		t.Errorf("kill of a stopped container whose pid was reused succeeded: %+v", x)
	}
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the unrelated process was signalled: %v", err)
	}
	r.must("delete", id)
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("delete signalled the unrelated process: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
		t.Errorf("state dir left: %v", err)
	}
	if cgroupLeft(id) {
		t.Errorf("cgroup of %s left after delete", id)
	}
}

// TestReliability_SignalForwarding (§6.6): signals sent to a foreground
// `run` reach the container's pid 1 and its exit status propagates (signal
// deaths as 128+n).
func TestReliability_SignalForwarding(t *testing.T) {
	r := newRT(t)
	for _, tt := range []struct {
		sig  syscall.Signal
		want int
	}{{syscall.SIGTERM, 42}, {syscall.SIGHUP, 43}, {syscall.SIGUSR1, 128 + 10}} {
		b := testutil.Bundle(t, func(s *specs.Spec) { dropNS(s, specs.PIDNamespace) },
			"sh", "-c", `trap "exit 42" TERM; trap "exit 43" HUP; echo ready > /dev/shm/ready; while true; do sleep 0.05; done`)
		shm := t.TempDir()
		editSpec(t, b, func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: shm, Options: []string{"rbind", "rw"}})
		})
		cmd := exec.Command(berthBin, "--root", r.root, "run", "-b", b, r.id())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(shm, "ready")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatal("container did not start")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cmd.Process.Signal(tt.sig)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("%v: run did not exit", tt.sig)
		}
		if got := cmd.ProcessState.ExitCode(); got != tt.want {
			t.Errorf("%v: exit %d, want %d", tt.sig, got, tt.want)
		}
	}
}

// TestReliability_KilledCreate (§6.1): `create` is SIGKILLed at random
// points of its run; `delete --force` must then leave no state dir, no
// cgroup and no process, and the id must be reusable.
func TestReliability_KilledCreate(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	rootfs := filepath.Join(b, "rootfs")
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	n := raceIters(30)
	for i := 0; i < n; i++ {
		id := r.id()
		cmd := exec.Command(berthBin, "--root", r.root, "create", "-b", b, id)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Intn(60000)) * time.Microsecond)
		cmd.Process.Kill()
		cmd.Wait()
		if x := r.run("delete", "--force", id); x.code != 0 {
			t.Errorf("iteration %d: delete --force after a killed create: %+v", i, x)
		}
		if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
			t.Errorf("iteration %d: state dir left", i)
		}
		if cgroupLeft(id) {
			t.Errorf("iteration %d: cgroup left", i)
		}
		if i == n-1 {
			r.must("create", "-b", b, id)
			r.must("delete", "-f", id)
		}
	}
	// Processes reparented to init need a moment to be reaped.
	time.Sleep(100 * time.Millisecond)
	if p := procsUnder(rootfs); len(p) != 0 {
		t.Errorf("container processes survived delete --force: %v", p)
	}
}

// TestReliability_DeleteForcePaused (§6.3): delete --force of a paused
// container succeeds (the freezer is thawed for the SIGKILL) and leaves no
// cgroup, state or process.
func TestReliability_DeleteForcePaused(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	// Freeze a settled process, not one in the middle of its execve.
	waitExeced(t, initPid(t, r, id), "sleep")
	r.must("pause", id)
	if st := status(t, r, id); st != "paused" {
		t.Fatalf("after pause: %s", st)
	}
	done := make(chan result, 1)
	go func() { done <- r.run("delete", "--force", id) }()
	select {
	case x := <-done:
		if x.code != 0 {
			t.Fatalf("delete --force of a paused container: %+v", x)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("delete --force of a paused container hangs")
	}
	if cgroupLeft(id) {
		t.Errorf("cgroup of %s left", id)
	}
	if p := procsUnder(filepath.Join(b, "rootfs")); len(p) != 0 {
		t.Errorf("processes left: %v", p)
	}
}

// TestReliability_CyclesLeakNothing (§6.7): create/start/delete cycles
// leave no mounts (host side), cgroups, state dirs or fds of the caller.
func TestReliability_CyclesLeakNothing(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: t.TempDir(), Options: []string{"rbind"}})
	}, "true")
	scope := filepath.Dir(b)
	before := mountPoints(t, scope) + mountPoints(t, r.root)
	fdsBefore, _ := os.ReadDir("/proc/self/fd")
	var ids []string
	for i := 0; i < raceIters(30); i++ {
		id := r.id()
		ids = append(ids, id)
		if i%2 == 0 {
			r.must("run", "-b", b, id)
			continue
		}
		r.must("create", "-b", b, id)
		r.must("start", id)
		r.run("delete", "-f", id)
	}
	if after := mountPoints(t, scope) + mountPoints(t, r.root); after != before {
		t.Errorf("host mounts changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	for _, id := range ids {
		if cgroupLeft(id) {
			t.Errorf("cgroup of %s left", id)
		}
	}
	if ents, _ := os.ReadDir(r.root); len(ents) != 0 {
		t.Errorf("%d state dirs left", len(ents))
	}
	fdsAfter, _ := os.ReadDir("/proc/self/fd")
	if len(fdsAfter) > len(fdsBefore)+2 {
		t.Errorf("the caller's fds grew from %d to %d", len(fdsBefore), len(fdsAfter))
	}
}
