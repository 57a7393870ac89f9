package cli

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestVersionString(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "1.2.3-4-gabcdef012345", "abcdef0123456789abcdef0123456789abcdef01"
	lines := strings.Split(versionString(), "\n")
	want := []string{"1.2.3-4-gabcdef012345", "commit: abcdef0123456789abcdef0123456789abcdef01", "spec: " + specs.Version}
	if len(lines) < 3 || lines[0] != want[0] || lines[1] != want[1] || lines[2] != want[2] {
		t.Errorf("versionString() = %q, want it to start %q", lines, want)
	}
	// Without -ldflags the build info decides, and the first line is
	// still a version and the layout runc's.
	Version, Commit = "", ""
	lines = strings.Split(versionString(), "\n")
	if lines[0] == "" || strings.Contains(lines[0], " ") {
		t.Errorf("fallback version %q", lines[0])
	}
	if !strings.HasPrefix(lines[len(lines)-3], "spec: ") {
		t.Errorf("fallback layout %q", lines)
	}
}
