package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/linux/rootfs"
)

// Sandbox isolates one harness run. The runtime under test gets a private
// state root (the validation suite has no --root option, so RUNTIME points
// at a two-line wrapper that adds it): containers a test leaves behind are
// then exactly the entries of that root, and cleaning them up can never touch
// containers other people run on the same machine. Bundles go to a private
// TMPDIR for the same reason.
type Sandbox struct {
	Runtime string // absolute path of the runtime under test
	Root    string // its --root
	Wrapper string // what RUNTIME names
	Tmp     string // TMPDIR of the tests: runtime-tools puts bundles there
	dir     string // holds Wrapper and Tmp

	// CgroupMounts are the hierarchies cleaned of the suite's fixed cgroup
	// directories; nil means every cgroup mount of this machine.
	CgroupMounts []string

	// Cleanup counters, reported at the end of the run.
	LeftContainers, LeftMounts, LeftCgroups int
}

// lockPath serialises harness runs on one machine: the suite's cgroup tests
// all use the same fixed cgroup paths (/cgrouptest, testdir/cgrouptest), so
// two concurrent runs would break each other's tests and cleanups.
const lockPath = "/run/berth-conformance/lock"

// Lock takes the machine-wide harness lock, waiting for a concurrent run to
// finish (and saying so). The lock is released when the process exits.
func Lock(ctx context.Context, log io.Writer) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return f, nil
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, &os.PathError{Op: "flock", Path: lockPath, Err: err}
	}
	fmt.Fprintf(log, "conformance: another run holds %s; waiting for it to finish\n", lockPath)
	for {
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			return f, nil
		} else if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, &os.PathError{Op: "flock", Path: lockPath, Err: err}
		}
	}
}

// RemoveStale removes the sandboxes of earlier runs that were killed before
// their cleanup (SIGKILL, a machine reset). Call it holding the lock, so no
// live run owns them. A state root that still lists containers, or a temp
// dir with mounts below it, is left alone and reported: removing it blindly
// could recurse through a bind mount into host files.
func RemoveStale(log io.Writer) {
	roots, _ := filepath.Glob(filepath.Join(filepath.Dir(lockPath), "root-*"))
	for _, r := range roots {
		if err := os.Remove(r); err != nil && !os.IsNotExist(err) {
			fmt.Fprintf(log, "conformance: warning: stale state root %s still holds containers; delete them with RUNTIME --root %s delete --force ID\n", r, r)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "berth-conformance-*"))
	for _, d := range dirs {
		if m, err := mountsUnder(d); err != nil || len(m) > 0 {
			fmt.Fprintf(log, "conformance: warning: stale %s has mounts below it; not removed\n", d)
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			fmt.Fprintf(log, "conformance: warning: remove stale %s: %v\n", d, err)
		}
	}
}

// NewSandbox creates the private directories and the wrapper.
func NewSandbox(runtimePath string) (*Sandbox, error) {
	dir, err := os.MkdirTemp("", "berth-conformance-")
	if err != nil {
		return nil, err
	}
	s := &Sandbox{Runtime: runtimePath, dir: dir, Tmp: filepath.Join(dir, "tmp"), Wrapper: filepath.Join(dir, "runtime")}
	// MkdirTemp makes 0700 directories; bundles below must be reachable by
	// the mapped root of a user-namespaced container (linux_uid_mappings,
	// linux_ns_nopath), as they are in the default world-readable /tmp.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.MkdirAll("/run/berth-conformance", 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if s.Root, err = os.MkdirTemp("/run/berth-conformance", "root-"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.Mkdir(s.Tmp, 0o755); err != nil {
		s.Close()
		return nil, err
	}
	if err := os.Chmod(s.Tmp, 0o755); err != nil { // whatever the umask
		s.Close()
		return nil, err
	}
	if err := os.WriteFile(s.Wrapper, []byte(wrapperScript(runtimePath, s.Root)), 0o755); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// wrapperScript execs the runtime with --root root and the caller's
// arguments: exec keeps the PID, so nothing the suite observes changes.
func wrapperScript(runtimePath, root string) string {
	return fmt.Sprintf("#!/bin/sh\n# berth conformance harness: run the runtime under test with a private --root.\nexec %s --root %s \"$@\"\n",
		shellQuote(runtimePath), shellQuote(root))
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Close removes everything the sandbox created; call Clean first.
func (s *Sandbox) Close() error {
	err := errors.Join(os.RemoveAll(s.dir), os.Remove(s.Root))
	return err
}

// RunTest runs one validation executable from the suite root, writes its
// stdout and stderr to logDir/<name>.tap and .err, and judges it.
func (s *Sandbox) RunTest(ctx context.Context, suite Suite, name, logDir string, timeout time.Duration) (TestResult, error) {
	res := TestResult{Name: name}
	tapPath := filepath.Join(logDir, name+".tap")
	errPath := filepath.Join(logDir, name+".err")
	stdout, err := os.Create(tapPath)
	if err != nil {
		return res, err
	}
	defer stdout.Close()
	stderr, err := os.Create(errPath)
	if err != nil {
		return res, err
	}
	defer stderr.Close()

	cmd := exec.Command(suite.Tests[name])
	cmd.Dir = suite.Root
	cmd.Env = append(filterEnv(os.Environ(), "RUNTIME", "TMPDIR"), "RUNTIME="+s.Wrapper, "TMPDIR="+s.Tmp)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group, so a timeout or ^C kills the test together with
	// the runtime processes it is waiting for.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var waitErr error
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case waitErr = <-done:
	case <-timer.C:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		res.Problems = append(res.Problems, fmt.Sprintf("timed out after %s", timeout))
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return res, ctx.Err()
	}
	var exitErr *exec.ExitError
	if errors.As(waitErr, &exitErr) && len(res.Problems) == 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%s; stderr: %s", waitErr, lastLines(errPath, 3)))
	} else if waitErr != nil && !errors.As(waitErr, &exitErr) {
		return res, fmt.Errorf("wait %s: %w", name, waitErr)
	}

	f, err := os.Open(tapPath)
	if err != nil {
		return res, err
	}
	defer f.Close()
	if res.TAP, err = ParseTAP(f); err != nil {
		return res, fmt.Errorf("read %s: %w", tapPath, err)
	}
	res.Problems = append(res.Problems, res.TAP.PlanProblems...)
	for _, e := range res.TAP.Errors {
		res.Problems = append(res.Problems, "error diagnostic outside any assertion: "+firstLine(e))
	}
	return res, nil
}

func filterEnv(env []string, drop ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, d := range drop {
			if strings.HasPrefix(kv, d+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// lastLines returns the last n non-empty lines of a file, joined by " | ".
func lastLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "(empty)"
	}
	return strings.Join(lines, " | ")
}

// Clean removes what a test left behind, so the next one starts from a clean
// machine: containers in the private root (delete --force), mounts under the
// bundles (linux_rootfs_propagation's "shared" case propagates the
// container's mounts back into the host namespace), the bundles, and the
// fixed cgroup paths the cgroup tests use (runc, for one, removes the leaf
// of a relative cgroupsPath but not the parents it created).
func (s *Sandbox) Clean() error {
	var errs []error
	ents, err := os.ReadDir(s.Root)
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range ents {
		s.LeftContainers++
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(ctx, s.Runtime, "--root", s.Root, "delete", "--force", e.Name()).CombinedOutput()
		cancel()
		if _, serr := os.Lstat(filepath.Join(s.Root, e.Name())); serr == nil {
			errs = append(errs, fmt.Errorf("container %s survived delete --force (%w): %s", e.Name(), err, strings.TrimSpace(string(out))))
		}
	}
	mounts, err := mountsUnder(s.Tmp)
	if err != nil {
		errs = append(errs, err)
	}
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, &os.PathError{Op: "umount", Path: m, Err: err})
			continue
		}
		s.LeftMounts++
	}
	tmpEnts, err := os.ReadDir(s.Tmp)
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range tmpEnts {
		if err := os.RemoveAll(filepath.Join(s.Tmp, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	cgMounts := s.CgroupMounts
	if cgMounts == nil {
		cgMounts, err = cgroupMounts()
		if err != nil {
			errs = append(errs, err)
		}
	}
	n, err := removeTestCgroups(cgMounts)
	s.LeftCgroups += n
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// mountInfo yields (mount point, fs type) of every mount of this process.
func mountInfo() ([][2]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// id parent major:minor root mountpoint options [optional...] - fstype ...
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		out = append(out, [2]string{rootfs.UnescapeMountinfo(fields[4]), fields[sep+1]})
	}
	return out, sc.Err()
}

// mountsUnder lists mount points strictly below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	all, err := mountInfo()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range all {
		if strings.HasPrefix(m[0], dir+"/") {
			out = append(out, m[0])
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// testCgroupDirs are the cgroupsPath values of runtime-tools' cgroup tests
// (cgroups.AbsCgroupPath and cgroups.RelCgroupPath with its parents),
// children before parents.
var testCgroupDirs = []string{"testdir/cgrouptest/container", "testdir/cgrouptest", "testdir", "cgrouptest"}

// cgroupMounts lists the mount points of every cgroup v1 hierarchy and of
// the cgroup v2 tree.
func cgroupMounts() ([]string, error) {
	all, err := mountInfo()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range all {
		if m[1] == "cgroup" || m[1] == "cgroup2" {
			out = append(out, m[0])
		}
	}
	return out, nil
}

// removeTestCgroups rmdirs the tests' cgroup directories below each of
// mounts. rmdir only succeeds on an empty cgroup, so a cgroup that still
// holds processes stays (and is reported by the next test that needs it).
func removeTestCgroups(mounts []string) (int, error) {
	n := 0
	var errs []error
	for _, m := range mounts {
		for _, d := range testCgroupDirs {
			p := filepath.Join(m, d)
			err := unix.Rmdir(p)
			switch {
			case err == nil:
				n++
			case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
			default:
				errs = append(errs, &os.PathError{Op: "rmdir", Path: p, Err: err})
			}
		}
	}
	return n, errors.Join(errs...)
}
