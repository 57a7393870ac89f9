// Package depcheck holds berth's import rules as a test, in the style of
// go-containerregistry's internal/depcheck: every package has an
// allow-list of what it may import (berth packages by path, third-party
// code by module; the standard library is always allowed), and the floors
// of docs/DESIGN.md §1.1 are checked over the real import graph on top:
//
//   - the plan compiler (linux/plan) and the executor (nsenter) never reach
//     lifecycle code, not even transitively;
//   - linux/* imports only linux/* and a few platform modules;
//   - image/* and network/* never import each other, the runtime (nor its
//     state and spawn code, for images), the container command or the CLI;
//     the runtime never imports image/*, network/* or the container command;
//   - only cmd imports the CLI, and only cmd/berth links the executor (its
//     constructor runs before Go in every binary that links it);
//   - only the CLI prints or exits.
//
// A new package, or a new import, is a decision: add it to allowed, in
// the floor the design gives it, and say why in the commit.
package depcheck

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Third-party modules, by the name the allow-lists use.
const (
	securejoin = "github.com/cyphar/filepath-securejoin"
	systemd    = "github.com/coreos/go-systemd/v22"
	dbus       = "github.com/godbus/dbus/v5"
	ggcr       = "github.com/google/go-containerregistry"
	nftables   = "github.com/google/nftables"
	compress   = "github.com/klauspost/compress"
	mdnetlink  = "github.com/mdlayher/netlink"
	mobyprof   = "github.com/moby/profiles"
	digest     = "github.com/opencontainers/go-digest"
	imagespec  = "github.com/opencontainers/image-spec"
	rspec      = "github.com/opencontainers/runtime-spec"
	urfave     = "github.com/urfave/cli"
	netlink    = "github.com/vishvananda/netlink"
	netns      = "github.com/vishvananda/netns"
	xsync      = "golang.org/x/sync"
	xsys       = "golang.org/x/sys"
	xterm      = "golang.org/x/term"
)

// allowed lists, for every package under cmd/ and internal/, what its
// non-test files may import besides the standard library: berth packages
// by import path, third-party code by module path.
var allowed = map[string][]string{
	// Floor 0: leaves every floor may use.
	"berth/internal/atomicfile": {xsys},
	"berth/internal/killpoint":  {xsys},

	// Floor 1: the platform. linux/* imports only linux/*.
	"berth/internal/linux/caps":                {rspec},
	"berth/internal/linux/console":             {xsys},
	"berth/internal/linux/nsutil":              {rspec, xsys},
	"berth/internal/linux/rootfs":              {rspec, xsys},
	"berth/internal/linux/seccomp":             {rspec, xsys},
	"berth/internal/linux/seccomp/mobyprofile": {},
	"berth/internal/linux/cgroups/devices":     {rspec, xsys},
	"berth/internal/linux/cgroups":             {"berth/internal/linux/cgroups/devices", "berth/internal/linux/rootfs", rspec, xsys},
	"berth/internal/linux/cgroups/systemd":     {"berth/internal/linux/cgroups", "berth/internal/linux/cgroups/devices", rspec, systemd, dbus},
	// The plan compiler: every container-setup decision, in Go, in the parent.
	"berth/internal/linux/plan": {"berth/internal/linux/caps", "berth/internal/linux/rootfs", "berth/internal/linux/seccomp", rspec, xsys},
	// The executor: C, run by the constructor before Go starts.
	"berth/internal/nsenter": {},

	// Floor 2: the runtime's parts.
	"berth/internal/spec":  {rspec},
	"berth/internal/state": {"berth/internal/atomicfile", rspec, xsys},
	"berth/internal/ipc":   {"berth/internal/linux/plan", xsys}, // SCM_RIGHTS for mount sources
	"berth/internal/spawn": {"berth/internal/ipc", "berth/internal/linux/cgroups", "berth/internal/linux/nsutil", "berth/internal/linux/plan", rspec, xsys},

	// Floor 3: the runtime (lifecycle), images and networking, side by side.
	"berth/internal/runtime": {"berth/internal/atomicfile", "berth/internal/ipc", "berth/internal/killpoint",
		"berth/internal/linux/cgroups", "berth/internal/linux/cgroups/devices", "berth/internal/linux/cgroups/systemd",
		"berth/internal/linux/console", "berth/internal/linux/nsutil", "berth/internal/linux/plan",
		"berth/internal/linux/rootfs", "berth/internal/linux/seccomp", "berth/internal/spawn",
		"berth/internal/spec", "berth/internal/state", rspec, xsys, xterm},
	"berth/internal/image/ref":      {},
	"berth/internal/image/manifest": {digest, imagespec},
	"berth/internal/image/layout":   {"berth/internal/atomicfile", digest, imagespec, xsys},
	"berth/internal/image/registry": {"berth/internal/atomicfile", "berth/internal/image/manifest", "berth/internal/image/ref",
		ggcr, digest, imagespec},
	"berth/internal/image/unpack":     {securejoin, compress, digest, xsys},
	"berth/internal/image/layercache": {"berth/internal/atomicfile", "berth/internal/image/unpack", digest, xsync, xsys},
	// A bundle's config is a runtime-spec document: spec parses it, caps
	// names capabilities.
	"berth/internal/image/bundle": {"berth/internal/atomicfile", "berth/internal/image/unpack", "berth/internal/linux/caps",
		"berth/internal/spec", ggcr, digest, imagespec, rspec, xsys},
	"berth/internal/image": {"berth/internal/atomicfile", "berth/internal/image/layout", "berth/internal/image/manifest",
		"berth/internal/image/ref", "berth/internal/image/registry", compress, digest, imagespec, xsync},
	// network reads a container's state (its init pid, checked against
	// the pid's start time) to join its netns; it never imports the runtime.
	"berth/internal/network": {"berth/internal/atomicfile", "berth/internal/killpoint", "berth/internal/state",
		nftables, mdnetlink, netlink, netns, xsys},

	// Floor 4: the container command, composing the three.
	"berth/internal/oneshot": {"berth/internal/atomicfile", "berth/internal/image", "berth/internal/image/bundle",
		"berth/internal/image/layercache", "berth/internal/image/unpack", "berth/internal/killpoint",
		"berth/internal/linux/caps", "berth/internal/linux/cgroups", "berth/internal/network",
		"berth/internal/runtime", "berth/internal/state", mobyprof, rspec, xsys, xterm},
	// demo builds its image with go-containerregistry and serves it.
	"berth/internal/demo": {ggcr, xsys},

	// Floor 5: the CLI, the only package that prints or exits, and main.
	"berth/internal/cli": {"berth/internal/atomicfile", "berth/internal/demo", "berth/internal/image",
		"berth/internal/image/bundle", "berth/internal/image/layercache", "berth/internal/image/manifest",
		"berth/internal/image/ref", "berth/internal/image/registry", "berth/internal/image/unpack",
		"berth/internal/linux/caps", "berth/internal/linux/rootfs", "berth/internal/linux/seccomp",
		"berth/internal/network", "berth/internal/oneshot", "berth/internal/runtime", "berth/internal/spec",
		"berth/internal/state", digest, rspec, urfave, netlink, xsys, xterm},
	"berth/cmd/berth": {"berth/internal/cli", "berth/internal/nsenter"},

	// Test support, and this test.
	"berth/internal/testutil": {"berth/internal/spec", rspec},
	"berth/internal/depcheck": {},
}

// lifecycle is the code the platform floors never reach.
var lifecycle = []string{"berth/internal/runtime", "berth/internal/state", "berth/internal/spawn",
	"berth/internal/ipc", "berth/internal/oneshot", "berth/internal/cli", "berth/internal/image",
	"berth/internal/network", "berth/internal/demo"}

type pkg struct {
	ImportPath                string
	Imports, Deps             []string
	TestImports, XTestImports []string
	Standard                  bool
}

var (
	loaded []pkg
	loadOK bool
)

// load lists every package of the module with `go list` (the go tool is
// what builds them, so its view of the imports is the one that counts).
func load(t *testing.T) []pkg {
	t.Helper()
	if loadOK {
		return loaded
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not on PATH")
	}
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = moduleRoot()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		loaded = append(loaded, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	if len(loaded) < 20 {
		t.Fatalf("go list found only %d packages", len(loaded))
	}
	loadOK = true
	return loaded
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func under(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if s == p || strings.HasPrefix(s, p+"/") {
			return true
		}
	}
	return false
}

// isStd: the standard library's import paths have no dot in their first
// element.
func isStd(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".") && first != "berth"
}

// inScope: the allow-lists cover cmd/ and internal/; test/ and bench/ are
// test programs, held only to the executor rule.
func inScope(p string) bool { return under(p, "berth/cmd", "berth/internal") }

// TestAllowLists: every package's imports are on its allow-list, and every
// package has one.
func TestAllowLists(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range load(t) {
		if !inScope(p.ImportPath) {
			continue
		}
		seen[p.ImportPath] = true
		allow, ok := allowed[p.ImportPath]
		if !ok {
			t.Errorf("%s has no allow-list: add it to allowed, in its floor", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			if isStd(imp) || imp == "C" || imp == p.ImportPath {
				continue
			}
			if !slices.ContainsFunc(allow, func(a string) bool {
				return imp == a || !strings.HasPrefix(a, "berth/") && under(imp, a)
			}) {
				t.Errorf("%s imports %s, which its allow-list does not name", p.ImportPath, imp)
			}
		}
	}
	for name := range allowed {
		if !seen[name] {
			t.Errorf("allowed names %s, which is not a package: remove it", name)
		}
	}
}

// TestFloors checks the design's rules over the real graph, so a change
// to an allow-list cannot break them either.
func TestFloors(t *testing.T) {
	type rule struct {
		from   []string // packages (and those below them) the rule binds
		deps   bool     // check transitive dependencies, not direct imports
		banned []string // prefixes they may not reach
		why    string
	}
	rules := []rule{
		{from: []string{"berth/internal/linux/plan", "berth/internal/nsenter"}, deps: true, banned: lifecycle,
			why: "the plan compiler and the executor never reach lifecycle code"},
		{from: []string{"berth/internal/linux"}, deps: true, banned: append([]string{"berth/internal/killpoint", "berth/internal/atomicfile", "berth/internal/spec"}, lifecycle...),
			why: "linux/* imports only linux/*"},
		{from: []string{"berth/internal/image"}, deps: true, banned: []string{"berth/internal/network", "berth/internal/runtime",
			"berth/internal/state", "berth/internal/spawn", "berth/internal/oneshot", "berth/internal/cli"},
			why: "image/* never imports networking, the runtime, its state and spawn code, the container command or the CLI"},
		{from: []string{"berth/internal/network"}, deps: true, banned: []string{"berth/internal/image", "berth/internal/runtime",
			"berth/internal/spawn", "berth/internal/oneshot", "berth/internal/cli"},
			why: "network/* never imports images, the runtime, the container command or the CLI"},
		{from: []string{"berth/internal/runtime"}, deps: true, banned: []string{"berth/internal/network", "berth/internal/image",
			"berth/internal/oneshot", "berth/internal/cli"},
			why: "the runtime reaches networking only through its NetworkAttacher interface"},
	}
	for _, p := range load(t) {
		for _, r := range rules {
			if !under(p.ImportPath, r.from...) {
				continue
			}
			list := p.Imports
			if r.deps {
				list = p.Deps
			}
			for _, d := range list {
				if under(d, r.banned...) {
					t.Errorf("%s reaches %s: %s", p.ImportPath, d, r.why)
				}
			}
		}
	}
}

// TestEntryPoints: only cmd imports the CLI, and only cmd/berth links the
// executor, counting test files and the test/ and bench/ programs: the
// executor's constructor would run in any binary that links it.
func TestEntryPoints(t *testing.T) {
	for _, p := range load(t) {
		all := append(append(append([]string(nil), p.Imports...), p.TestImports...), p.XTestImports...)
		for _, imp := range all {
			switch {
			case imp == "berth/internal/nsenter" && p.ImportPath != "berth/cmd/berth" && p.ImportPath != "berth/internal/nsenter":
				t.Errorf("%s imports the executor; only cmd/berth links it", p.ImportPath)
			case under(imp, "berth/internal/cli") && !under(p.ImportPath, "berth/cmd", "berth/internal/cli"):
				t.Errorf("%s imports the CLI; only cmd does", p.ImportPath)
			}
		}
	}
}

// TestOnlyCLIPrints: outside cmd and internal/cli no non-test Go file
// exits, prints to the process's stdout or stderr, or logs through the
// standard logger: every other package returns errors (the executor, in
// C, ends by exec or exit and reports on stderr once its parent is gone).
func TestOnlyCLIPrints(t *testing.T) {
	root := moduleRoot()
	var found []string
	checked := 0
	err := filepath.WalkDir(filepath.Join(root, "internal"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "internal/cli" || rel == "internal/depcheck" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		if buildIgnored(f) {
			return nil // a generator run by go generate, a main of its own
		}
		checked++
		for _, v := range printsIn(f) {
			found = append(found, rel+":"+strconv.Itoa(fset.Position(v.pos).Line)+": "+v.what)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d files checked", checked)
	}
	sort.Strings(found)
	for _, f := range found {
		t.Errorf("%s; only internal/cli prints or exits", f)
	}
}

func buildIgnored(f *ast.File) bool {
	for _, cg := range f.Comments {
		for _, c := range cg.List {
			if c.Pos() < f.Package && strings.HasPrefix(c.Text, "//go:build") && strings.Contains(c.Text, "ignore") {
				return true
			}
		}
	}
	return false
}

type violation struct {
	pos  token.Pos
	what string
}

// printsIn finds os.Exit, the builtins print and println, fmt.Print*,
// the standard logger's Print/Fatal/Panic, and writes to os.Stdout or
// os.Stderr (fmt.Fprint*, io.WriteString, their Write methods). Handing
// os.Stdout to a child as its stdio is not printing and is not flagged.
func printsIn(f *ast.File) []violation {
	names := map[string]string{} // local name -> import path
	for _, imp := range f.Imports {
		path := strings.Trim(imp.Path.Value, `"`)
		name := filepath.Base(path)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		names[name] = path
	}
	sel := func(e ast.Expr) (pkgPath, name string) {
		s, ok := e.(*ast.SelectorExpr)
		if !ok {
			return "", ""
		}
		id, ok := s.X.(*ast.Ident)
		if !ok || id.Obj != nil {
			return "", ""
		}
		return names[id.Name], s.Sel.Name
	}
	isStdStream := func(e ast.Expr) bool {
		p, n := sel(e)
		return p == "os" && (n == "Stdout" || n == "Stderr")
	}
	var out []violation
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if id, ok := call.Fun.(*ast.Ident); ok && id.Obj == nil && (id.Name == "print" || id.Name == "println") {
			out = append(out, violation{call.Pos(), id.Name})
			return true
		}
		p, name := sel(call.Fun)
		switch {
		case p == "os" && name == "Exit":
			out = append(out, violation{call.Pos(), "os.Exit"})
		case p == "fmt" && strings.HasPrefix(name, "Print"):
			out = append(out, violation{call.Pos(), "fmt." + name})
		case p == "log" && (strings.HasPrefix(name, "Print") || strings.HasPrefix(name, "Fatal") || strings.HasPrefix(name, "Panic")):
			out = append(out, violation{call.Pos(), "log." + name})
		case (p == "fmt" && strings.HasPrefix(name, "Fprint") || p == "io" && name == "WriteString") && len(call.Args) > 0 && isStdStream(call.Args[0]):
			out = append(out, violation{call.Pos(), p + "." + name + " to the process's stdout/stderr"})
		}
		if s, ok := call.Fun.(*ast.SelectorExpr); ok && strings.HasPrefix(s.Sel.Name, "Write") && isStdStream(s.X) {
			out = append(out, violation{call.Pos(), "a write to the process's stdout/stderr"})
		}
		return true
	})
	return out
}

// TestPrintsInFindsEachKind keeps the scanner honest.
func TestPrintsInFindsEachKind(t *testing.T) {
	src := `package x
import ("fmt"; "io"; "log"; "os"; l "log")
func f() {
	fmt.Println("a")
	fmt.Fprintf(os.Stderr, "b")
	io.WriteString(os.Stdout, "c")
	os.Stderr.Write(nil)
	log.Printf("d")
	l.Fatal("e")
	println("f")
	os.Exit(1)
	// not printing:
	fmt.Fprintf(io.Discard, "g")
	cmd := struct{ Stdout *os.File }{Stdout: os.Stdout}
	_ = cmd
	_ = fmt.Sprintf("h")
	_ = log.New(io.Discard, "", 0)
}
`
	f, err := parser.ParseFile(token.NewFileSet(), "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(printsIn(f)); got != 8 {
		t.Errorf("found %d violations, want 8: %+v", got, printsIn(f))
	}
}
