package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"berth/internal/testutil"
)

var idSeq atomic.Int64

// rt is one isolated berth state root for a test.
type rt struct {
	t    *testing.T
	root string
}

func newRT(t *testing.T) *rt {
	t.Helper()
	testutil.RequireRoot(t)
	r := &rt{t: t, root: t.TempDir()}
	t.Cleanup(func() {
		// Remove whatever a failing test left behind.
		ids, _ := os.ReadDir(r.root)
		for _, e := range ids {
			exec.Command(berthBin, "--root", r.root, "delete", "--force", e.Name()).Run()
		}
	})
	return r
}

func (r *rt) id() string { return fmt.Sprintf("it-%d-%d", os.Getpid(), idSeq.Add(1)) }

type result struct {
	stdout, stderr string
	code           int
}

// run runs berth with --root and returns what it printed and its exit code.
func (r *rt) run(args ...string) result {
	r.t.Helper()
	return r.runIn("", nil, args...)
}

func (r *rt) runIn(dir string, stdin *os.File, args ...string) result {
	r.t.Helper()
	cmd := exec.Command(berthBin, append([]string{"--root", r.root}, args...)...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = stdin
	}
	// Files, not pipes: a detached container keeps its stdio open, so a
	// pipe would not see EOF when berth exits (as with runc).
	outf, err := os.CreateTemp(r.t.TempDir(), "stdout")
	if err != nil {
		r.t.Fatal(err)
	}
	defer outf.Close()
	errf, err := os.CreateTemp(r.t.TempDir(), "stderr")
	if err != nil {
		r.t.Fatal(err)
	}
	defer errf.Close()
	cmd.Stdout, cmd.Stderr = outf, errf
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	read := func(f *os.File) string { b, _ := os.ReadFile(f.Name()); return string(b) }
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		r.t.Fatalf("berth %v timed out; stderr: %s", args, read(errf))
	}
	return result{read(outf), read(errf), cmd.ProcessState.ExitCode()}
}

// must runs berth and fails the test unless it exits 0.
func (r *rt) must(args ...string) string {
	r.t.Helper()
	res := r.run(args...)
	if res.code != 0 {
		r.t.Fatalf("berth %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}
