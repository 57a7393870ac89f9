package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCheckProcMount(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		m    specs.Mount
		want string // "" = allowed
	}{
		{specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"}, ""},
		{specs.Mount{Destination: "/proc/", Type: "proc", Source: "proc"}, ""},
		{specs.Mount{Destination: "/proc", Type: "bind", Source: "/proc", Options: []string{"rbind"}}, ""},
		{specs.Mount{Destination: "/proc", Type: "bind", Source: dir, Options: []string{"rbind"}}, "not of type proc"},
		{specs.Mount{Destination: "/proc", Type: "tmpfs", Source: "tmpfs"}, "inside /proc"},
		{specs.Mount{Destination: "/proc/sys", Type: "tmpfs", Source: "tmpfs"}, "inside /proc"},
		{specs.Mount{Destination: "/proc/self/attr", Type: "proc", Source: "proc"}, "inside /proc"},
		{specs.Mount{Destination: "/proc/../proc/sys", Type: "bind", Source: dir, Options: []string{"bind"}}, "inside /proc"},
		{specs.Mount{Destination: "/proc/uptime", Type: "bind", Source: dir, Options: []string{"bind"}}, ""},
		{specs.Mount{Destination: "/proc/sys/kernel/ns_last_pid", Type: "bind", Source: dir, Options: []string{"bind"}}, ""},
		{specs.Mount{Destination: "/proc/sys/kernel/core_pattern", Type: "bind", Source: "/proc/sys/kernel/core_pattern", Options: []string{"bind"}}, ""},
		{specs.Mount{Destination: "/procfoo", Type: "tmpfs", Source: "tmpfs"}, ""},
		{specs.Mount{Destination: "/proc", Type: "bind", Source: filepath.Join(dir, "missing"), Options: []string{"bind"}}, "statfs"},
	} {
		err := checkProcMount(tt.m)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v: %v, want allowed", tt.m, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%+v: %v, want an error with %q", tt.m, err, tt.want)
		}
	}
}

func TestOpenOrdinaryDir(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	os.MkdirAll(filepath.Join(root, "real", "sys"), 0o755)
	os.Symlink("/real/sys", filepath.Join(root, "sys"))
	os.Symlink("real", filepath.Join(root, "up"))
	os.WriteFile(filepath.Join(root, "file"), nil, 0o644)
	rf, err := openRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	for _, tt := range []struct {
		dest string
		ok   bool
	}{
		{"/proc", true}, {"proc", true}, {"/real/sys", true},
		{"/sys", false},     // symlink as the last component
		{"/up/sys", false},  // symlink as a parent
		{"/file", false},    // not a directory
		{"/missing", false}, // must exist (ensureTarget made it)
	} {
		for name, open := range map[string]func(*os.File, string) (*os.File, error){"openat2": openOrdinaryDir, "walk": walkNoSymlinks} {
			f, err := open(rf, tt.dest)
			if f != nil {
				f.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("%s(%s): err %v, want ok=%v", name, tt.dest, err, tt.ok)
			}
		}
	}
}

func TestRequireProcfs(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "sched"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := requireProcfs(f); err == nil {
		t.Error("a file outside procfs passed the procfs check")
	}
	p, err := os.Open("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := requireProcfs(p); err != nil {
		t.Errorf("/proc/self/stat: %v", err)
	}
}
