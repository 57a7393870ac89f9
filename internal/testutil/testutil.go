// Package testutil holds helpers shared by berth's tests: root gating and
// small builders. It is imported only from _test.go files.
package testutil

import (
	"os"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where a test that
// cannot run is a failure, not a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireRoot skips t unless the test runs as root; in CI it fails instead,
// because CI always runs as root and a skip there would hide a broken test.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if InCI() {
		t.Fatalf("test needs root, and CI must run it")
	}
	t.Skip("test needs root")
}

// Require skips (or, in CI, fails) t when cond is false, naming why.
func Require(t testing.TB, cond bool, why string) {
	t.Helper()
	if cond {
		return
	}
	if InCI() {
		t.Fatalf("cannot run in CI: %s", why)
	}
	t.Skip(why)
}
