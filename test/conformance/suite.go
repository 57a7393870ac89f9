package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"berth/internal/atomicfile"
)

// The validation suite under test. v0.9.0 (2018) predates go.mod; this
// pseudo-version is upstream HEAD of 2025-12-04, the tree the project's
// expectations were recorded against.
const (
	suiteModule  = "github.com/opencontainers/runtime-tools"
	suiteVersion = "v0.9.1-0.20251205004911-5e639034dcdc"
)

// buildRecipe changes whenever the way the suite is built changes, so a
// cached build from an older harness is not reused.
const buildRecipe = "3"

// Suite is a built validation suite: Root is the runtime-tools tree (the
// tests' working directory: they untar rootfs-<arch>.tar.gz and copy
// ./runtimetest from it), Tests maps each test name to its executable.
type Suite struct {
	Root  string
	Tests map[string]string
}

// Names returns the test names in order.
func (s Suite) Names() []string {
	var n []string
	for k := range s.Tests {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// goEnv is the environment for the go command building the suite: outside
// any workspace, module mode, whatever GOFLAGS the caller has (e.g.
// -buildvcs=false) plus -mod=mod, because the module zip keeps
// vendor/modules.txt without the vendored code.
func goEnv(extra ...string) []string {
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	return append(env, extra...)
}

func runGo(ctx context.Context, dir string, log io.Writer, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return out.Bytes(), nil
}

// stamp identifies a build: the suite version, the recipe and the Go
// toolchain that compiled it.
func stamp(ctx context.Context) (string, error) {
	v, err := exec.CommandContext(ctx, "go", "version").Output()
	if err != nil {
		return "", fmt.Errorf("go version: %w", err)
	}
	return fmt.Sprintf("%s@%s recipe %s %s", suiteModule, suiteVersion, buildRecipe, strings.TrimSpace(string(v))), nil
}

// PrepareSuite returns the built suite under cacheDir, fetching it through
// the Go module proxy and building it when the cache does not hold a build
// with the current stamp.
func PrepareSuite(ctx context.Context, cacheDir string, log io.Writer) (Suite, error) {
	want, err := stamp(ctx)
	if err != nil {
		return Suite{}, err
	}
	dir := filepath.Join(cacheDir, "runtime-tools@"+suiteVersion)
	stampFile := filepath.Join(dir, "build.stamp")
	if got, err := os.ReadFile(stampFile); err == nil && string(got) == want {
		if s, err := loadSuite(filepath.Join(dir, "src")); err == nil {
			return s, nil
		}
	}
	fmt.Fprintf(log, "conformance: building %s@%s in %s\n", suiteModule, suiteVersion, dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Suite{}, err
	}
	modDir, err := download(ctx, dir, log)
	if err != nil {
		return Suite{}, err
	}
	// Build in a fresh tree and swap it in at the end: an interrupted build
	// never leaves a tree that looks complete.
	tmp, err := os.MkdirTemp(dir, "src.building-")
	if err != nil {
		return Suite{}, err
	}
	defer os.RemoveAll(tmp)
	if err := copyTree(modDir, tmp); err != nil {
		return Suite{}, fmt.Errorf("copy %s: %w", modDir, err)
	}
	if err := build(ctx, tmp, log); err != nil {
		return Suite{}, err
	}
	src := filepath.Join(dir, "src")
	if err := os.RemoveAll(src); err != nil {
		return Suite{}, err
	}
	if err := os.Rename(tmp, src); err != nil {
		return Suite{}, err
	}
	if err := atomicfile.Write(stampFile, []byte(want), 0o644); err != nil {
		return Suite{}, err
	}
	return loadSuite(src)
}

// download fetches the module zip into the module cache and returns the
// extracted (read-only) directory.
func download(ctx context.Context, workDir string, log io.Writer) (string, error) {
	// An empty directory keeps the go command out of any enclosing module
	// (berth's own go.mod must not be touched).
	empty, err := os.MkdirTemp(workDir, "download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(empty)
	out, err := runGo(ctx, empty, log, goEnv(), "mod", "download", "-json", suiteModule+"@"+suiteVersion)
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("download %s@%s: %s", suiteModule, suiteVersion, info.Error)
	}
	if err != nil {
		return "", err
	}
	if info.Dir == "" {
		return "", fmt.Errorf("download %s@%s: go mod download reported no directory", suiteModule, suiteVersion)
	}
	return info.Dir, nil
}

// copyTree copies the module tree out of the read-only module cache,
// leaving out vendor/: the zip has only vendor/modules.txt, which would put
// the build in vendor mode and fail.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		if rel == "vendor" {
			return filepath.SkipDir
		}
		dst := filepath.Join(to, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case info.Mode().IsRegular():
			mode := os.FileMode(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			return copyFile(p, dst, mode)
		default:
			return fmt.Errorf("%s: unexpected file type %s in module tree", p, info.Mode().Type())
		}
	})
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// build compiles runtimetest (static: it runs inside the test rootfs, which
// has no libc) and every validation/<name>/<name>.go into <name>.t next to
// it, as runtime-tools' Makefile does, but in one go invocation so packages
// are compiled once for all 58 executables.
func build(ctx context.Context, root string, log io.Writer) error {
	names, err := testSources(root)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("%s: no validation tests found", root)
	}
	if _, err := runGo(ctx, root, log, goEnv("CGO_ENABLED=0"), "build", "-tags", "netgo osusergo", "-o", "runtimetest", "./cmd/runtimetest"); err != nil {
		return err
	}
	if err := requireStatic(filepath.Join(root, "runtimetest")); err != nil {
		return err
	}
	binDir, err := os.MkdirTemp(root, ".bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	pkgs := make([]string, len(names))
	for i, n := range names {
		pkgs[i] = "./validation/" + n
	}
	args := append([]string{"build", "-o", binDir + "/"}, pkgs...)
	if _, err := runGo(ctx, root, log, goEnv(), args...); err != nil {
		return err
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(binDir, n), filepath.Join(root, "validation", n, n+".t")); err != nil {
			return fmt.Errorf("install %s.t: %w", n, err)
		}
	}
	return nil
}

// testSources lists validation/<name> directories holding <name>.go (util is
// the shared library, not a test).
func testSources(root string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(root, "validation"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "util" {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, "validation", e.Name(), e.Name()+".go")); err == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// requireStatic fails when the ELF file asks for a dynamic loader.
func requireStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; it must be static to run in the test rootfs", path)
		}
	}
	return nil
}

// loadSuite checks a built tree and lists its executables.
func loadSuite(root string) (Suite, error) {
	s := Suite{Root: root, Tests: map[string]string{}}
	// The tests untar rootfs-$GOARCH.tar.gz; the module ships amd64 and 386.
	for _, f := range []string{"runtimetest", "rootfs-" + runtime.GOARCH + ".tar.gz"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			return s, err
		}
	}
	names, err := testSources(root)
	if err != nil {
		return s, err
	}
	for _, n := range names {
		t := filepath.Join(root, "validation", n, n+".t")
		if _, err := os.Stat(t); err != nil {
			return s, err
		}
		s.Tests[n] = t
	}
	if len(s.Tests) == 0 {
		return s, errors.New("no validation executables")
	}
	return s, nil
}
