package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Helpers shared by the security_*_test.go regression tests: an attacker
// program that runs inside containers, a canary harness on the host, and
// iteration counts for race tests.

// raceIters is how many times a race test repeats the raced operation. The
// security reference asks for >= 1000 per race; one berth create+delete costs
// ~70 ms on the 2-core CI machine, so 1000 for each of the race tests would
// blow the suite's budget. BERTH_RACE_ITERS raises (or lowers) the count for
// a long soak run, e.g. BERTH_RACE_ITERS=1000.
func raceIters(def int) int {
	if v, err := strconv.Atoi(os.Getenv("BERTH_RACE_ITERS")); err == nil && v > 0 {
		return v
	}
	return def
}

// probeSource is the in-container attacker: busybox cannot renameat2,
// ptrace or hold O_PATH handles, so the races are driven by this small
// static program, built from source at test time (stdlib only).
const probeSource = `package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const renameExchange = 2

func renameat2(a, b string) error {
	pa, _ := syscall.BytePtrFromString(a)
	pb, _ := syscall.BytePtrFromString(b)
	_, _, e := syscall.Syscall6(316, uintptr(0xffffff9c), uintptr(unsafe.Pointer(pa)), uintptr(0xffffff9c), uintptr(unsafe.Pointer(pb)), renameExchange, 0)
	if e != 0 {
		return e
	}
	return nil
}

// detach lets a tracee go. PTRACE_ATTACH queues a SIGSTOP, but the first
// stop reported may be another one (the SIGTRAP of an execve the attach
// raced with); detaching then leaves the SIGSTOP pending and the tracee
// stopped for good, so it is continued explicitly.
func detach(p int) {
	var ws syscall.WaitStatus
	syscall.Wait4(p, &ws, syscall.WALL, nil)
	syscall.PtraceDetach(p)
	syscall.Kill(p, syscall.SIGCONT)
}

func until(arg string) time.Time {
	d, err := time.ParseDuration(arg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad duration:", arg)
		os.Exit(2)
	}
	return time.Now().Add(d)
}

func stopped(stop string) bool {
	_, err := os.Lstat(stop)
	return err == nil
}

func pids() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func main() {
	if len(os.Args) < 2 {
		os.Exit(2)
	}
	switch os.Args[1] {
	case "exchange":
		// exchange A B DURATION STOPFILE: swap two names as fast as possible.
		end := until(os.Args[4])
		n := 0
		for time.Now().Before(end) && !stopped(os.Args[5]) {
			if err := renameat2(os.Args[2], os.Args[3]); err != nil {
				fmt.Fprintln(os.Stderr, "renameat2:", err)
				os.Exit(1)
			}
			n++
		}
		// Leave the names as they were found.
		if n%2 == 1 {
			renameat2(os.Args[2], os.Args[3])
		}
		fmt.Println("swaps", n)
	case "exewrite":
		// exewrite DURATION STOPFILE: try to open every process' exe for
		// writing, directly and through O_PATH handles kept across the
		// process' exit (CVE-2019-5736: ETXTBSY clears when it is gone).
		end := until(os.Args[2])
		self := os.Getpid()
		seen := map[int]bool{}
		var held []int
		for time.Now().Before(end) && !stopped(os.Args[3]) {
			for _, p := range pids() {
				if p == self || seen[p] {
					continue
				}
				seen[p] = true
				exe := "/proc/" + strconv.Itoa(p) + "/exe"
				if fd, err := syscall.Open(exe, syscall.O_WRONLY|syscall.O_CLOEXEC, 0); err == nil {
					link, _ := os.Readlink(exe)
					fmt.Println("OPENED-FOR-WRITE", exe, link)
					syscall.Close(fd)
				}
				if h, err := syscall.Open(exe, 0x200000|syscall.O_CLOEXEC, 0); err == nil { // O_PATH
					// The container's own binaries are not the runtime.
					if link, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(h)); strings.HasPrefix(link, "/bin/") {
						syscall.Close(h)
					} else {
						held = append(held, h)
					}
				}
			}
			for len(held) > 64 {
				syscall.Close(held[0])
				held = held[1:]
			}
			for _, h := range held {
				via := "/proc/self/fd/" + strconv.Itoa(h)
				if fd, err := syscall.Open(via, syscall.O_WRONLY|syscall.O_CLOEXEC, 0); err == nil {
					link, _ := os.Readlink(via)
					fmt.Println("REOPENED-FOR-WRITE", link)
					syscall.Close(fd)
				}
			}
		}
		fmt.Println("done")
	case "peek":
		// peek PID...: ptrace-attach each pid and list its fds (CVE-2016-9962).
		// ptrace requests come from the thread that attached: stay on it.
		runtime.LockOSThread()
		for _, a := range os.Args[2:] {
			p, _ := strconv.Atoi(a)
			if err := syscall.PtraceAttach(p); err == nil {
				fmt.Println("ATTACHED", p)
				detach(p)
			} else {
				fmt.Println("attach", p, err)
			}
			dir := "/proc/" + a + "/fd"
			ents, err := os.ReadDir(dir)
			if err != nil {
				fmt.Println("fds", p, err)
				continue
			}
			for _, e := range ents {
				l, _ := os.Readlink(filepath.Join(dir, e.Name()))
				fmt.Println("FD", p, e.Name(), l)
			}
		}
	case "ptracewatch":
		// ptracewatch DURATION STOPFILE: attach to every pid that appears.
		// ptrace requests come from the thread that attached: a detach from
		// another thread fails and leaves the tracee stopped.
		runtime.LockOSThread()
		end := until(os.Args[2])
		seen := map[int]bool{}
		for _, p := range pids() {
			seen[p] = true
		}
		for time.Now().Before(end) && !stopped(os.Args[3]) {
			for _, p := range pids() {
				if seen[p] {
					continue
				}
				if err := syscall.PtraceAttach(p); err == nil {
					// The tracee is stopped: what it runs cannot change
					// while its fds are listed.
					exe, _ := os.Readlink("/proc/" + strconv.Itoa(p) + "/exe")
					fmt.Println("ATTACHED", p, exe)
					dir := "/proc/" + strconv.Itoa(p) + "/fd"
					ents, _ := os.ReadDir(dir)
					for _, e := range ents {
						l, _ := os.Readlink(filepath.Join(dir, e.Name()))
						fmt.Println("FD", p, e.Name(), l)
					}
					detach(p)
				}
				seen[p] = true
			}
		}
		fmt.Println("done")
	case "cgroupescape":
		// cgroupescape DIR: in a new user+mount+cgroup namespace, mount a
		// v1 hierarchy at DIR and try to set its release_agent (CVE-2022-0492).
		cmd := exec.Command("/proc/self/exe", "cgroupescape-child", os.Args[2])
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | 0x02000000, // CLONE_NEWCGROUP
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		}
		if err := cmd.Run(); err != nil {
			fmt.Println("child:", err)
		}
	case "cgroupescape-child":
		dir := os.Args[2]
		os.MkdirAll(dir, 0o755)
		for _, h := range []string{"rdma", "memory", "none,name=berthtest"} {
			if err := syscall.Mount("cgroup", dir, "cgroup", 0, h); err != nil {
				fmt.Println("mount", h, err)
				continue
			}
			fmt.Println("MOUNTED", h)
			if f, err := os.OpenFile(dir+"/release_agent", os.O_WRONLY, 0); err == nil {
				if _, err := f.WriteString("/evil"); err == nil {
					fmt.Println("RELEASE-AGENT-WRITTEN", h)
				} else {
					fmt.Println("write release_agent", err)
				}
				f.Close()
			} else {
				fmt.Println("open release_agent", err)
			}
			syscall.Unmount(dir, 0)
		}
	case "status":
		// status: the credential lines of /proc/self/status.
		b, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(b), "\n") {
			for _, k := range []string{"Uid:", "Gid:", "Groups:", "Cap", "NoNewPrivs:", "Seccomp:"} {
				if strings.HasPrefix(l, k) {
					fmt.Println(l)
				}
			}
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown probe command", os.Args[1])
		os.Exit(2)
	}
}
`

// buildProbe compiles probeSource into dir/probe (static, no cgo).
func buildProbe(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module probe\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(probeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "probe")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the in-container probe: %v\n%s", err, b)
	}
	return out
}

// installProbe copies the probe into rootfs/bin/probe.
func installProbe(t *testing.T, probe, rootfs string) {
	t.Helper()
	b, err := os.ReadFile(probe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "probe"), b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// canary is the host-side state an escape would change: the runtime
// binary, core_pattern/modprobe, and a sentinel directory's listing.
type canary struct {
	t        *testing.T
	dir      string
	before   map[string]string
	sentinel string
}

// newCanary records the host state; check compares against it at the end of
// the test (and reports every difference).
func newCanary(t *testing.T) *canary {
	t.Helper()
	c := &canary{t: t, sentinel: t.TempDir()}
	if err := os.WriteFile(filepath.Join(c.sentinel, "keep"), []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.before = c.snapshot()
	return c
}

func (c *canary) snapshot() map[string]string {
	m := map[string]string{}
	for _, f := range []string{berthBin, "/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe", "/proc/sys/kernel/shm_rmid_forced"} {
		b, err := os.ReadFile(f)
		if err != nil {
			m[f] = "error: " + err.Error()
			continue
		}
		sum := sha256.Sum256(b)
		m[f] = hex.EncodeToString(sum[:])
	}
	var names []string
	filepath.Walk(c.sentinel, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			names = append(names, p+" "+fi.Mode().String())
		}
		return nil
	})
	m["sentinel"] = strings.Join(names, "\n")
	return m
}

func (c *canary) check() {
	c.t.Helper()
	after := c.snapshot()
	for k, v := range c.before {
		if after[k] != v {
			c.t.Errorf("host canary %s changed:\nbefore: %s\nafter:  %s", k, v, after[k])
		}
	}
}

// initPid returns the container's init pid from berth state.
func initPid(t *testing.T, r *rt, id string) int {
	t.Helper()
	var st struct{ Pid int }
	if err := json.Unmarshal([]byte(r.must("state", id)), &st); err != nil {
		t.Fatal(err)
	}
	return st.Pid
}

// statusField returns the value of one /proc/PID/status line.
func statusField(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return ""
}

// sharedVolume makes a host directory both containers of a race bind-mount.
func sharedVolume(t *testing.T) string {
	t.Helper()
	v := t.TempDir()
	if err := os.Chmod(v, 0o777); err != nil {
		t.Fatal(err)
	}
	return v
}

// readSpec loads a bundle's config.json.
func readSpec(t *testing.T, bundle string) *specs.Spec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// racer is a probe container kept running by a background `berth run`
// while a test races it; what run and the probe print goes to a file.
type racer struct {
	cmd      *exec.Cmd
	done     chan error
	ended    bool
	log      string // run's stdout and stderr
	stopFile string // host path of the file the probe stops at
}

// startRacer runs bundle as id in the background. The test's cleanup stops
// it (see stop), so a failing test never leaves it behind.
func startRacer(t *testing.T, r *rt, bundle, id, stopFile string) *racer {
	t.Helper()
	x := &racer{done: make(chan error, 1), log: filepath.Join(t.TempDir(), "racer.out"), stopFile: stopFile}
	of, err := os.Create(x.log)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close() // run has its own copy
	x.cmd = exec.Command(berthBin, "--root", r.root, "run", "-b", bundle, id)
	x.cmd.Stdout, x.cmd.Stderr = of, of
	if err := x.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { x.done <- x.cmd.Wait() }()
	t.Cleanup(func() { x.stop(20 * time.Second) })
	return x
}

// stop writes the stop file and waits up to grace for run to end (killing
// it after that); it reports whether run ended by itself.
func (x *racer) stop(grace time.Duration) bool {
	if x.ended {
		return true
	}
	os.WriteFile(x.stopFile, nil, 0o644)
	select {
	case <-x.done:
		x.ended = true
		return true
	case <-time.After(grace):
		x.cmd.Process.Kill()
		return false
	}
}

// output is what run and the probe printed so far.
func (x *racer) output() []byte {
	b, _ := os.ReadFile(x.log)
	return b
}

// finish stops the racer, failing the test unless it stops within 20 s, and
// returns its output.
func (x *racer) finish(t *testing.T) []byte {
	t.Helper()
	if !x.stop(20 * time.Second) {
		t.Fatal("racer did not stop")
	}
	return x.output()
}

// waitRunning waits until a container started in the background exists and
// is running.
func waitRunning(t *testing.T, r *rt, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		res := r.run("state", id)
		if res.code == 0 && strings.Contains(res.stdout, `"status": "running"`) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("container %s did not start running", id)
}

// waitExeced waits until pid runs the container's program: `start` returns
// once init was released, a moment before the late seccomp load and execve.
func waitExeced(t *testing.T, pid int, comm string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err != nil {
			t.Fatalf("container process %d: %v", pid, err)
		}
		if strings.TrimSpace(string(b)) == comm {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d did not exec %s", pid, comm)
}

func mkfifo(p string) error { return unix.Mkfifo(p, 0o644) }
