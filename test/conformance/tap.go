package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Assertion is one "ok"/"not ok" line of a TAP stream.
type Assertion struct {
	Num  int
	Desc string // description without the leading "- " and without the directive
	OK   bool
	Skip bool // "# SKIP": neither a pass nor a failure
	Todo bool // "# TODO": a failure here is not counted as one
	// Diag is the raw YAML diagnostic block that followed the line, if any:
	// printed for unexpected failures so CI logs show why.
	Diag string
}

// Failed reports whether the assertion counts as a failure.
func (a Assertion) Failed() bool { return !a.OK && !a.Todo }

// TAPResult is what a validation executable printed on stdout.
type TAPResult struct {
	Assertions []Assertion
	// Streams counts the "TAP version" documents. Some executables (for
	// example linux_cgroups_cpus) print two documents one after the other.
	Streams int
	// PlanProblems describes each document whose "1..N" plan is missing or
	// does not match the number of assertions it holds.
	PlanProblems []string
	// Errors holds the "error" values of YAML diagnostic blocks that are not
	// attached to an assertion. runtime-tools' hook tests (hooks, prestart,
	// poststart, ...) report their verdict this way, with a "1..0" plan and
	// no assertion at all, so such a block is the only sign of a failure.
	Errors []string
}

var (
	assertionRE = regexp.MustCompile(`^(not ok|ok)\b\s*([0-9]+)?\s*(?:-\s*)?(.*)$`)
	planRE      = regexp.MustCompile(`^1\.\.([0-9]+)`)
	directiveRE = regexp.MustCompile(`(?i)^(.*?)\s*#\s*(skip|todo)\b\s*(.*)$`)
	yamlErrorRE = regexp.MustCompile(`^\s*"error":\s*"(.*)",?\s*$`)
)

// ParseTAP reads a TAP version 13 stream as runtime-tools' tap-go writes it.
// Only lines starting at column 0 are TAP lines; everything indented belongs
// to a YAML block or to runtimetest's relayed output.
func ParseTAP(r io.Reader) (TAPResult, error) {
	var res TAPResult
	plan, count := -1, 0 // of the current document
	endDoc := func() {
		if res.Streams == 0 && plan < 0 && count == 0 {
			return
		}
		switch {
		case plan < 0:
			res.PlanProblems = append(res.PlanProblems, fmt.Sprintf("document %d has no plan after %d assertions", max(res.Streams, 1), count))
		case plan != count:
			res.PlanProblems = append(res.PlanProblems, fmt.Sprintf("document %d planned %d assertions but printed %d", max(res.Streams, 1), plan, count))
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	inYAML := false
	attached := false // the current YAML block follows an assertion line
	lastWasAssertion := false
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if inYAML {
			if trimmed == "..." {
				inYAML = false
				continue
			}
			if attached {
				a := &res.Assertions[len(res.Assertions)-1]
				a.Diag += line + "\n"
				continue
			}
			if m := yamlErrorRE.FindStringSubmatch(line); m != nil {
				msg, err := strconv.Unquote(`"` + m[1] + `"`)
				if err != nil {
					msg = m[1]
				}
				res.Errors = append(res.Errors, msg)
			}
			continue
		}
		if trimmed == "---" && strings.HasPrefix(line, " ") {
			inYAML = true
			attached = lastWasAssertion
			continue
		}
		if m := assertionRE.FindStringSubmatch(line); m != nil {
			a := Assertion{OK: m[1] == "ok", Num: len(res.Assertions) + 1}
			if m[2] != "" {
				n, err := strconv.Atoi(m[2])
				if err == nil {
					a.Num = n
				}
			}
			desc := m[3]
			if d := directiveRE.FindStringSubmatch(desc); d != nil {
				if strings.EqualFold(d[2], "skip") {
					a.Skip = true
				} else {
					a.Todo = true
				}
				desc = d[1]
				if desc == "" {
					// "ok 243 # SKIP reason": the reason is all the
					// description there is.
					desc = d[3]
				}
			}
			a.Desc = strings.TrimSpace(desc)
			res.Assertions = append(res.Assertions, a)
			count++
			lastWasAssertion = true
			continue
		}
		if m := planRE.FindStringSubmatch(line); m != nil && plan < 0 {
			n, _ := strconv.Atoi(m[1])
			plan = n
			lastWasAssertion = false
			continue
		}
		if strings.HasPrefix(line, "TAP version") {
			endDoc()
			res.Streams++
			plan, count = -1, 0
			lastWasAssertion = false
		}
		// Other lines ("# comment", "Refer to: ...") keep a following YAML
		// block attached to the previous assertion.
	}
	if err := sc.Err(); err != nil {
		return res, err
	}
	endDoc()
	return res, nil
}
