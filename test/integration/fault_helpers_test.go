package integration

// Helpers of the fault-injection, churn and race suites (fault_test.go,
// churn_test.go, badinput_test.go): kill berth at a named step, and list what
// a container or a network world left behind. Every check looks only at
// resources the test made or can prove are berth's from the test's own
// state root, bundle, names and network namespaces, never at global counts
// other tests on the machine change.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/killpoint"
	"berth/internal/linux/cgroups"
	"berth/internal/testutil"
)

// runKilled runs cmd with BERTH_TEST_KILL_AT=step and fails the test unless
// berth died of that SIGKILL (a step that is never reached, say after a
// rename, must not pass as a clean kill).
func runKilled(t *testing.T, cmd *exec.Cmd, step string) {
	t.Helper()
	runKill(t, cmd, step, false)
}

// runKilledMonitor is runKilled for a step of the background monitor of
// `container run -d`: the monitor dies, and the client fails, reporting
// that the container did not start, with an empty log (the monitor said
// nothing).
func runKilledMonitor(t *testing.T, cmd *exec.Cmd, step string) {
	t.Helper()
	runKill(t, cmd, step, true)
}

func runKill(t *testing.T, cmd *exec.Cmd, step string, monitor bool) {
	t.Helper()
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, killpoint.Env+"="+step)
	// A file, not a pipe: the container berth leaves behind keeps its stdio
	// open, and a pipe would never see EOF.
	outf, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer outf.Close()
	cmd.Stdout, cmd.Stderr = outf, outf
	out := func() string { b, _ := os.ReadFile(outf.Name()); return string(b) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v with the kill at %q: timed out\n%s", cmd.Args, step, out())
	}
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if monitor {
		if o := strings.TrimSpace(out()); ws.Signaled() || ws.ExitStatus() == 0 || !strings.HasSuffix(o, `did not start: "`) {
			t.Fatalf("%v: the monitor's kill at %q did not happen (%v)\n%s", cmd.Args, step, cmd.ProcessState, o)
		}
		return
	}
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%v: the kill at %q did not happen (%v)\n%s", cmd.Args, step, cmd.ProcessState, out())
	}
}

// berthPids returns the live processes running the binary under test
// (init before its execve, hung commands), by the file's identity: the
// sealed copy a container's init runs is the same inode.
func berthPids() map[int]string {
	var bin unix.Stat_t
	if unix.Stat(berthBin, &bin) != nil {
		return nil
	}
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/exe", &st) != nil || st.Dev != bin.Dev || st.Ino != bin.Ino {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		out[pid] = strings.ReplaceAll(strings.TrimSpace(string(cmd)), "\x00", " ")
	}
	return out
}

// procsUnder lists pids whose root directory is dir or below it.
func procsUnder(dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/root"); err == nil && (l == dir || strings.HasPrefix(l, dir+"/")) {
			out = append(out, e.Name())
		}
	}
	return out
}

// mountsUnder lists the host's mount points at or below each dir.
func mountsUnder(dirs ...string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		for _, d := range dirs {
			if f[4] == d || strings.HasPrefix(f[4], d+"/") {
				out = append(out, f[4])
			}
		}
	}
	return out
}

// cgroupDirs are the directories of container id's cgroup on every
// hierarchy, resolved as berth resolves them for cgroupsPath (berth runs in
// the test's own cgroups).
func cgroupDirs(t *testing.T, cgroupsPath, id string) []string {
	t.Helper()
	m, err := cgroups.New(cgroupsPath, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range m.Paths() {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// ctScope is what one runtime container may leave: its state dir under the
// test's root, its cgroup, mounts below the bundle or the root, processes in
// its rootfs, and berth processes started since before.
type ctScope struct {
	r           *rt
	id, bundle  string
	cgroupsPath string
	before      map[int]string // berth processes alive before the step
}

func newCtScope(r *rt, id, bundle string) *ctScope {
	return &ctScope{r: r, id: id, bundle: bundle, before: berthPids()}
}

// leftovers lists what is left, waiting up to 3 s for processes the kernel
// is still reaping and cgroups they still hold.
func (c *ctScope) leftovers(t *testing.T) []string {
	t.Helper()
	var out []string
	for deadline := time.Now().Add(3 * time.Second); ; {
		out = nil
		if _, err := os.Stat(filepath.Join(c.r.root, c.id)); !errors.Is(err, os.ErrNotExist) {
			out = append(out, "state dir "+filepath.Join(c.r.root, c.id))
		}
		for _, d := range cgroupDirs(t, c.cgroupsPath, c.id) {
			if _, err := os.Stat(d); err == nil {
				out = append(out, "cgroup "+d)
			}
		}
		for _, m := range mountsUnder(c.bundle, c.r.root) {
			out = append(out, "mount "+m)
		}
		for _, p := range procsUnder(filepath.Join(c.bundle, "rootfs")) {
			out = append(out, "container process "+p)
		}
		for pid, cmd := range berthPids() {
			if _, ok := c.before[pid]; !ok {
				out = append(out, fmt.Sprintf("berth process %d (%s)", pid, cmd))
			}
		}
		if len(out) == 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertNone fails with every leftover.
func assertNone(t *testing.T, what string, left []string) {
	t.Helper()
	if len(left) > 0 {
		t.Errorf("%s: %d leftover(s):\n  %s", what, len(left), strings.Join(left, "\n  "))
	}
}

// foreignWorld puts into a network world things berth does not own and must
// never touch: a bridge and a veth named like berth's (but without its
// alias), a netns pinned in berth's netns dir by another tool, and an
// nftables table of its own. They are part of every snapshot, so a test
// comparing snapshots also proves they were left alone; identity returns
// the foreign netns' inode for an exact check.
func (w *nwWorld) addForeign(t *testing.T) (identity func() string) {
	t.Helper()
	nwRun(t, "ip", "-n", w.host, "link", "add", "berth7"+w.sfx[:3], "type", "bridge")
	nwRun(t, "ip", "-n", w.host, "link", "add", "bv0f0f0f0f0f", "type", "veth", "peer", "name", "fpeer"+w.sfx)
	nwRun(t, "ip", "netns", "exec", w.host, "nft", "add table inet foreign; add chain inet foreign c { type filter hook forward priority 5; policy accept; }; add rule inet foreign c counter comment \"berth net=fake\"")
	ns := filepath.Join(w.netnsDir, "foreign")
	pinNetns(t, ns)
	return func() string {
		var st unix.Stat_t
		if err := unix.Stat(ns, &st); err != nil {
			return "gone: " + err.Error()
		}
		return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	}
}

// pinNetns makes a network namespace at path the way another tool would
// (unshare --net=FILE bind-mounts a new netns on an existing file), and
// registers its removal.
func pinNetns(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	// The netns dir must be a mount point with private or shared
	// propagation for unshare to pin into it; berth makes it shared on its
	// first connect, the test does the same here.
	if err := unix.Mount("", filepath.Dir(path), "none", unix.MS_SHARED|unix.MS_REC, ""); errors.Is(err, unix.EINVAL) {
		if err := unix.Mount(filepath.Dir(path), filepath.Dir(path), "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			t.Fatal(err)
		}
		unix.Mount("", filepath.Dir(path), "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	nwRun(t, "unshare", "--net="+path, "true")
	t.Cleanup(func() {
		unix.Unmount(path, unix.MNT_DETACH)
		os.Remove(path)
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

// killWait SIGKILLs pid and waits until it is reaped (its pid is free).
func killWait(t *testing.T, pid int) {
	t.Helper()
	unix.Kill(pid, unix.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat("/proc/" + itoa(pid)); errors.Is(err, os.ErrNotExist) {
			return
		}
	}
	t.Fatalf("pid %d was not reaped", pid)
}

// reusePid starts args as a process with exactly pid, a pid that was just
// freed: the kernel hands out ns_last_pid+1 next, so the test sets it and
// forks, retrying when another process on the machine took the pid first.
func reusePid(t *testing.T, pid int, args ...string) *exec.Cmd {
	t.Helper()
	for i := 0; i < 200; i++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(itoa(pid-1)), 0o644); err != nil {
			testutil.Require(t, false, "cannot set ns_last_pid: "+err.Error())
		}
		cmd := exec.Command(args[0], args[1:]...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == pid {
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			// Let it reach its own netns (unshare then exec).
			self, _ := os.Readlink("/proc/self/ns/net")
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if ns, err := os.Readlink("/proc/" + itoa(pid) + "/ns/net"); err == nil && ns != self {
					if c, _ := os.ReadFile("/proc/" + itoa(pid) + "/comm"); strings.TrimSpace(string(c)) == filepath.Base(args[len(args)-2]) {
						return cmd
					}
				}
			}
			t.Fatalf("the process with the reused pid %d did not settle", pid)
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	t.Fatalf("could not get pid %d again", pid)
	return nil
}
