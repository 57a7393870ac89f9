package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestValidate(t *testing.T) {
	bundle := t.TempDir()
	os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755)
	tests := []struct {
		name   string
		mutate func(*specs.Spec)
		err    string
	}{
		{"default ok", func(*specs.Spec) {}, ""},
		{"no args", func(s *specs.Spec) { s.Process.Args = nil }, "args must not be empty"},
		{"relative cwd", func(s *specs.Spec) { s.Process.Cwd = "tmp" }, "not an absolute path"},
		{"missing rootfs", func(s *specs.Spec) { s.Root.Path = "nope" }, "does not exist"},
		{"dup ns", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
		}, "duplicated ns"},
		{"bad ns", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
		}, "does not exist"},
		{"userns without maps", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		}, "no uid or gid mappings"},
		{"maps without userns", func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{Size: 1}}
		}, "isn't enabled"},
		{"hostname without uts", func(s *specs.Spec) {
			var ns []specs.LinuxNamespace
			for _, n := range s.Linux.Namespaces {
				if n.Type != specs.UTSNamespace {
					ns = append(ns, n)
				}
			}
			s.Linux.Namespaces = ns
		}, "without a private UTS namespace"},
		{"relative ns path", func(s *specs.Spec) { s.Linux.Namespaces[1].Path = "net" }, "must be absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Default(false)
			tt.mutate(s)
			err := Validate(s, bundle)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Validate = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(t.TempDir())
	if err == nil || err.Error() != "JSON specification file config.json not found" {
		t.Fatalf("err = %v", err)
	}
}

// A relative mount destination is accepted (taken below the root) with
// runc's warning; absolute ones warn about nothing.
func TestWarningsRelativeMountDestination(t *testing.T) {
	s := Default(false)
	if w := Warnings(s); len(w) != 0 {
		t.Fatalf("default spec warns: %q", w)
	}
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "data/x", Type: "tmpfs", Source: "tmpfs"})
	if err := Validate(s, ""); err != nil {
		t.Fatalf("relative destination refused: %v", err)
	}
	w := Warnings(s)
	want := "mount destination data/x is not absolute. Support for non-absolute mount destinations will be removed in a future release."
	if len(w) != 1 || w[0] != want {
		t.Fatalf("Warnings = %q, want [%q]", w, want)
	}
}
