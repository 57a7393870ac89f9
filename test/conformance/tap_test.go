package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseTAP(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		assertions []Assertion
		problems   []string
		errors     []string
		streams    int
	}{
		{
			name: "pass, fail, skip, todo",
			in: "TAP version 13\n" +
				"ok 1 - state MUST work\n" +
				"not ok 2 - delete MUST fail\n" +
				"ok 3 # SKIP linux.sysctl not set\n" +
				"not ok 4 - flaky thing # TODO later\n" +
				"1..4\n",
			assertions: []Assertion{
				{Num: 1, Desc: "state MUST work", OK: true},
				{Num: 2, Desc: "delete MUST fail"},
				{Num: 3, Desc: "linux.sysctl not set", OK: true, Skip: true},
				{Num: 4, Desc: "flaky thing", Todo: true},
			},
			streams: 1,
		},
		{
			name: "yaml after an assertion is its diagnostic, even past a Refer line",
			in: "TAP version 13\n" +
				"not ok 1 - x\n" +
				"Refer to: https://example/spec\n" +
				"  ---\n" +
				"  {\n" +
				"    \"error\": \"exit status 1\"\n" +
				"  }\n" +
				"  ...\n" +
				"1..1\n",
			assertions: []Assertion{{Num: 1, Desc: "x", Diag: "  {\n    \"error\": \"exit status 1\"\n  }\n"}},
			streams:    1,
		},
		{
			name: "hook tests: an error block outside any assertion and a 1..0 plan",
			in: "TAP version 13\n" +
				"  ---\n" +
				"  {\n" +
				"    \"error\": \"Hooks MUST be called in the listed order\\nRefer to: https://x\"\n" +
				"  }\n" +
				"  ...\n" +
				"1..0\n",
			errors:  []string{"Hooks MUST be called in the listed order\nRefer to: https://x"},
			streams: 1,
		},
		{
			name: "two documents, each with its own plan",
			in: "TAP version 13\nok 1 - a\n1..1\n" +
				"TAP version 13\n1..0\n",
			assertions: []Assertion{{Num: 1, Desc: "a", OK: true}},
			streams:    2,
		},
		{
			name:       "crash before the plan",
			in:         "TAP version 13\nok 1 - a\nok 2 - b\n",
			assertions: []Assertion{{Num: 1, Desc: "a", OK: true}, {Num: 2, Desc: "b", OK: true}},
			problems:   []string{"document 1 has no plan after 2 assertions"},
			streams:    1,
		},
		{
			name:       "plan larger than what was printed",
			in:         "TAP version 13\n1..3\nok 1 - a\n",
			assertions: []Assertion{{Num: 1, Desc: "a", OK: true}},
			problems:   []string{"document 1 planned 3 assertions but printed 1"},
			streams:    1,
		},
		{
			name: "no output at all is not a plan problem (process_rlimits_fail prints nothing when it passes)",
			in:   "",
		},
		{
			name: "indented TAP relayed from runtimetest is not counted",
			in: "TAP version 13\nnot ok 1 - inside\n  ---\n  {\n    \"stdout\": \"x\"\n  }\n  ...\n" +
				"  ok 7 - nested\n1..1\n",
			assertions: []Assertion{{Num: 1, Desc: "inside", Diag: "  {\n    \"stdout\": \"x\"\n  }\n"}},
			streams:    1,
		},
		{
			name:       "number missing: position is used",
			in:         "TAP version 13\nok - a\nnot ok\n1..2\n",
			assertions: []Assertion{{Num: 1, Desc: "a", OK: true}, {Num: 2, Desc: ""}},
			streams:    1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTAP(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Assertions, tt.assertions) {
				t.Errorf("assertions:\n got %+v\nwant %+v", got.Assertions, tt.assertions)
			}
			if !reflect.DeepEqual(got.PlanProblems, tt.problems) {
				t.Errorf("plan problems: got %q, want %q", got.PlanProblems, tt.problems)
			}
			if !reflect.DeepEqual(got.Errors, tt.errors) {
				t.Errorf("errors: got %q, want %q", got.Errors, tt.errors)
			}
			if got.Streams != tt.streams {
				t.Errorf("streams: got %d, want %d", got.Streams, tt.streams)
			}
		})
	}
}

func TestAssertionFailed(t *testing.T) {
	tests := []struct {
		a    Assertion
		want bool
	}{
		{Assertion{OK: true}, false},
		{Assertion{OK: false}, true},
		{Assertion{OK: false, Todo: true}, false},
		{Assertion{OK: true, Skip: true}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Failed(); got != tt.want {
			t.Errorf("%+v.Failed() = %v, want %v", tt.a, got, tt.want)
		}
	}
}
