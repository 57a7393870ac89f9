package integration

// Churn and race suites (issue 22): many lifecycles in a row must leave the
// host flat (no state dir, cgroup, mount, process, netns, veth, rule or
// lease accumulates, the caller's fds do not grow) and not slow down; one
// id raced by many processes must have exactly one winner and leave nothing.
// The slowdown is reported as the ratio of the last hundred cycles' mean
// time to the first hundred's, with only a loose sanity bound: timing on a
// shared machine is not an assertion (bench/ holds the numbers).

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/testutil"
)

// slowdownBound is the sanity bound on last-hundred/first-hundred: a leak
// that makes each cycle slower (a growing directory, lease file or rule
// list) shows up as a large factor; scheduling noise on a busy machine does
// not reach it.
const slowdownBound = 3.0

// hundredsRatio returns the mean of the last 100 durations over the mean of
// the first 100.
func hundredsRatio(d []time.Duration) (first, last time.Duration, ratio float64) {
	mean := func(s []time.Duration) time.Duration {
		var sum time.Duration
		for _, x := range s {
			sum += x
		}
		return sum / time.Duration(len(s))
	}
	first, last = mean(d[:100]), mean(d[len(d)-100:])
	return first, last, float64(last) / float64(first)
}

func fdCount() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// cgroupChildren counts the directories named prefix* beside the test's
// containers' cgroups, on every hierarchy.
func cgroupChildren(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	for _, d := range cgroupDirs(t, "", prefix+"x") {
		ents, _ := os.ReadDir(filepath.Dir(d))
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
				out = append(out, filepath.Join(filepath.Dir(d), e.Name()))
			}
		}
	}
	return out
}

// TestChurnRun: 500 `run` cycles (create, start, wait, delete) of a
// container with a bind mount; after every hundred: no state dir, cgroup,
// mount or process accumulated, the caller's fds are flat.
func TestChurnRun(t *testing.T) {
	r := newRT(t)
	data := t.TempDir()
	b := testutil.Bundle(t, nil, "true")
	editSpec(t, b, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: data, Options: []string{"rbind"}})
	})
	prefix := fmt.Sprintf("churn-%d-", os.Getpid())
	fds := fdCount()
	before := berthPids()
	const n = 500
	times := make([]time.Duration, 0, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if x := r.run("run", "-b", b, prefix+itoa(i)); x.code != 0 {
			t.Fatalf("cycle %d: %+v", i, x)
		}
		times = append(times, time.Since(t0))
		if (i+1)%100 == 0 {
			var left []string
			if ents, _ := os.ReadDir(r.root); len(ents) != 0 {
				left = append(left, fmt.Sprintf("%d state dirs", len(ents)))
			}
			left = append(left, cgroupChildren(t, prefix)...)
			for _, m := range mountsUnder(b, r.root, data) {
				left = append(left, "mount "+m)
			}
			for _, p := range procsUnder(filepath.Join(b, "rootfs")) {
				left = append(left, "process "+p)
			}
			for pid, cmd := range berthPids() {
				if _, ok := before[pid]; !ok {
					left = append(left, fmt.Sprintf("berth process %d %s", pid, cmd))
				}
			}
			if got := fdCount(); got > fds+2 {
				left = append(left, fmt.Sprintf("the caller's fds grew from %d to %d", fds, got))
			}
			assertNone(t, fmt.Sprintf("after %d cycles", i+1), left)
		}
	}
	first, last, ratio := hundredsRatio(times)
	t.Logf("%d run cycles in %v: first hundred %v/cycle, last hundred %v/cycle, ratio %.2f (sanity bound %.1f)",
		n, time.Since(start).Round(time.Millisecond), first.Round(time.Microsecond), last.Round(time.Microsecond), ratio, slowdownBound)
	if ratio > slowdownBound {
		t.Errorf("the last hundred cycles took %.1f times as long as the first hundred", ratio)
	}
}

// TestChurnConnect: 200 connect/disconnect cycles with a created netns and
// a published port; after every fifty the host netns, berth's files and
// the netns dir are as before, and check finds nothing.
func TestChurnConnect(t *testing.T) {
	w := nwNewWorld(t, false)
	w.mustBerth(t, "network", "create", "ch", "--bridge", w.bridge)
	// Another, long-lived endpoint: its lease must survive the churn.
	w.connect(t, "ch", "--netns", "stay", "--create-netns", "-p", "9700:80")
	before := w.snapshot(t)
	const n = 200
	times := make([]time.Duration, 0, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		w.mustBerth(t, "network", "connect", "ch", "--netns", "cy", "--create-netns", "-p", "9701:80")
		w.mustBerth(t, "network", "disconnect", "ch", "--netns", "cy")
		times = append(times, time.Since(t0))
		if (i+1)%50 == 0 {
			nwSameSnap(t, fmt.Sprintf("after %d cycles", i+1), before, w.snapshot(t))
		}
	}
	first, last, ratio := hundredsRatio(times)
	t.Logf("%d connect/disconnect cycles in %v: first hundred %v/cycle, last hundred %v/cycle, ratio %.2f (sanity bound %.1f)",
		n, time.Since(start).Round(time.Millisecond), first.Round(time.Microsecond), last.Round(time.Microsecond), ratio, slowdownBound)
	if ratio > slowdownBound {
		t.Errorf("the last hundred cycles took %.1f times as long as the first hundred", ratio)
	}
	w.checkClean(t, "after the churn")
	w.mustBerth(t, "network", "disconnect", "ch", "--netns", "stay")
	w.mustBerth(t, "network", "rm", "ch")
}

// TestRaceSameID: 50 rounds of 20 processes racing on one id: all create
// (even rounds) or all run -d (odd rounds); exactly one wins, the others say
// the id exists; then all 20 delete -f it at once, every one succeeds, and
// nothing is left.
func TestRaceSameID(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	const procs, rounds = 20, 50
	for round := 0; round < rounds; round++ {
		id := fmt.Sprintf("race-%d-%d", os.Getpid(), round)
		sc := newCtScope(r, id, b)
		op := []string{"create", "-b", b, id}
		if round%2 == 1 {
			op = []string{"run", "-d", "-b", b, id}
		}
		res := make([]result, procs)
		var wg sync.WaitGroup
		for i := 0; i < procs; i++ {
			wg.Add(1)
			go func(i int) { defer wg.Done(); res[i] = r.run(op...) }(i)
		}
		wg.Wait()
		won := 0
		for _, x := range res {
			switch {
			case x.code == 0:
				won++
			case x.code != 1 || !strings.Contains(x.stderr, "container with given ID already exists"):
				t.Errorf("round %d: a losing %s: %+v", round, op[0], x)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of %d %ss of one id succeeded", round, won, procs, op[0])
		}
		want := "created"
		if op[0] == "run" {
			want = "running"
		}
		if st := status(t, r, id); st != want {
			t.Errorf("round %d: status %s, want %s", round, st, want)
		}
		for i := 0; i < procs; i++ {
			wg.Add(1)
			go func(i int) { defer wg.Done(); res[i] = r.run("delete", "-f", id) }(i)
		}
		wg.Wait()
		var codes []string
		for _, x := range res {
			if x.code != 0 {
				codes = append(codes, fmt.Sprintf("%d %s", x.code, strings.TrimSpace(x.stderr)))
			}
		}
		sort.Strings(codes)
		if len(codes) > 0 {
			t.Errorf("round %d: concurrent delete -f failed: %v", round, codes)
		}
		assertNone(t, fmt.Sprintf("round %d", round), sc.leftovers(t))
	}
	t.Logf("%d rounds of %d processes on one id: one winner each, nothing left", rounds, procs)
}
