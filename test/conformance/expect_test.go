package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"berth/internal/atomicfile"
)

func TestNormalizeDesc(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"  two   spaces\tand tab ", "two spaces and tab"},
		{"cannot delete container e843eb05-7266-4689-9a75-f8d963a44a8b now", "cannot delete container <uuid> now"},
		{"open /tmp/berth-conformance-1/tmp/ocitest123/rootfs/x: no such file", "open <bundle>/rootfs/x: no such file"},
		{"", "(no description)"},
	}
	for _, tt := range tests {
		if got := normalizeDesc(tt.in); got != tt.want {
			t.Errorf("normalizeDesc(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestOutcomesKeys(t *testing.T) {
	r := TestResult{
		Name: "delete",
		TAP: TAPResult{Assertions: []Assertion{
			{Num: 1, Desc: "no ID MUST error", OK: true},
			{Num: 2, Desc: "not stopped MUST error"},
			{Num: 3, Desc: "not stopped MUST have no effect"},
			{Num: 4, Desc: "not stopped MUST error", OK: true},
			{Num: 5, Desc: "skipped", OK: true, Skip: true},
		}},
		Problems: []string{"exit status 1"},
	}
	want := []Outcome{
		{Key: Key{"delete", 1, "no ID MUST error"}},
		{Key: Key{"delete", 1, "not stopped MUST error"}, Failed: true},
		{Key: Key{"delete", 1, "not stopped MUST have no effect"}, Failed: true},
		{Key: Key{"delete", 2, "not stopped MUST error"}},
		{Key: Key{"delete", 1, "skipped"}, Skip: true},
		{Key: Key{"delete", 1, incompleteDesc}, Failed: true},
	}
	if got := r.Outcomes(); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseExpectations(t *testing.T) {
	in := "# header\n" +
		"\n" +
		"delete #1: attempting to `delete` a container MUST generate an error => runc compatibility\n" +
		"# a comment between entries is dropped by -update\n" +
		"hooks #1: (test did not complete cleanly) => suite bug\n" +
		"odd #2: a => b description => the reason\n"
	e, err := ParseExpectations(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"# header", ""}; !reflect.DeepEqual(e.Header, want) {
		t.Errorf("header %q, want %q", e.Header, want)
	}
	want := []Expectation{
		{Key: Key{"delete", 1, "attempting to `delete` a container MUST generate an error"}, Reason: "runc compatibility", Line: 3},
		{Key: Key{"hooks", 1, incompleteDesc}, Reason: "suite bug", Line: 5},
		{Key: Key{"odd", 2, "a => b description"}, Reason: "the reason", Line: 6},
	}
	if !reflect.DeepEqual(e.Entries, want) {
		t.Errorf("entries\n got %+v\nwant %+v", e.Entries, want)
	}
}

func TestParseExpectationsErrors(t *testing.T) {
	tests := []struct{ name, in, wantErr string }{
		{"no reason", "delete #1: foo\n", "line 1: want"},
		{"no occurrence", "delete: foo => bar\n", "line 1: want"},
		{"zero occurrence", "delete #0: foo => bar\n", "positive"},
		{"duplicate", "a #1: x => r\nb #1: y => r\na #1: x => r2\n", "line 3: a #1: x is already listed on line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseExpectations(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFormatRoundTrip(t *testing.T) {
	in := "# header\n\na #1: x => r1\nb #2: y => r2\n"
	e, err := ParseExpectations(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(e.Format()); got != in {
		t.Errorf("Format() = %q, want %q", got, in)
	}
}

func result(name string, asserts ...Assertion) TestResult {
	return TestResult{Name: name, TAP: TAPResult{Assertions: asserts}}
}

func TestCompare(t *testing.T) {
	exp := Expectations{Entries: []Expectation{
		{Key: Key{"delete", 1, "must error"}, Reason: "runc compatibility", Line: 1},
		{Key: Key{"kill", 1, "fixed now"}, Reason: "was broken", Line: 2},
		{Key: Key{"state", 1, "did not run"}, Reason: "subset", Line: 3},
		{Key: Key{"hooks", 1, incompleteDesc}, Reason: unexplained, Line: 4},
	}}
	results := []TestResult{
		result("delete", Assertion{Desc: "must error"}, Assertion{Desc: "ok thing", OK: true}),
		result("kill", Assertion{Desc: "fixed now", OK: true}, Assertion{Desc: "new break"}, Assertion{Desc: "s", OK: true, Skip: true}),
		{Name: "hooks", Problems: []string{"error diagnostic"}},
	}
	v := Compare(results, exp)
	if v.Passed != 2 || v.Failed != 1 || v.ExpectedFailed != 2 || v.Skipped != 1 {
		t.Errorf("counts: %+v", v)
	}
	if len(v.Unexpected) != 1 || v.Unexpected[0].Key != (Key{"kill", 1, "new break"}) {
		t.Errorf("unexpected: %+v", v.Unexpected)
	}
	if len(v.NowPassing) != 1 || v.NowPassing[0].Key != (Key{"kill", 1, "fixed now"}) {
		t.Errorf("now passing: %+v (an entry of a test that did not run must not count)", v.NowPassing)
	}
	if len(v.Unexplain) != 1 || v.Unexplain[0].Line != 4 {
		t.Errorf("unexplained: %+v", v.Unexplain)
	}
	if v.OK() {
		t.Error("OK() = true for a run with differences")
	}

	clean := Compare([]TestResult{result("delete", Assertion{Desc: "must error"})},
		Expectations{Entries: exp.Entries[:1]})
	if !clean.OK() {
		t.Errorf("exact match not OK: %+v", clean)
	}
}

func TestUpdate(t *testing.T) {
	exp := Expectations{
		Header: []string{"# header"},
		Entries: []Expectation{
			{Key: Key{"kill", 1, "fixed now"}, Reason: "was broken"},
			{Key: Key{"delete", 1, "must error"}, Reason: "runc compatibility"},
			{Key: Key{"state", 1, "did not run"}, Reason: "kept"},
		},
	}
	results := []TestResult{
		result("kill", Assertion{Desc: "fixed now", OK: true}, Assertion{Desc: "new break"}),
		result("delete", Assertion{Desc: "must error"}),
	}
	got := Update(results, exp)
	want := []Expectation{
		{Key: Key{"delete", 1, "must error"}, Reason: "runc compatibility"},
		{Key: Key{"kill", 1, "new break"}, Reason: unexplained},
		{Key: Key{"state", 1, "did not run"}, Reason: "kept"},
	}
	if !reflect.DeepEqual(got.Entries, want) {
		t.Errorf("entries\n got %+v\nwant %+v", got.Entries, want)
	}
	if !reflect.DeepEqual(got.Header, exp.Header) {
		t.Errorf("header %q", got.Header)
	}
}

func TestLoadExpectationsMissingAndAtomicWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.txt")
	e, err := LoadExpectations(p)
	if err != nil || len(e.Entries) != 0 {
		t.Fatalf("missing file: %+v, %v", e, err)
	}
	if err := atomicfile.Write(p, []byte("a #1: b => c\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err = LoadExpectations(p)
	if err != nil || len(e.Entries) != 1 {
		t.Fatalf("after write: %+v, %v", e, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp file left behind: %v", ents)
	}
	if err := os.WriteFile(p, []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadExpectations(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("bad file error %v does not name the file", err)
	}
}

func TestFlakyEntries(t *testing.T) {
	exp := Expectations{Entries: []Expectation{
		{Key: Key{"process_rlimits", 1, "soft NOFILE"}, Reason: "flaky: races with ENOMEM", Line: 1},
		{Key: Key{"process_rlimits", 1, incompleteDesc}, Reason: "Flaky: ENOMEM sometimes", Line: 2},
	}}
	// This time the assertion failed and the test completed.
	results := []TestResult{result("process_rlimits", Assertion{Desc: "soft NOFILE"})}
	v := Compare(results, exp)
	if !v.OK() || v.ExpectedFailed != 1 || len(v.FlakyOK) != 1 || v.FlakyOK[0].Line != 2 {
		t.Errorf("flaky entry that passed must be allowed: %+v", v)
	}
	up := Update(results, exp)
	if len(up.Entries) != 2 {
		t.Errorf("Update dropped a flaky entry: %+v", up.Entries)
	}
	if (Expectation{Reason: "not flaky at all"}).IsFlaky() {
		t.Error("IsFlaky matched a reason that only contains the word")
	}
}

func TestUpdateKeepsOrder(t *testing.T) {
	exp := Expectations{Entries: []Expectation{
		{Key: Key{"killsig", 1, "sig"}, Reason: "flaky: race"},
		{Key: Key{"killsig", 2, "sig"}, Reason: "flaky: race"},
		{Key: Key{"killsig", 3, "sig"}, Reason: "flaky: race"},
	}}
	// Only the third occurrence failed, and a new failure appeared.
	results := []TestResult{result("killsig",
		Assertion{Desc: "sig", OK: true}, Assertion{Desc: "sig", OK: true}, Assertion{Desc: "sig"}, Assertion{Desc: "new"})}
	got := Update(results, exp)
	var keys []string
	for _, x := range got.Entries {
		keys = append(keys, x.Key.String())
	}
	want := []string{"killsig #1: sig", "killsig #2: sig", "killsig #3: sig", "killsig #1: new"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("order %q, want %q", keys, want)
	}
}
