package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/testutil"
)

// usernsReachable gives the bundle a user namespace (root is host uid
// 100000) and lets that root reach the rootfs.
func usernsReachable(t *testing.T, b string) {
	t.Helper()
	// The mount targets, which that root could not create in the rootfs
	// (host root's, as runc's test has them).
	for _, d := range []string{"tmp/mount-1", "tmp/mount-2", "tmp/m"} {
		if err := os.MkdirAll(filepath.Join(b, "rootfs", d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(b, "rootfs/tmp/file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for d := b; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func userns100000(s *specs.Spec) {
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
}

// TestRuntimeMountSourcesOutOfReach: bind sources the container's root
// cannot reach (in directories only the host's root may enter) are opened
// by the runtime, from the container's mount namespace, and bound from
// the fd, as runc does; for run and for exec after it. A source that does
// not exist fails the request with runc's words.
func TestRuntimeMountSourcesOutOfReach(t *testing.T) {
	r := newRT(t)
	private := t.TempDir() // 0700, root's
	var mounts []specs.Mount
	for _, n := range []string{"1", "2"} {
		d := filepath.Join(private, "src-"+n, "dir")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Dir(d), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "foo.txt"), []byte("foo"+n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, specs.Mount{Source: d, Destination: "/tmp/mount-" + n, Options: []string{"bind"}})
	}
	file := filepath.Join(private, "src-1", "file")
	if err := os.WriteFile(file, []byte("a file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts = append(mounts, specs.Mount{Source: file, Destination: "/tmp/file", Options: []string{"bind", "ro"}})
	b := testutil.Bundle(t, func(s *specs.Spec) {
		userns100000(s)
		s.Mounts = append(s.Mounts, mounts...)
	}, "sh", "-c", "cat /tmp/mount-1/foo.txt /tmp/mount-2/foo.txt /tmp/file; grep -c ' /tmp/file ro,' /proc/self/mountinfo")
	usernsReachable(t, b)
	if out := r.must("run", "-b", b, r.id()); out != "foo1\nfoo2\na file\n1\n" {
		t.Errorf("run printed %q", out)
	}

	b = testutil.Bundle(t, func(s *specs.Spec) {
		userns100000(s)
		s.Mounts = append(s.Mounts, mounts...)
	}, "sleep", "100")
	usernsReachable(t, b)
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	defer r.run("delete", "-f", id)
	if out := r.must("exec", id, "cat", "/tmp/mount-1/foo.txt", "/tmp/mount-2/foo.txt"); out != "foo1\nfoo2\n" {
		t.Errorf("exec printed %q", out)
	}

	missing := filepath.Join(private, "no-such")
	b = testutil.Bundle(t, func(s *specs.Spec) {
		userns100000(s)
		s.Mounts = append(s.Mounts, specs.Mount{Source: missing, Destination: "/tmp/m", Options: []string{"bind"}})
	}, "true")
	usernsReachable(t, b)
	want := "unable to start container process: error during container init: failed to fulfil mount request: open " + missing + ": no such file or directory"
	if res := r.run("run", "-b", b, r.id()); res.code != 1 || !strings.Contains(res.stderr, want) {
		t.Errorf("missing source: %+v, want %q", res, want)
	}
}

// TestRuntimeMountOrder is runc's mount order check: a tree of binds,
// some through symlinks, then binds whose sources and destinations are
// host paths inside the rootfs (runc strips the rootfs from a destination
// lexically, and resolves such a source in the container's mount
// namespace, after the mounts before it), the whole copied on top of
// /final; with a user namespace (the host sources out of its root's
// reach) and idmapped (the idmapped copy made from the container's mount
// namespace as it is then).
func TestRuntimeMountOrder(t *testing.T) {
	for _, c := range []struct {
		name          string
		userns, idmap bool
	}{{"plain", false, false}, {"userns", true, false}, {"idmap", false, true}, {"userns,idmap", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			r := newRT(t)
			var rootfs string
			b := testutil.Bundle(t, func(s *specs.Spec) {
				if c.userns {
					userns100000(s)
				}
				s.Process.Args = []string{"cat", "/final/x/y/z/z/x/y/z/x/file"}
			}, "true")
			rootfs = filepath.Join(b, "rootfs")
			if c.userns {
				usernsReachable(t, b)
			}
			src := filepath.Join(b, "bind-src")
			for _, sub := range []string{"a/x", "b/y", "c/z"} {
				d := filepath.Join(src, sub)
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, "file"), []byte(sub+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				top := filepath.Dir(sub)
				if err := os.Symlink(top, filepath.Join(src, "sym-"+top)); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(src, 0o750); err != nil { // out of the userns root's reach
				t.Fatal(err)
			}
			for _, d := range []string{"mnt", "final"} {
				os.RemoveAll(filepath.Join(rootfs, d))
				if err := os.Mkdir(filepath.Join(rootfs, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			bind := func(source, dest string, container bool) specs.Mount {
				m := specs.Mount{Source: source, Destination: dest, Type: "bind", Options: []string{"bind", "rprivate"}}
				if container {
					m.Options[0] = "rbind"
					if c.idmap {
						m.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
						m.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
					}
				}
				return m
			}
			editSpec(t, b, func(s *specs.Spec) {
				s.Mounts = append(s.Mounts,
					bind(filepath.Join(src, "a"), "/mnt", false),
					bind(filepath.Join(src, "sym-b"), "/mnt/x", false),
					bind(filepath.Join(src, "c"), "/mnt/x/y", false),
					bind(filepath.Join(src, "sym-a"), "/mnt/x/y/z", false),
					bind(rootfs+"/mnt/x", rootfs+"/mnt/x/y/z/x", true),
					bind(rootfs+"/mnt/x/y", rootfs+"/mnt/x/y/z", true),
					bind(rootfs+"/mnt", rootfs+"/final", true))
			})
			if out := r.must("run", "-b", b, r.id()); out != "a/x\n" {
				t.Errorf("the tree's last file: %q, want a/x's", out)
			}
		})
	}
}
