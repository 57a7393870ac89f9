package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/testutil"
)

// §2.A of the security reference: the runtime binary and file descriptors.

// TestCVE_2019_5736_ShebangSelfExe is the original exploit: the image's
// /bin/sh is "#!/proc/self/exe", so `exec ctr /bin/sh` makes the kernel run
// the runtime binary inside the container, while a racer in the container
// hammers every /proc/PID/exe with open(O_WRONLY) and the O_PATH reopen.
// The host binary must stay intact and no open for writing may succeed.
func TestCVE_2019_5736_ShebangSelfExe(t *testing.T) {
	r := newRT(t)
	c := newCanary(t)
	probe := buildProbe(t)
	b := testutil.Bundle(t, nil, "/bin/probe", "exewrite", "60s", "/tmp/stop")
	rootfs := filepath.Join(b, "rootfs")
	installProbe(t, probe, rootfs)
	// /bin/sh stays busybox for the racer's own needs; the trap is /bin/evil.
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "evil"), []byte("#!/proc/self/exe\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	os.Chmod(tmp, 0o777)
	editSpec(t, b, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/tmp", Type: "bind", Source: tmp, Options: []string{"rbind", "rw"}})
	})
	id := r.id()
	x := startRacer(t, r, b, id, filepath.Join(tmp, "stop"))
	// If run fails instead of reaching "running", say why.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if res := r.run("state", id); res.code == 0 && strings.Contains(res.stdout, `"status": "running"`) {
			break
		}
		select {
		case err := <-x.done:
			x.ended = true
			t.Fatalf("berth run ended before the container ran: %v\n%s", err, x.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s did not start running; run output so far:\n%s", id, x.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 0; i < raceIters(30); i++ {
		// Exits non-zero: the runtime binary does not know the "/bin/evil"
		// command. What matters is what the racer could do meanwhile.
		r.run("exec", id, "/bin/evil")
	}
	log := x.finish(t)
	if bytes.Contains(log, []byte("OPENED-FOR-WRITE")) || bytes.Contains(log, []byte("REOPENED-FOR-WRITE")) {
		t.Errorf("a container process opened a runtime binary for writing:\n%s", log)
	}
	if !bytes.Contains(log, []byte("done")) {
		t.Errorf("racer did not run to the end:\n%s", log)
	}
	c.check()
}

// TestCVE_2016_9962_InitNotPtraceable: a created container's init waits
// for `start` after dropping to the container's credentials, still holding
// runtime fds (the exec.fifo handle). Container root in a second container
// that shares its pid namespace (same uid, same capabilities) must not be
// able to ptrace it or read its fd table.
func TestCVE_2016_9962_InitNotPtraceable(t *testing.T) {
	r := newRT(t)
	probe := buildProbe(t)
	victim := testutil.Bundle(t, nil, "true")
	vid := r.id()
	r.must("create", "-b", victim, vid)
	vpid := initPid(t, r, vid)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		for i, n := range s.Linux.Namespaces {
			if n.Type == specs.PIDNamespace {
				s.Linux.Namespaces[i].Path = "/proc/" + strconv.Itoa(vpid) + "/ns/pid"
			}
		}
	}, "/bin/probe", "peek", "1")
	installProbe(t, probe, filepath.Join(b, "rootfs"))
	res := r.run("run", "-b", b, r.id())
	// Listing the fd numbers is harmless (container root owns the directory);
	// resolving them needs ptrace access.
	if strings.Contains(res.stdout, "ATTACHED") || regexp.MustCompile(`(?m)^FD 1 \d+ \S`).MatchString(res.stdout) {
		t.Errorf("container root could ptrace or inspect the waiting init of another container:\n%s%s", res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "attach 1 ") {
		t.Errorf("probe did not run: %+v", res)
	}
	r.must("delete", "-f", vid)
}

// TestCVE_2016_9962_ExecNotPtraceable races `berth exec` against a
// container root that attaches to every new pid and lists its fds.
func TestCVE_2016_9962_ExecNotPtraceable(t *testing.T) {
	r := newRT(t)
	probe := buildProbe(t)
	tmp := t.TempDir()
	os.Chmod(tmp, 0o777)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/tmp", Type: "bind", Source: tmp, Options: []string{"rbind", "rw"}})
	}, "/bin/probe", "ptracewatch", "60s", "/tmp/stop")
	installProbe(t, probe, filepath.Join(b, "rootfs"))
	id := r.id()
	x := startRacer(t, r, b, id, filepath.Join(tmp, "stop"))
	waitRunning(t, r, id)
	for i := 0; i < raceIters(30); i++ {
		r.must("exec", id, "true")
	}
	log := x.finish(t)
	// Attaching to the exec'd process after it became the container's own
	// program (busybox's true, holding only its stdio) is legitimate;
	// attaching while it still is berth is not.
	own := map[string]bool{}
	for _, l := range strings.Split(string(log), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "ATTACHED" && f[2] == "/bin/busybox" {
			own[f[1]] = true
		}
	}
	for _, l := range strings.Split(string(log), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "FD" && own[f[1]] {
			continue
		}
		if strings.HasPrefix(l, "FD ") && !strings.HasSuffix(l, " /dev/null") && !strings.Contains(l, "pipe:") && !strings.Contains(l, "socket:") {
			t.Errorf("racer saw a runtime fd in a berth exec process: %s", l)
		}
	}
	if !bytes.Contains(log, []byte("done")) {
		t.Errorf("racer did not run to the end:\n%s", log)
	}
}

// TestCVE_2024_21626_CwdLeakedFd: process.cwd = /proc/self/fd/N for every
// fd the runtime could have leaked. Either create fails, or the cwd is
// inside the container: a host sentinel file must never be reachable by
// walking up from the cwd.
func TestCVE_2024_21626_CwdLeakedFd(t *testing.T) {
	r := newRT(t)
	c := newCanary(t)
	up := strings.Repeat("../", 30)
	b := testutil.Bundle(t, nil, "sh", "-c", "cat "+up+strings.TrimPrefix(c.sentinel, "/")+"/keep; echo; pwd")
	for fd := 3; fd <= 20; fd++ {
		editSpec(t, b, func(s *specs.Spec) { s.Process.Cwd = "/proc/self/fd/" + strconv.Itoa(fd) })
		res := r.run("run", "-b", b, r.id())
		if strings.Contains(res.stdout, "canary") {
			t.Errorf("cwd /proc/self/fd/%d reached the host: %+v", fd, res)
		}
		if res.code == 0 && !strings.HasPrefix(strings.TrimSpace(res.stdout), "/") {
			t.Errorf("cwd /proc/self/fd/%d: container ran with an unreachable cwd: %+v", fd, res)
		}
	}
	c.check()
}

// TestCVE_2024_21626_ExecPathLeakedFd: the executable path itself walks out
// through a leaked fd: /proc/self/fd/N/../../../<host path>.
func TestCVE_2024_21626_ExecPathLeakedFd(t *testing.T) {
	r := newRT(t)
	c := newCanary(t)
	script := filepath.Join(c.sentinel, "escape.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ESCAPED\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.before = c.snapshot()
	up := strings.Repeat("../", 30)
	b := testutil.Bundle(t, nil)
	for fd := 3; fd <= 20; fd++ {
		editArgs(t, b, "/proc/self/fd/"+strconv.Itoa(fd)+"/"+up+strings.TrimPrefix(script, "/"))
		res := r.run("run", "-b", b, r.id())
		if strings.Contains(res.stdout, "ESCAPED") || res.code == 0 {
			t.Errorf("exec path through fd %d reached a host file: %+v", fd, res)
		}
	}
	// Also through `exec` into a running container.
	editArgs(t, b, "sleep", "100")
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	for fd := 3; fd <= 20; fd++ {
		res := r.run("exec", id, "/proc/self/fd/"+strconv.Itoa(fd)+"/"+up+strings.TrimPrefix(script, "/"))
		if strings.Contains(res.stdout, "ESCAPED") || res.code == 0 {
			t.Errorf("exec path through fd %d reached a host file: %+v", fd, res)
		}
		res = r.run("exec", "--cwd", "/proc/self/fd/"+strconv.Itoa(fd), id, "sh", "-c", "cat "+up+strings.TrimPrefix(c.sentinel, "/")+"/keep")
		if strings.Contains(res.stdout, "canary") {
			t.Errorf("exec --cwd /proc/self/fd/%d reached the host: %+v", fd, res)
		}
		// The container plants the magic link as an innocent-looking
		// directory before an admin's `exec --cwd`.
		link := "/dev/shm/work" + strconv.Itoa(fd)
		r.must("exec", id, "ln", "-s", "/proc/self/fd/"+strconv.Itoa(fd), link)
		res = r.run("exec", "--cwd", link, id, "sh", "-c", "cat "+up+strings.TrimPrefix(c.sentinel, "/")+"/keep")
		if strings.Contains(res.stdout, "canary") {
			t.Errorf("exec --cwd %s -> /proc/self/fd/%d reached the host: %+v", link, fd, res)
		}
	}
	c.check()
}

// TestCVE_2024_21626_InheritedFds: the caller leaks inheritable fds into
// berth (a host directory and a host file). Without --preserve-fds none may
// reach the container; with --preserve-fds 1 exactly fd 3 does.
func TestCVE_2024_21626_InheritedFds(t *testing.T) {
	r := newRT(t)
	hostDir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer hostDir.Close()
	hostFile, err := os.Open(berthBin)
	if err != nil {
		t.Fatal(err)
	}
	defer hostFile.Close()
	runWith := func(args ...string) map[string]string {
		b := testutil.Bundle(t, nil, "ls", "-l", "/proc/self/fd/")
		cmd := exec.Command(berthBin, append(append([]string{"--root", r.root, "run"}, args...), "-b", b, r.id())...)
		cmd.ExtraFiles = []*os.File{hostDir, hostFile} // fds 3 and 4 in berth, inheritable
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("run %v: %v\n%s", args, err, errb.String())
		}
		m := map[string]string{}
		for _, l := range strings.Split(out.String(), "\n") {
			_, link, ok := strings.Cut(l, " -> ")
			if !ok {
				continue
			}
			f := strings.Fields(strings.TrimSpace(strings.TrimSuffix(l, " -> "+link)))
			fd := f[len(f)-1]
			// ls' own handle on the directory it lists.
			if regexp.MustCompile(`^/proc/\d+/fd$`).MatchString(link) {
				continue
			}
			m[fd] = link
		}
		return m
	}
	got := runWith()
	for fd, target := range got {
		if n, _ := strconv.Atoi(fd); n > 2 && target != "" {
			t.Errorf("fd %s -> %s leaked into the container without --preserve-fds", fd, target)
		}
	}
	got = runWith("--preserve-fds", "1")
	if got["3"] == "" {
		t.Errorf("--preserve-fds 1 did not pass fd 3: %v", got)
	}
	for fd, target := range got {
		if n, _ := strconv.Atoi(fd); n > 3 && target != "" {
			t.Errorf("fd %s -> %s leaked into the container with --preserve-fds 1", fd, target)
		}
	}
}

// editSpec rewrites a bundle's config.json through mutate.
func editSpec(t *testing.T, bundle string, mutate func(*specs.Spec)) {
	t.Helper()
	s := readSpec(t, bundle)
	mutate(s)
	testutil.WriteSpec(t, bundle, s)
}

var _ = unix.O_PATH
