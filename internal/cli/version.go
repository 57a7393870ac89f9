package cli

import (
	"runtime"
	"runtime/debug"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Version and Commit come from the build: scripts/build.sh sets them with
// -ldflags -X (the release tag as git describe gives it, or
// 0.0.0-N-gREV before the first tag, and the full revision). A build
// without them (go build, go run) falls back to what the Go toolchain
// recorded (debug.ReadBuildInfo: the module's version, the VCS revision
// when -buildvcs stamped one), then to "unknown".
var (
	Version = ""
	Commit  = ""
)

// version is berth's version, as --version and `features` report it.
func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return strings.TrimPrefix(bi.Main.Version, "v")
	}
	return "unknown"
}

// commit is the revision berth was built from, "" when the build did not
// say; "-dirty" marks a tree with uncommitted changes.
func commit() string {
	if Commit != "" {
		return Commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}

// versionString is what --version prints after "berth version ", in
// runc's layout, which clients parse (go-runc reads "runc version X",
// "commit: ", "spec: "; a berth installed as runc prints "runc version").
func versionString() string {
	v := version()
	if c := commit(); c != "" {
		v += "\ncommit: " + c
	}
	v += "\nspec: " + specs.Version
	v += "\ngo: " + runtime.Version()
	v += "\nlibseccomp: none (pure-Go seccomp)"
	return v
}
