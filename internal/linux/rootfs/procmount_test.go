package rootfs

import (
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
		err := CheckProcMount(tt.m)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v: %v, want allowed", tt.m, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%+v: %v, want an error with %q", tt.m, err, tt.want)
		}
	}
}
