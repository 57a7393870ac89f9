// Command wrapper is what the clients tests install as "runc": it appends one
// line per invocation (pid, cwd, every argument single-quoted so the line can
// be pasted into a shell) to a trace log, then execs the runtime under test
// with its argv, environment and file descriptors untouched. The paths are
// set at build time (-ldflags -X), because clients call the runtime with a
// scrubbed environment. It is a Go program rather than a shell script so
// that nothing extra ever reaches the runtime's stderr (a shell complains
// when started in a removed directory, which containerd's cleanup does).
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

var (
	traceLog string // appended to
	target   string // the runtime exec'd
)

func main() {
	cwd, _ := os.Getwd()
	var b strings.Builder
	fmt.Fprintf(&b, "%d cwd=%s", os.Getpid(), cwd)
	for _, a := range os.Args[1:] {
		b.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	b.WriteString("\n")
	// One write with O_APPEND: concurrent invocations do not interleave.
	if f, err := os.OpenFile(traceLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o644); err == nil {
		_, _ = f.WriteString(b.String())
		_ = f.Close()
	}
	// argv[0] stays the wrapper's: the runtime sees itself installed as runc.
	err := syscall.Exec(target, os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "clients test wrapper: exec %s: %v\n", target, err)
	os.Exit(127)
}
