// Package depcheck enforces the import rules of DESIGN.md §1, like
// go-containerregistry's internal/depcheck: the plan compiler and executor stay free of lifecycle code,
// platform code stays free of lifecycle code, images and networking stay
// independent of each other and of the runtime.
package depcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not on PATH")
	}
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

func hasPrefixAny(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if s == p || strings.HasPrefix(s, p+"/") {
			return true
		}
	}
	return false
}

// TestPlanStaysPlatform: the plan compiler and the executor never reach
// lifecycle, CLI, image or network code, not even transitively.
func TestPlanStaysPlatform(t *testing.T) {
	for _, pkg := range []string{"berth/internal/linux/plan", "berth/internal/nsenter"} {
		for _, dep := range goList(t, "-deps", pkg) {
			if hasPrefixAny(dep, "berth/internal/runtime", "berth/internal/state", "berth/internal/cli",
				"berth/internal/image", "berth/internal/network", "berth/internal/oneshot") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}

// TestDirectImports checks each package's own imports against its rule.
func TestDirectImports(t *testing.T) {
	lines := goList(t, "-f", "{{.ImportPath}}={{join .Imports \",\"}}", "./...")
	for _, l := range lines {
		pkg, imps, _ := strings.Cut(l, "=")
		for _, imp := range strings.Split(imps, ",") {
			if imp == "" {
				continue
			}
			if err := rule(pkg, imp); err != "" {
				t.Errorf("%s imports %s: %s", pkg, imp, err)
			}
		}
	}
}

func rule(pkg, imp string) string {
	berth := strings.HasPrefix(imp, "berth/")
	switch {
	case hasPrefixAny(pkg, "berth/internal/linux"):
		if berth && !hasPrefixAny(imp, "berth/internal/linux") {
			return "linux/* imports only linux/*, the standard library, x/sys and runtime-spec"
		}
		// The systemd cgroup driver speaks D-Bus (issue 18: a well-kept
		// client library, not one of our own).
		if pkg == "berth/internal/linux/cgroups/systemd" && hasPrefixAny(imp, "github.com/godbus/dbus/v5", "github.com/coreos/go-systemd/v22/dbus") {
			return ""
		}
		if !berth && strings.Contains(imp, ".") && !hasPrefixAny(imp, "golang.org/x/sys", "github.com/opencontainers/runtime-spec",
			"github.com/cyphar/filepath-securejoin") {
			return "linux/* takes no third-party dependency but x/sys, runtime-spec and filepath-securejoin (in-root paths), and the systemd driver its D-Bus client"
		}
	case hasPrefixAny(pkg, "berth/internal/image"):
		if hasPrefixAny(imp, "berth/internal/network", "berth/internal/runtime", "berth/internal/cli") {
			return "image/* never imports networking, the runtime or the CLI"
		}
	case hasPrefixAny(pkg, "berth/internal/network"):
		if hasPrefixAny(imp, "berth/internal/image", "berth/internal/runtime", "berth/internal/cli") {
			return "network/* never imports images, the runtime or the CLI"
		}
	case hasPrefixAny(pkg, "berth/internal/runtime"):
		if hasPrefixAny(imp, "berth/internal/network", "berth/internal/image", "berth/internal/cli") {
			return "the runtime reaches networking only through its NetworkAttacher interface"
		}
	}
	if !hasPrefixAny(pkg, "berth/internal/cli", "berth/cmd") && hasPrefixAny(imp, "berth/internal/cli") {
		return "only cmd imports the CLI"
	}
	return ""
}

// TestOnlyCLIExits: os.Exit and printing appear only in cmd and the CLI
// (and in C, in the executor, which ends by exec or exit and reports on
// stderr once its parent is gone); every other Go package returns errors.
func TestOnlyCLIExits(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	filepath.Walk(filepath.Join(root, "internal"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if hasPrefixAny(filepath.ToSlash(rel), "internal/cli") {
			return nil
		}
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "os.Exit(") {
			t.Errorf("%s calls os.Exit; only cmd and internal/cli exit", rel)
		}
		for _, pr := range []string{"fmt.Print", "fmt.Fprint(os.Std", "fmt.Fprintln(os.Std", "fmt.Fprintf(os.Std", "os.Stdout.Write", "os.Stderr.Write", "log.Print"} {
			if strings.Contains(string(b), pr) {
				t.Errorf("%s prints (%s); only internal/cli prints", rel, pr)
			}
		}
		return nil
	})
}
