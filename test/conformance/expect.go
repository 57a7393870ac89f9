package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// A Key names one assertion stably across runs: the test, the assertion's
// normalised description, and which occurrence of that description it is
// within the test (descriptions repeat, e.g. "cpu shares is set correctly"
// once per configuration tried). TAP numbers are deliberately not part of
// the key: an assertion added or dropped earlier in a test (an error path
// that prints one more line) would renumber everything after it.
type Key struct {
	Test  string
	Occur int
	Desc  string
}

func (k Key) String() string { return fmt.Sprintf("%s #%d: %s", k.Test, k.Occur, k.Desc) }

// incompleteDesc is the description of the pseudo-assertion that stands for a
// whole test that did not finish cleanly: it exited non-zero or timed out,
// its plan did not match, or it reported an error outside any assertion.
const incompleteDesc = "(test did not complete cleanly)"

// flakyPrefix starts the reason of an entry that fails only sometimes (a
// race in the suite or the runtime). Such an entry is allowed to fail and
// allowed to pass; use it only with evidence of both outcomes, and say what
// the race is.
const flakyPrefix = "flaky:"

// IsFlaky reports whether the entry is marked flaky.
func (x Expectation) IsFlaky() bool {
	return strings.HasPrefix(strings.ToLower(x.Reason), flakyPrefix)
}

// unexplained marks an entry written by -update that still needs a reason.
// A run refuses such entries, so every allowed failure carries its reason.
const unexplained = "UNEXPLAINED"

var (
	uuidRE   = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	bundleRE = regexp.MustCompile(`\S*/ocitest[0-9]+`)
	spaceRE  = regexp.MustCompile(`\s+`)
)

// normalizeDesc removes what differs between runs of the same assertion:
// container IDs (random UUIDs), temporary bundle paths, and whitespace runs.
func normalizeDesc(s string) string {
	s = uuidRE.ReplaceAllString(s, "<uuid>")
	s = bundleRE.ReplaceAllString(s, "<bundle>")
	s = spaceRE.ReplaceAllString(strings.TrimSpace(s), " ")
	if s == "" {
		s = "(no description)"
	}
	return s
}

// Outcome is the verdict on one assertion of a run.
type Outcome struct {
	Key    Key
	Failed bool
	Skip   bool
	Todo   bool
}

// TestResult is what running one validation executable produced.
type TestResult struct {
	Name string
	TAP  TAPResult
	// Problems are test-level reasons for incompleteDesc: exit status,
	// timeout, plan mismatch, unattached error diagnostics.
	Problems []string
}

// Outcomes turns a test's TAP into keyed outcomes, plus the incomplete
// pseudo-assertion when the test as a whole went wrong.
func (r TestResult) Outcomes() []Outcome {
	seen := map[string]int{}
	var out []Outcome
	for _, a := range r.TAP.Assertions {
		d := normalizeDesc(a.Desc)
		seen[d]++
		out = append(out, Outcome{
			Key:    Key{Test: r.Name, Occur: seen[d], Desc: d},
			Failed: a.Failed(),
			Skip:   a.Skip,
			Todo:   a.Todo,
		})
	}
	if len(r.Problems) > 0 {
		out = append(out, Outcome{Key: Key{Test: r.Name, Occur: 1, Desc: incompleteDesc}, Failed: true})
	}
	return out
}

// Expectation is one line of the expectations file.
type Expectation struct {
	Key    Key
	Reason string
	Line   int
}

// Expectations is the parsed file: header comments are kept for -update.
type Expectations struct {
	Header  []string
	Entries []Expectation
}

// ByKey indexes the entries.
func (e Expectations) ByKey() map[Key]Expectation {
	m := make(map[Key]Expectation, len(e.Entries))
	for _, x := range e.Entries {
		m[x.Key] = x
	}
	return m
}

var entryRE = regexp.MustCompile(`^(\S+) #([0-9]+): (.+) => (.+)$`)

// ParseExpectations reads the expectations file format:
//
//	# comment lines (kept by -update when they come before the first entry)
//	<test> #<occurrence>: <description> => <reason>
//
// The description is everything up to the last " => ", so a description may
// itself contain " => " but a reason may not.
func ParseExpectations(r io.Reader) (Expectations, error) {
	var e Expectations
	seen := map[Key]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			if len(e.Entries) == 0 {
				e.Header = append(e.Header, line)
			}
			continue
		}
		m := entryRE.FindStringSubmatch(line)
		if m == nil {
			return e, fmt.Errorf("line %d: want %q, got %q", n, "<test> #<n>: <description> => <reason>", line)
		}
		occ, err := strconv.Atoi(m[2])
		if err != nil || occ < 1 {
			return e, fmt.Errorf("line %d: occurrence %q must be a positive number", n, m[2])
		}
		// The greedy description group ends at the last " => ".
		desc, reason := m[3], strings.TrimSpace(m[4])
		k := Key{Test: m[1], Occur: occ, Desc: normalizeDesc(desc)}
		if prev, dup := seen[k]; dup {
			return e, fmt.Errorf("line %d: %s is already listed on line %d", n, k, prev)
		}
		seen[k] = n
		e.Entries = append(e.Entries, Expectation{Key: k, Reason: reason, Line: n})
	}
	return e, sc.Err()
}

// LoadExpectations reads path; a missing file is an empty list.
func LoadExpectations(path string) (Expectations, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return Expectations{}, nil
	}
	if err != nil {
		return Expectations{}, err
	}
	defer f.Close()
	e, err := ParseExpectations(f)
	if err != nil {
		return e, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// Format writes the file back: header, then entries sorted by test and in
// the order the test prints them.
func (e Expectations) Format() []byte {
	var b bytes.Buffer
	for _, h := range e.Header {
		b.WriteString(h)
		b.WriteByte('\n')
	}
	for _, x := range e.Entries {
		fmt.Fprintf(&b, "%s => %s\n", x.Key, x.Reason)
	}
	return b.Bytes()
}

// Verdict compares a run with the expectations.
type Verdict struct {
	Passed, Failed, ExpectedFailed, Skipped, Todo int

	Unexpected []Outcome     // failed, not listed
	NowPassing []Expectation // listed (not flaky) for a test that ran, but did not fail
	FlakyOK    []Expectation // listed as flaky, did not fail this time
	Unexplain  []Expectation // listed without a reason
}

// OK reports whether the run matches the list exactly.
func (v Verdict) OK() bool {
	return len(v.Unexpected) == 0 && len(v.NowPassing) == 0 && len(v.Unexplain) == 0
}

// Compare judges outcomes against e. Entries of tests that did not run (a
// subset was selected) are neither confirmed nor reported.
func Compare(results []TestResult, e Expectations) Verdict {
	var v Verdict
	want := e.ByKey()
	ran := map[string]bool{}
	failed := map[Key]bool{}
	for _, r := range results {
		ran[r.Name] = true
		for _, o := range r.Outcomes() {
			switch {
			case o.Failed:
				failed[o.Key] = true
				if _, ok := want[o.Key]; ok {
					v.ExpectedFailed++
				} else {
					v.Failed++
					v.Unexpected = append(v.Unexpected, o)
				}
			case o.Todo:
				v.Todo++
			case o.Skip:
				v.Skipped++
			default:
				v.Passed++
			}
		}
	}
	for _, x := range e.Entries {
		if x.Reason == unexplained {
			v.Unexplain = append(v.Unexplain, x)
		}
		if ran[x.Key.Test] && !failed[x.Key] {
			if x.IsFlaky() {
				v.FlakyOK = append(v.FlakyOK, x)
			} else {
				v.NowPassing = append(v.NowPassing, x)
			}
		}
	}
	return v
}

// Update returns the list that makes this run pass: every failure of a test
// that ran is listed (keeping known reasons, marking new ones unexplained),
// entries of tests that ran and no longer fail are dropped unless marked
// flaky, and entries of tests that did not run are kept.
func Update(results []TestResult, e Expectations) Expectations {
	old := e.ByKey()
	ran := map[string]bool{}
	var entries []Expectation
	for _, r := range results {
		ran[r.Name] = true
		for _, o := range r.Outcomes() {
			if !o.Failed {
				continue
			}
			reason := unexplained
			if x, ok := old[o.Key]; ok {
				reason = x.Reason
			}
			entries = append(entries, Expectation{Key: o.Key, Reason: reason})
		}
	}
	listed := map[Key]bool{}
	for _, x := range entries {
		listed[x.Key] = true
	}
	for _, x := range e.Entries {
		if !ran[x.Key.Test] || (x.IsFlaky() && !listed[x.Key]) {
			entries = append(entries, x)
		}
	}
	// By test name; within a test, entries keep their place in the old file
	// (so a flaky entry does not move around between updates) and new ones
	// follow in the order the test printed them.
	pos := map[Key]int{}
	for i, x := range e.Entries {
		pos[x.Key] = i
	}
	rank := func(x Expectation) int {
		if p, ok := pos[x.Key]; ok {
			return p
		}
		return len(e.Entries)
	}
	sort.SliceStable(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if a.Key.Test != b.Key.Test {
			return a.Key.Test < b.Key.Test
		}
		return rank(a) < rank(b)
	})
	return Expectations{Header: e.Header, Entries: entries}
}
