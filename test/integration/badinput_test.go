package integration

// Bad input (issue 22): malformed, contradictory and huge configs, bad ids,
// unreadable state and bad `container run` flags each fail with a message
// naming the field and the exit code runc (or podman, for `container`)
// gives, and leave nothing behind.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/testutil"
)

// TestBadInputConfigs: create and run refuse each bad config with exit 1
// (runc's) and an error naming what is wrong; no state dir, cgroup, mount
// or process is left, and the id can be used afterwards.
func TestBadInputConfigs(t *testing.T) {
	r := newRT(t)
	for _, c := range []struct {
		name   string
		mutate func(s *specs.Spec)
		raw    string // config.json as is, instead of a mutation
		want   string
	}{
		{name: "malformed JSON", raw: `{"ociVersion": "1.2.0", "process": {`, want: "parsing config.json"},
		{name: "not an object", raw: `[]`, want: "parsing config.json"},
		{name: "wrong type", raw: `{"process": {"args": "sh"}}`, want: "parsing config.json"},
		{name: "no process", mutate: func(s *specs.Spec) { s.Process = nil }, want: "process is not set"},
		{name: "empty args", mutate: func(s *specs.Spec) { s.Process.Args = nil }, want: "args must not be empty"},
		{name: "relative cwd", mutate: func(s *specs.Spec) { s.Process.Cwd = "tmp" }, want: `cwd "tmp" is not an absolute path`},
		{name: "uid out of range", mutate: func(s *specs.Spec) { s.Process.User.UID = 1 << 31 }, want: "process.user"},
		{name: "bad rlimit", mutate: func(s *specs.Spec) {
			s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "NOFILE", Hard: 1, Soft: 1})
		}, want: `invalid rlimit type "NOFILE"`},
		{name: "no root path", mutate: func(s *specs.Spec) { s.Root.Path = "" }, want: "root.path is empty"},
		{name: "missing rootfs", mutate: func(s *specs.Spec) { s.Root.Path = "nope" }, want: "rootfs ("},
		{name: "bogus namespace", mutate: func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
		}, want: `namespace "bogus" does not exist`},
		{name: "duplicate namespace", mutate: func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
		}, want: "duplicated ns"},
		{name: "relative namespace path", mutate: func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace, Path: "ns/time"})
		}, want: "must be absolute"},
		{name: "namespace path of another type", mutate: func(s *specs.Spec) {
			for i := range s.Linux.Namespaces {
				if s.Linux.Namespaces[i].Type == specs.NetworkNamespace {
					s.Linux.Namespaces[i].Path = "/proc/self/ns/uts"
				}
			}
		}, want: "is not a network namespace"},
		{name: "mappings without userns", mutate: func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 1}}
		}, want: "user namespace mappings specified"},
		{name: "hostname without uts", mutate: func(s *specs.Spec) { dropNS(s, specs.UTSNamespace) }, want: "unable to set hostname without a private UTS namespace"},
		{name: "empty mount destination", mutate: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Type: "tmpfs", Source: "tmpfs"})
		}, want: "destination is empty"},
		{name: "bad rootfs propagation", mutate: func(s *specs.Spec) { s.Linux.RootfsPropagation = "sideways" }, want: `invalid rootfsPropagation "sideways"`},
		{name: "root cgroup", mutate: func(s *specs.Spec) { s.Linux.CgroupsPath = "/" }, want: "refusing the root cgroup"},
		{name: "missing executable", mutate: func(s *specs.Spec) { s.Process.Args = []string{"no-such-program"} }, want: `exec: "no-such-program": executable file not found`},
		{name: "bad seccomp action", mutate: func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_SOMETIMES"}
		}, want: "SCMP_ACT_SOMETIMES"},
		{name: "bad sysctl", mutate: func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"kernel.panic": "1"} }, want: "kernel.panic"},
	} {
		for _, cmd := range []string{"create", "run"} {
			t.Run(c.name+"/"+cmd, func(t *testing.T) {
				b := testutil.Bundle(t, c.mutate, "true")
				if c.raw != "" {
					if err := os.WriteFile(filepath.Join(b, "config.json"), []byte(c.raw), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				id := r.id()
				sc := newCtScope(r, id, b)
				args := []string{cmd, "-b", b, id}
				if cmd == "run" {
					args = []string{cmd, "-d", "-b", b, id}
				}
				x := r.run(args...)
				// The log line quotes the message (logfmt).
				if x.code != 1 || !strings.Contains(strings.ReplaceAll(x.stderr, `\"`, `"`), c.want) {
					t.Errorf("berth %s: exit %d, want 1 and %q in:\n%s", cmd, x.code, c.want, x.stderr)
				}
				assertNone(t, "after the refused "+cmd, sc.leftovers(t))
				// delete of what never was: runc says it does not exist.
				if x := r.run("delete", id); x.code != 1 || !strings.Contains(x.stderr, "container does not exist") {
					t.Errorf("delete after the refused %s: %+v", cmd, x)
				}
			})
		}
	}
}

// TestBadInputHugeConfig: a config of several megabytes (a 4 MiB
// annotation, 20000 environment variables) is accepted as runc accepts it,
// and its container leaves nothing once deleted.
func TestBadInputHugeConfig(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Annotations = map[string]string{"huge": strings.Repeat("x", 4<<20)}
		for i := 0; i < 20000; i++ {
			s.Process.Env = append(s.Process.Env, "V"+itoa(i)+"=value")
		}
	}, "sh", "-c", "test $V19999 = value")
	id := r.id()
	sc := newCtScope(r, id, b)
	r.must("run", "-b", b, id)
	assertNone(t, "after run", sc.leftovers(t))
}

// TestBadInputIDs: the empty id has runc's own message on every command
// that takes one; an id with a slash is refused before anything is made.
func TestBadInputIDs(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "true")
	for _, args := range [][]string{
		{"create", "-b", b, ""}, {"run", "-b", b, ""}, {"start", ""}, {"state", ""}, {"delete", ""},
		{"delete", "-f", ""}, {"kill", "", "KILL"}, {"pause", ""}, {"resume", ""}, {"ps", ""}, {"exec", "", "true"},
	} {
		x := r.run(args...)
		want := 1
		if args[0] == "exec" {
			want = 255 // exec's own failures
		}
		if x.code != want || !strings.Contains(x.stderr, "container id cannot be empty") {
			t.Errorf("berth %v: want exit %d: %+v", args, want, x)
		}
	}
	for _, id := range []string{"a/b", "..", "a b", strings.Repeat("x", 1025)} {
		x := r.run("create", "-b", b, id)
		if x.code != 1 || !strings.Contains(x.stderr, "invalid container ID format") {
			t.Errorf("create %q: %+v", id, x)
		}
	}
	if ents, _ := os.ReadDir(r.root); len(ents) != 0 {
		t.Errorf("state dirs left: %v", ents)
	}
}

// TestBadInputListUnreadableState: `list` reports a container whose state
// cannot be read as runc does (load container ID: ..., on stderr) and
// still lists the others, exit 0.
func TestBadInputListUnreadableState(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	id := r.id()
	r.must("create", "-b", b, id)
	os.MkdirAll(filepath.Join(r.root, "torn"), 0o711)
	os.WriteFile(filepath.Join(r.root, "torn", "state.json"), []byte(`{"id":"torn",`), 0o600)
	os.MkdirAll(filepath.Join(r.root, "half"), 0o711)
	for _, format := range []string{"table", "json"} {
		x := r.run("list", "-f", format)
		if x.code != 0 || !strings.Contains(x.stdout, id) {
			t.Errorf("list -f %s: %+v", format, x)
		}
		for _, want := range []string{"load container torn: ", "load container half: container does not exist"} {
			if !strings.Contains(x.stderr, want) {
				t.Errorf("list -f %s: stderr lacks %q:\n%s", format, want, x.stderr)
			}
		}
		if strings.Contains(x.stdout, "torn") || strings.Contains(x.stdout, "half") {
			t.Errorf("list -f %s lists unreadable containers:\n%s", format, x.stdout)
		}
	}
	r.must("delete", "-f", id)
	r.must("delete", "-f", "half")
	os.RemoveAll(filepath.Join(r.root, "torn"))
}

// TestBadInputRelativeMountDestination: accepted (taken below the root, as
// runc does) with runc's warning.
func TestBadInputRelativeMountDestination(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "reldir", Type: "tmpfs", Source: "tmpfs"})
	}, "sh", "-c", "grep -q ' /reldir tmpfs ' /proc/mounts")
	id := r.id()
	x := r.run("run", "-b", b, id)
	if x.code != 0 {
		t.Fatalf("run with a relative mount destination: %+v", x)
	}
	const want = "mount destination reldir is not absolute. Support for non-absolute mount destinations will be removed in a future release."
	if !strings.Contains(x.stderr, want) {
		t.Errorf("no warning about the relative destination in: %s", x.stderr)
	}
}

// TestBadInputContainerFlags: `container run` refuses bad flags with exit
// 125 (podman's and docker's for their own errors), naming the flag, and
// leaves no record, bundle mount, state or network endpoint.
func TestBadInputContainerFlags(t *testing.T) {
	w := newCtWorld(t)
	w.mustCt(t, "run", "--home", w.home, "--rm", "--name", "warm", w.image, "sh", "-c", "true")
	before := w.snapshot(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--pull", "never", "no-such-image:latest"}, "no-such-image"},
		{[]string{"-v", "/nonexistent-i22:/x", w.image, "sh", "-c", "true"}, "/nonexistent-i22"},
		{[]string{"-p", "notaport", w.image, "sh", "-c", "true"}, "notaport"},
		{[]string{"-p", "8080:80/sctp", w.image, "sh", "-c", "true"}, "sctp"},
		{[]string{"--memory", "lots", w.image, "sh", "-c", "true"}, "lots"},
		{[]string{"--name", "bad/name", w.image, "sh", "-c", "true"}, "bad/name"},
		{[]string{"--restart", "sometimes", w.image, "sh", "-c", "true"}, "sometimes"},
		{[]string{"--rm", "--restart", "always", w.image, "sh", "-c", "true"}, "--rm and --restart"},
		{[]string{"--network", "host", "-p", "80:80", w.image, "sh", "-c", "true"}, "publishing ports needs a bridge network"},
		{[]string{"--network", "no-such-net", w.image, "sh", "-c", "true"}, "no-such-net"},
		{[]string{"--ip", "10.1.2.300", w.image, "sh", "-c", "true"}, "10.1.2.300"},
		{[]string{"--cap-add", "CAP_BOGUS", w.image, "sh", "-c", "true"}, "CAP_BOGUS"},
		{[]string{"--ulimit", "nofile=abc", w.image, "sh", "-c", "true"}, "nofile"},
		{[]string{"--stop-signal", "SIGBOGUS", w.image, "sh", "-c", "true"}, "SIGBOGUS"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			args := append([]string{"--root", w.root, "container", "run", "--home", w.home}, c.args...)
			cmd := w.berthCmd(args...)
			out, err := cmd.CombinedOutput()
			code := cmd.ProcessState.ExitCode()
			if err == nil || code != 125 || !strings.Contains(string(out), c.want) {
				t.Errorf("exit %d, want 125 and %q in:\n%s", code, c.want, out)
			}
			if ents, _ := os.ReadDir(w.home); len(ents) != 0 {
				t.Errorf("container dirs left: %v", ents)
				for _, e := range ents {
					w.ct("rm", "--home", w.home, "-f", e.Name())
				}
			}
			if ents, _ := os.ReadDir(w.root); len(ents) != 0 {
				t.Errorf("runtime state left: %v", ents)
			}
			for _, m := range mountsUnder(w.home) {
				t.Errorf("mount left: %s", m)
			}
			nwSameSnap(t, "network", before, w.snapshot(t))
		})
	}
}

// TestBadInputFullDisk: a state root with no room for state.json (a tmpfs
// of one page) makes create fail with the kernel's error, and leaves no
// state dir, cgroup or process: the create cleans up after itself.
func TestBadInputFullDisk(t *testing.T) {
	testutil.RequireRoot(t)
	disk := t.TempDir()
	if err := unix.Mount("tmpfs", disk, "tmpfs", 0, "size=4k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(disk, unix.MNT_DETACH) })
	r := &rt{t: t, root: filepath.Join(disk, "root")}
	b := testutil.Bundle(t, nil, "sleep", "100")
	for _, cmd := range []string{"create", "run"} {
		id := r.id()
		sc := newCtScope(r, id, b)
		x := r.run(cmd, "-d", "-b", b, id)
		if cmd == "create" {
			x = r.run(cmd, "-b", b, id)
		}
		if x.code != 1 || !strings.Contains(x.stderr, "no space left on device") {
			t.Errorf("%s on a full disk: %+v", cmd, x)
		}
		assertNone(t, cmd+" on a full disk", sc.leftovers(t))
		if x := r.run("delete", "-f", id); x.code != 0 {
			t.Errorf("delete -f after: %+v", x)
		}
	}
}
