package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/testutil"
)

// TestRuntimeIdmappedMounts: bind mounts with an id mapping of their own
// (or, with idmap/ridmap alone, the container's), with and without a user
// namespace; files owned on disk appear through the mapping, writes land
// mapped back, and configs runc refuses are refused with its words.
func TestRuntimeIdmappedMounts(t *testing.T) {
	r := newRT(t)
	src := t.TempDir()
	for _, d := range []string{src, filepath.Join(src, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, owner := range map[string][2]int{"foo": {0, 0}, "multi": {100, 211}} {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, owner[0], owner[1]); err != nil {
			t.Fatal(err)
		}
	}
	// A mount below the source: ridmap maps it too, idmap does not.
	inner := t.TempDir()
	if err := os.WriteFile(filepath.Join(inner, "deep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(inner, filepath.Join(src, "sub"), "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(src, "sub"), unix.MNT_DETACH) })
	m := func(dest string, uid, gid string, opts ...string) specs.Mount {
		mnt := specs.Mount{Source: src, Destination: dest, Type: "bind", Options: append([]string{"rbind"}, opts...)}
		if uid != "" {
			mnt.UIDMappings = []specs.LinuxIDMapping{parseMap(t, uid)}
			mnt.GIDMappings = []specs.LinuxIDMapping{parseMap(t, gid)}
		}
		return mnt
	}
	userns := func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	}
	const stat = `stat -c =%n:%u=%g= `
	for _, tt := range []struct {
		name   string
		mutate func(*specs.Spec)
		cmd    string
		code   int
		want   []string
	}{
		{"no userns", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, m("/m", "0:100000:65536", "0:100000:65536"))
		}, stat + "/m/foo; touch /m/new 2>&1", 1, []string{"=/m/foo:100000=100000=", "Value too large for defined data type"}},
		{"userns, the container's mapping", func(s *specs.Spec) {
			// (the container's root may create mount targets only where
			// anyone may: /tmp, 1777 below)
			userns(s)
			s.Mounts = append(s.Mounts, m("/tmp/m", "", "", "idmap"))
		}, stat + "/tmp/m/foo; touch /tmp/m/new && " + stat + "/tmp/m/new", 0, []string{"=/tmp/m/foo:0=0=", "=/tmp/m/new:0=0="}},
		{"different uid and gid mappings", func(s *specs.Spec) {
			userns(s)
			s.Mounts = append(s.Mounts, m("/tmp/a", "100:100000:100", "200:100000:100"), m("/tmp/b", "100:101000:100", "200:102000:100"))
		}, stat + "/tmp/a/multi /tmp/b/multi", 0, []string{"=/tmp/a/multi:0=11=", "=/tmp/b/multi:1000=2011="}},
		{"idmap is not recursive, ridmap is", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, m("/i", "0:100000:65536", "0:100000:65536", "idmap"), m("/r", "0:100000:65536", "0:100000:65536", "ridmap"))
		}, stat + "/i/sub/deep /r/sub/deep", 0, []string{"=/i/sub/deep:0=0=", "=/r/sub/deep:100000=100000="}},
		{"not a bind mount", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/t", Type: "tmpfs", Options: []string{"idmap"}})
		}, "true", 1, []string{"id-mapped mounts are only supported for bind-mounts"}},
		{"no mapping at all", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, m("/m", "", "", "idmap"))
		}, "true", 1, []string{"id-mapped mounts must have both uid and gid mappings specified"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := testutil.Bundle(t, func(s *specs.Spec) {
				s.Process.Args = []string{"sh", "-c", tt.cmd}
				tt.mutate(s)
			})
			for d := b; d != "/"; d = filepath.Dir(d) {
				os.Chmod(d, 0o755)
			}
			os.Chmod(filepath.Join(b, "rootfs", "tmp"), 0o1777)
			res := r.run("run", "-b", b, r.id())
			out := res.stdout + res.stderr
			if res.code != tt.code {
				t.Errorf("exit %d, want %d:\n%s", res.code, tt.code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("%q missing from:\n%s", w, out)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(src, "new")); err != nil {
		t.Errorf("the write through the idmapped mount did not land in the source: %v", err)
	}
}

func parseMap(t *testing.T, s string) specs.LinuxIDMapping {
	t.Helper()
	var v [3]uint32
	parts := strings.Split(s, ":")
	for i := range v {
		n, err := strconv.ParseUint(parts[i], 10, 32)
		if err != nil || len(parts) != 3 {
			t.Fatalf("mapping %q", s)
		}
		v[i] = uint32(n)
	}
	return specs.LinuxIDMapping{ContainerID: v[0], HostID: v[1], Size: v[2]}
}
