// Command conformance runs opencontainers/runtime-tools' validation suite
// against an OCI runtime and compares the result with a checked-in list of
// assertions that are allowed to fail (test/conformance/expected-failures.txt).
//
// It fails on any failure that is not listed and on any listed failure that
// now passes, so the list can only shrink. scripts/conformance.sh is the
// entry point; see bench/README.md and the flags below.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"berth/internal/atomicfile"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	runtime string
	expect  string
	update  bool
	cache   string
	filter  string
	timeout time.Duration
	total   time.Duration
	logs    string
	retries int
}

func defaultCache() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		base = "/var/cache"
	}
	return filepath.Join(base, "berth-conformance")
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.runtime, "runtime", "", "OCI runtime binary to validate (required)")
	fs.StringVar(&o.expect, "expect", "test/conformance/expected-failures.txt", "expectations file: assertions allowed to fail, with reasons")
	fs.BoolVar(&o.update, "update", false, "rewrite the expectations file from this run (new entries get reason "+unexplained+" and must be explained before a run passes)")
	fs.StringVar(&o.cache, "cache", defaultCache(), "where the built suite is cached between runs")
	fs.StringVar(&o.filter, "run", "", "only run tests whose name matches this regular expression")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "time limit for one validation executable")
	fs.DurationVar(&o.total, "total", 20*time.Minute, "time limit for the whole run, so a hanging runtime cannot eat CI's budget (a healthy run takes about 2 minutes)")
	fs.IntVar(&o.retries, "retries", 1, "times a test that disagrees with the expectations is run again (0: never)")
	fs.StringVar(&o.logs, "logs", "", "directory for each test's TAP and stderr (default <cache>/last-run)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: conformance -runtime PATH [-expect FILE] [-update] [-run REGEX]\n\n"+
			"Runs runtime-tools %s validation against PATH and compares with FILE.\n"+
			"Example: go run ./test/conformance -runtime $PWD/bin/berth\n\n", suiteVersion)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (the runtime is given with -runtime)", fs.Args())
	}
	if o.runtime == "" {
		return o, errors.New("-runtime is required")
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("-timeout %s must be positive", o.timeout)
	}
	if o.total <= 0 {
		return o, fmt.Errorf("-total %s must be positive", o.total)
	}
	if o.retries < 0 {
		return o, fmt.Errorf("-retries %d must not be negative", o.retries)
	}
	if o.logs == "" {
		o.logs = filepath.Join(o.cache, "last-run")
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "conformance:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.total)
	defer cancel()
	code, err := conform(ctx, o, stdout, stderr)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("the run took longer than -total %s; stopped (%w)", o.total, err)
	}
	if err != nil {
		fmt.Fprintln(stderr, "conformance:", err)
		return 2
	}
	return code
}

func conform(ctx context.Context, o options, stdout, stderr io.Writer) (int, error) {
	if os.Geteuid() != 0 {
		return 0, errors.New("must run as root: the suite creates containers")
	}
	for _, tool := range []string{"go", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			return 0, fmt.Errorf("%s is needed: %w", tool, err)
		}
	}
	rt, err := exec.LookPath(o.runtime)
	if err != nil {
		return 0, fmt.Errorf("runtime: %w", err)
	}
	if rt, err = filepath.Abs(rt); err != nil {
		return 0, err
	}
	var re *regexp.Regexp
	if o.filter != "" {
		if re, err = regexp.Compile(o.filter); err != nil {
			return 0, fmt.Errorf("-run: %w", err)
		}
	}
	exp, err := LoadExpectations(o.expect)
	if err != nil {
		return 0, err
	}

	// Taken before the build too: concurrent builds into one cache would
	// race on swapping the built tree in.
	lock, err := Lock(ctx, stderr)
	if err != nil {
		return 0, fmt.Errorf("lock: %w", err)
	}
	defer lock.Close()

	start := time.Now()
	suite, err := PrepareSuite(ctx, o.cache, stderr)
	if err != nil {
		return 0, fmt.Errorf("prepare suite: %w", err)
	}
	buildTime := time.Since(start)
	for _, x := range exp.Entries {
		if _, ok := suite.Tests[x.Key.Test]; !ok {
			return 0, fmt.Errorf("%s line %d: no test named %q in the suite", o.expect, x.Line, x.Key.Test)
		}
	}
	var names []string
	for _, n := range suite.Names() {
		if re == nil || re.MatchString(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("-run %q matches no test", o.filter)
	}
	if err := os.MkdirAll(o.logs, 0o755); err != nil {
		return 0, err
	}
	// Only the previous run's own files go: -logs may name a directory
	// that holds other things.
	old, err := filepath.Glob(filepath.Join(o.logs, "*.tap"))
	if err != nil {
		return 0, err
	}
	olderr, _ := filepath.Glob(filepath.Join(o.logs, "*.err"))
	for _, f := range append(old, olderr...) {
		if err := os.Remove(f); err != nil {
			return 0, err
		}
	}

	RemoveStale(stderr)
	sb, err := NewSandbox(rt)
	if err != nil {
		return 0, fmt.Errorf("sandbox: %w", err)
	}
	defer func() {
		if err := sb.Clean(); err != nil {
			fmt.Fprintln(stderr, "conformance: warning: final cleanup:", err)
		}
		if err := sb.Close(); err != nil {
			fmt.Fprintln(stderr, "conformance: warning:", err)
		}
	}()

	fmt.Fprintf(stdout, "conformance: runtime-tools %s against %s (%d tests, expectations %s)\n", suiteVersion, rt, len(names), o.expect)
	want := exp.ByKey()
	var results []TestResult
	var retried []string // disagreed with the list, then agreed on a retry
	runStart := time.Now()
	for i, name := range names {
		t0 := time.Now()
		res, err := runClean(ctx, sb, suite, name, o, stderr)
		if err != nil {
			return 0, err
		}
		retry := ""
		// The suite has timing races (killsig signals a shell that may not
		// have installed its trap yet, and as PID 1 it then ignores the
		// signal). A test that disagrees with the list is run again and the
		// retry decides; the first attempt's logs are kept, and the summary
		// names every test that needed it. -update records first attempts.
		for attempt := 1; attempt <= o.retries && !o.update && !agrees(res, exp); attempt++ {
			if err := keepAttempt(o.logs, name, attempt); err != nil {
				return 0, err
			}
			if res, err = runClean(ctx, sb, suite, name, o, stderr); err != nil {
				return 0, err
			}
			retry = fmt.Sprintf("  (retry %d)", attempt)
			if agrees(res, exp) {
				retried = append(retried, name)
			}
		}
		results = append(results, res)
		var ok, bad, xfail, skip int
		for _, oc := range res.Outcomes() {
			switch {
			case oc.Failed:
				if _, listed := want[oc.Key]; listed {
					xfail++
				} else {
					bad++
				}
			case oc.Skip:
				skip++
			case !oc.Todo:
				ok++
			}
		}
		mark := retry
		if bad > 0 {
			mark += "  <-- unexpected"
		}
		fmt.Fprintf(stdout, "[%2d/%d] %-32s %4d ok %3d fail %3d xfail %3d skip %6.1fs%s\n",
			i+1, len(names), name, ok, bad, xfail, skip, time.Since(t0).Seconds(), mark)
	}
	runTime := time.Since(runStart)

	v := Compare(results, exp)
	report(stdout, results, v)
	fmt.Fprintf(stdout, "\nsummary: %d tests run in %s (suite build/cache check %s); assertions: %d passed, %d failed unexpectedly, %d expected failures, %d skipped",
		len(results), runTime.Round(time.Second), buildTime.Round(100*time.Millisecond), v.Passed, v.Failed, v.ExpectedFailed, v.Skipped)
	if v.Todo > 0 {
		fmt.Fprintf(stdout, ", %d todo", v.Todo)
	}
	fmt.Fprintln(stdout)
	if len(retried) > 0 {
		fmt.Fprintf(stdout, "flaky this run (disagreed with the list, agreed on retry): %s\n", strings.Join(retried, ", "))
	}
	fmt.Fprintf(stdout, "cleanup: %d leftover containers force-deleted, %d leaked mounts detached, %d test cgroups removed\n",
		sb.LeftContainers, sb.LeftMounts, sb.LeftCgroups)
	fmt.Fprintf(stdout, "logs: %s\n", o.logs)

	if o.update {
		up := Update(results, exp)
		if err := atomicfile.Write(o.expect, up.Format(), 0o644); err != nil {
			return 0, fmt.Errorf("update %s: %w", o.expect, err)
		}
		n := 0
		for _, x := range up.Entries {
			if x.Reason == unexplained {
				n++
			}
		}
		fmt.Fprintf(stdout, "updated %s: %d entries", o.expect, len(up.Entries))
		if n > 0 {
			fmt.Fprintf(stdout, ", %d marked %s: replace each with the reason before committing", n, unexplained)
		}
		fmt.Fprintln(stdout)
		return 0, nil
	}
	if !v.OK() {
		fmt.Fprintln(stdout, "FAIL: the run does not match the expectations (see above); fix the runtime, or explain the change in", o.expect)
		return 1, nil
	}
	fmt.Fprintln(stdout, "PASS")
	return 0, nil
}

// runClean runs one test and then removes what it left behind.
func runClean(ctx context.Context, sb *Sandbox, suite Suite, name string, o options, stderr io.Writer) (TestResult, error) {
	res, err := sb.RunTest(ctx, suite, name, o.logs, o.timeout)
	if cerr := sb.Clean(); cerr != nil {
		fmt.Fprintf(stderr, "conformance: warning: cleanup after %s: %v\n", name, cerr)
	}
	return res, err
}

// agrees reports whether one test's result matches the expectations: no
// unlisted failure and no listed (non-flaky) failure that passed.
func agrees(res TestResult, exp Expectations) bool {
	v := Compare([]TestResult{res}, exp)
	return len(v.Unexpected) == 0 && len(v.NowPassing) == 0
}

// keepAttempt renames a test's logs to <name>.attemptN.{tap,err} before it
// is run again.
func keepAttempt(logs, name string, attempt int) error {
	for _, ext := range []string{".tap", ".err"} {
		from := filepath.Join(logs, name+ext)
		to := filepath.Join(logs, fmt.Sprintf("%s.attempt%d%s", name, attempt, ext))
		if err := os.Rename(from, to); err != nil {
			return err
		}
	}
	return nil
}

// report prints what differs from the expectations, with the diagnostics
// needed to act on it from a CI log alone.
func report(w io.Writer, results []TestResult, v Verdict) {
	byTest := map[string]TestResult{}
	for _, r := range results {
		byTest[r.Name] = r
	}
	if len(v.Unexpected) > 0 {
		fmt.Fprintf(w, "\nUNEXPECTED FAILURES (%d):\n", len(v.Unexpected))
		for _, o := range v.Unexpected {
			fmt.Fprintf(w, "  %s\n", o.Key)
			r := byTest[o.Key.Test]
			if o.Key.Desc == incompleteDesc {
				for _, p := range r.Problems {
					fmt.Fprintf(w, "      %s\n", p)
				}
				continue
			}
			if d := diagFor(r, o.Key); d != "" {
				fmt.Fprint(w, indentClip(d, "    ", 15, 300))
			}
		}
	}
	if len(v.NowPassing) > 0 {
		fmt.Fprintf(w, "\nLISTED FAILURES THAT NO LONGER FAIL (%d): remove them from the list\n", len(v.NowPassing))
		for _, x := range v.NowPassing {
			fmt.Fprintf(w, "  line %d: %s\n", x.Line, x.Key)
		}
	}
	if len(v.FlakyOK) > 0 {
		fmt.Fprintf(w, "\nflaky entries that did not fail this time (%d, allowed):\n", len(v.FlakyOK))
		for _, x := range v.FlakyOK {
			fmt.Fprintf(w, "  line %d: %s\n", x.Line, x.Key)
		}
	}
	if len(v.Unexplain) > 0 {
		fmt.Fprintf(w, "\nLISTED WITHOUT A REASON (%d): replace %s with why it fails\n", len(v.Unexplain), unexplained)
		for _, x := range v.Unexplain {
			fmt.Fprintf(w, "  line %d: %s\n", x.Line, x.Key)
		}
	}
}

// indentClip indents text and clips it to maxLines lines of maxCols bytes:
// some diagnostics embed runtimetest's whole TAP output (hundreds of lines),
// and the complete text is in the logs directory anyway.
func indentClip(text, indent string, maxLines, maxCols int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	var b strings.Builder
	for i, l := range lines {
		if i == maxLines {
			fmt.Fprintf(&b, "%s... (%d more lines in the logs)\n", indent, len(lines)-maxLines)
			break
		}
		if len(l) > maxCols {
			l = l[:maxCols] + "..."
		}
		b.WriteString(indent + l + "\n")
	}
	return b.String()
}

// diagFor finds the YAML diagnostic of the assertion with key k.
func diagFor(r TestResult, k Key) string {
	seen := map[string]int{}
	for _, a := range r.TAP.Assertions {
		d := normalizeDesc(a.Desc)
		seen[d]++
		if d == k.Desc && seen[d] == k.Occur {
			return a.Diag
		}
	}
	return ""
}
