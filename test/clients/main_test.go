// Package clients runs real container clients — containerd (ctr, the runc v2
// shim) and podman (with conmon) — on top of berth installed under the name
// runc. Each suite starts its own daemon or storage under a temp dir, loads a
// busybox image built offline, and cleans everything up even on failure.
//
// BERTH_BIN tests an already built berth; BERTH_CLIENT_RUNTIME replaces berth
// with another runtime (e.g. /usr/sbin/runc) to check what runc does for the
// same client command. Tests that document a behaviour berth does not have
// yet run only with BERTH_CLIENT_KNOWN_GAPS=1 (see knownGap).
package clients

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// runtimeBin is the wrapper named "runc" that clients are pointed at: it logs
// every invocation's argv to traceLog, then execs the runtime under test
// (realBin). berthBin is berth itself, for the image work (copy) the suites
// do whatever runtime they test.
var (
	runtimeBin string
	realBin    string
	berthBin   string
	traceLog   string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "berth-clients-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	berthBin = os.Getenv("BERTH_BIN")
	if berthBin == "" {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		berthBin = filepath.Join(dir, "berth")
		cmd := exec.Command("bash", "scripts/build.sh", berthBin)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building berth:", err)
			return 1
		}
	}
	if berthBin, err = filepath.Abs(berthBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	realBin = berthBin
	if r := os.Getenv("BERTH_CLIENT_RUNTIME"); r != "" {
		if realBin, err = filepath.Abs(r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	// The wrapper must be named runc: podman turns JSON error logs on by
	// the runtime's basename.
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	traceLog = filepath.Join(dir, "trace.log")
	runtimeBin = filepath.Join(dir, "bin", "runc")
	// The wrapper is a small Go program (testdata/wrapper) with the log and
	// target paths linked in.
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", runtimeBin,
		"-ldflags", "-X main.traceLog="+traceLog+" -X main.target="+realBin, "./testdata/wrapper")
	cmd.Dir = filepath.Dir(file)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the runtime wrapper:", err)
		return 1
	}
	code := m.Run()
	if dst := os.Getenv("BERTH_CLIENT_TRACE_COPY"); dst != "" {
		// Keeps every runtime call of the run for inspection.
		if b, err := os.ReadFile(traceLog); err == nil {
			_ = os.WriteFile(dst, b, 0o644)
		}
	}
	return code
}

// traceSince returns the runtime invocations logged after offset, for
// failure messages that show exactly what a client sent.
func traceSince(offset int64) string {
	b, err := os.ReadFile(traceLog)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

// traceOffset is the current end of the trace log.
func traceOffset() int64 {
	fi, err := os.Stat(traceLog)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// knownGap runs the rest of t only with BERTH_CLIENT_KNOWN_GAPS=1: the test
// documents a client behaviour berth does not match yet, and fails there with
// what the client sent and what it expected.
func knownGap(t *testing.T, gap string) {
	t.Helper()
	// Against another runtime (BERTH_CLIENT_RUNTIME) the test runs too: that
	// is how a gap is shown to be berth's and not the test's.
	if os.Getenv("BERTH_CLIENT_KNOWN_GAPS") != "1" && os.Getenv("BERTH_CLIENT_RUNTIME") == "" {
		t.Skipf("known gap (run with BERTH_CLIENT_KNOWN_GAPS=1): %s", gap)
	}
}

// commandTimeout bounds one client command.
const commandTimeout = 2 * time.Minute

// result is one finished client command.
type result struct {
	argv   []string
	stdout string
	stderr string
	code   int
	trace  string
}

func (r result) String() string {
	return fmt.Sprintf("command: %s\nexit: %d\nstdout: %q\nstderr: %q\nruntime calls:\n%s",
		strings.Join(r.argv, " "), r.code, r.stdout, r.stderr, r.trace)
}

// runCmd runs argv with env added to a clean environment, capturing output,
// exit code and the runtime calls it caused. It never fails t itself.
func runCmd(t *testing.T, env []string, stdin string, argv ...string) result {
	t.Helper()
	return runCmdIO(t, "", env, stdin, nil, argv...)
}

// runCmdIO is the general form: dir is the working directory ("" for the
// test's), files become fds 3, 4, ...
func runCmdIO(t *testing.T, dir string, env []string, stdin string, files []*os.File, argv ...string) result {
	t.Helper()
	off := traceOffset()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}, env...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	} else if argv[0] == "script" {
		// script(1) forwards EOF on its stdin to the terminal and podman
		// then races the container's output against tearing the session
		// down (runc loses output the same way); an idle open pipe keeps
		// the session up until the command exits.
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pw.Close()
		defer pr.Close()
		cmd.Stdin = pr
	}
	cmd.ExtraFiles = files
	cmd.Dir = dir
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	// A hung client must not eat CI's whole budget: kill its process group
	// (conmon and shims set up their own sessions and are left alone).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return result{argv: argv, code: -1, stderr: err.Error()}
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(commandTimeout, func() {
		timedOut.Store(true)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	err := cmd.Wait()
	timer.Stop()
	r := result{argv: argv, stdout: so.String(), stderr: se.String()}
	if timedOut.Load() {
		r.stderr += fmt.Sprintf("\n[killed by the test after %s]", commandTimeout)
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			r.code = ee.ExitCode()
		} else {
			r.code = -1
			r.stderr += err.Error()
		}
	}
	r.trace = traceSince(off)
	return r
}

// inPty runs a shell command line under script(1) so a client that insists on
// a terminal gets one; script -e returns the command's exit code.
func inPty(line string) []string {
	return []string{"script", "-qec", line, "/dev/null"}
}

// shellQuote quotes argv for a sh -c line.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// requireTool skips (fails in CI) without the named program.
func requireTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed (scripts/apt-packages.txt)", n)
			}
			t.Skipf("%s is not installed", n)
		}
	}
}
