package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/linux/caps"
	"berth/internal/testutil"
)

// §2.D of the security reference: capabilities, users and groups.

// capMask parses a Cap* line of /proc/PID/status.
func capMask(t *testing.T, status, key string) uint64 {
	t.Helper()
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in:\n%s", key, status)
	return 0
}

func capBit(t *testing.T, name string) uint64 {
	t.Helper()
	n, ok := caps.Parse(name)
	if !ok {
		t.Fatalf("unknown capability %s", name)
	}
	return 1 << uint(n)
}

// TestCVE_2022_29162_ExecCapNotInheritable: `exec --cap` adds the capability
// to the bounding, permitted and effective sets only: never inheritable or
// ambient, which (with file-inheritable bits on an image binary) would hand
// it to a non-root program at execve. CVE-2022-27650 was crun's copy.
func TestCVE_2022_29162_ExecCapNotInheritable(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	st := r.must("exec", "--cap", "CAP_NET_ADMIN", "--cap", "CAP_SYS_PTRACE", id, "cat", "/proc/self/status")
	for _, c := range []string{"CAP_NET_ADMIN", "CAP_SYS_PTRACE"} {
		for _, set := range []string{"CapBnd", "CapPrm", "CapEff"} {
			if capMask(t, st, set)&capBit(t, c) == 0 {
				t.Errorf("exec --cap %s: not in %s:\n%s", c, set, st)
			}
		}
	}
	if v := capMask(t, st, "CapInh"); v != 0 {
		t.Errorf("exec --cap: CapInh = %016x, want 0", v)
	}
	if v := capMask(t, st, "CapAmb"); v != 0 {
		t.Errorf("exec --cap: CapAmb = %016x, want 0", v)
	}
	// And as a non-root user: the added caps must not survive into a
	// program through the inheritable set.
	st = r.must("exec", "--user", "1000:1000", "--cap", "CAP_NET_ADMIN", id, "cat", "/proc/self/status")
	if capMask(t, st, "CapInh") != 0 || capMask(t, st, "CapAmb") != 0 {
		t.Errorf("exec --user 1000 --cap: inheritable or ambient set:\n%s", st)
	}
}

// TestCVE_2022_24769_DefaultInheritableEmpty: the default spec (and the
// spec berth writes) has an empty inheritable set.
func TestCVE_2022_24769_DefaultInheritableEmpty(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "cat", "/proc/self/status")
	st := r.must("run", "-b", b, r.id())
	if v := capMask(t, st, "CapInh"); v != 0 {
		t.Errorf("default config: CapInh = %016x", v)
	}
	if v := capMask(t, st, "CapAmb"); v != 0 {
		t.Errorf("default config: CapAmb = %016x", v)
	}
	dir := t.TempDir()
	r.must("spec", "-b", dir)
	s := readSpec(t, dir)
	if s.Process.Capabilities != nil && len(s.Process.Capabilities.Inheritable) != 0 {
		t.Errorf("berth spec writes inheritable capabilities: %v", s.Process.Capabilities.Inheritable)
	}
}

// TestCVE_2016_3697_NumericUserIsUID: the image's /etc/passwd has a user
// named "1000" with uid 0. A numeric user is a uid, never a name.
func TestCVE_2016_3697_NumericUserIsUID(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, func(s *specs.Spec) { s.Process.User = specs.User{UID: 1000, GID: 1000} }, "sh", "-c", "id -u; id -g")
	passwd := "root:x:0:0:root:/root:/bin/sh\n1000:x:0:0::/:/bin/sh\n"
	os.WriteFile(filepath.Join(b, "rootfs", "etc", "passwd"), []byte(passwd), 0o644)
	if out := r.must("run", "-b", b, r.id()); out != "1000\n1000\n" {
		t.Errorf("user 1000 ran as:\n%s", out)
	}
	editSpec(t, b, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	if out := r.must("exec", "--user", "1000", id, "id", "-u"); out != "1000\n" {
		t.Errorf("exec --user 1000 ran as uid %q", out)
	}
}

// TestCVE_2024_40635_UIDOverflow: ids above MaxInt32 (4294967295 is -1 to
// setresuid, "leave unchanged", i.e. stay root) must be refused, never run
// the container as root.
func TestCVE_2024_40635_UIDOverflow(t *testing.T) {
	r := newRT(t)
	for _, u := range []specs.User{{UID: 4294967295, GID: 0}, {UID: 2147483648, GID: 2147483648}, {UID: 1000, GID: 4294967295}} {
		b := testutil.Bundle(t, func(s *specs.Spec) { s.Process.User = u }, "sh", "-c", "id -u; id -g")
		res := r.run("run", "-b", b, r.id())
		if res.code == 0 {
			t.Errorf("user %d:%d was accepted and ran as %q", u.UID, u.GID, res.stdout)
		}
	}
	b := testutil.Bundle(t, nil, "sleep", "100")
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	for _, u := range []string{"4294967296", "4294967295", "2147483648:0", "1000:4294967295", "1000:2147483648"} {
		res := r.run("exec", "--user", u, id, "id", "-u")
		if res.code == 0 {
			t.Errorf("exec --user %s was accepted and ran as %q", u, res.stdout)
		}
	}
}

// TestCVE_2026_30892_ExecUserStrings: malformed `exec --user` strings give a
// clean error or exactly the ids asked for, never another user.
func TestCVE_2026_30892_ExecUserStrings(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sleep", "100")
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	for _, tt := range []struct{ user, want string }{
		{"0:", ""}, {":0", ""}, {"1000:abc", ""}, {"abc", ""}, {"-1", ""}, {"1000:-1", ""},
		{" 1000", ""}, {"1000:1000:1000", ""}, {"0x10", ""},
		{"1000", "1000 0"}, {"1000:1001", "1000 1001"}, {"0:0", "0 0"},
	} {
		res := r.run("exec", "--user", tt.user, id, "sh", "-c", "echo $(id -u) $(id -g)")
		got := strings.TrimSpace(res.stdout)
		if tt.want == "" {
			if res.code == 0 {
				t.Errorf("exec --user %q: accepted, ran as %q", tt.user, got)
			} else if res.stderr == "" {
				t.Errorf("exec --user %q: failed without an error message", tt.user)
			}
			continue
		}
		if res.code != 0 || got != tt.want {
			t.Errorf("exec --user %q: %q (exit %d, %s), want %q", tt.user, got, res.code, res.stderr, tt.want)
		}
	}
}

// TestCVE_2026_47262_PasswdNotRegular: the runtime reads the image's
// /etc/passwd (HOME lookup). A FIFO there must not hang it and a huge file
// must not be read whole.
func TestCVE_2026_47262_PasswdNotRegular(t *testing.T) {
	r := newRT(t)
	for _, tt := range []struct {
		name string
		make func(p string) error
	}{
		{"fifo", func(p string) error { return mkfifo(p) }},
		{"sparse 4 GiB file", func(p string) error {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(4 << 30)
		}},
	} {
		b := testutil.Bundle(t, func(s *specs.Spec) {
			s.Process.User = specs.User{UID: 1000, GID: 1000}
			var env []string
			for _, e := range s.Process.Env {
				if !strings.HasPrefix(e, "HOME=") {
					env = append(env, e)
				}
			}
			s.Process.Env = env
		}, "sh", "-c", "echo home=$HOME")
		p := filepath.Join(b, "rootfs", "etc", "passwd")
		os.Remove(p)
		if err := tt.make(p); err != nil {
			t.Fatal(err)
		}
		// runIn fails the test after 60 s: a hang is a failure.
		res := r.run("run", "-b", b, r.id())
		if res.code != 0 || res.stdout != "home=/\n" {
			t.Errorf("%s /etc/passwd: %+v", tt.name, res)
		}
	}
}

// TestCapabilitiesUnknownIsWarning (§2.D8): an unknown capability is a
// warning, not a failure, as the runtime-spec requires.
func TestCapabilitiesUnknownIsWarning(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_NO_SUCH_THING")
		s.Process.Capabilities.Permitted = append(s.Process.Capabilities.Permitted, "CAP_NO_SUCH_THING")
	}, "true")
	res := r.run("run", "-b", b, r.id())
	if res.code != 0 || !strings.Contains(res.stderr, "CAP_NO_SUCH_THING") {
		t.Errorf("unknown capability: %+v", res)
	}
}

// TestCVE_2023_25173_AdditionalGids: the configured supplementary groups
// are applied (and nothing else: the image's /etc/group adds none here).
func TestCVE_2023_25173_AdditionalGids(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{5, 2000}}
	}, "id", "-G")
	if out := r.must("run", "-b", b, r.id()); out != "1000 5 2000\n" {
		t.Errorf("id -G = %q, want the configured groups", out)
	}
	editArgs(t, b, "sleep", "100")
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	// As with runc, exec adds to the config's groups.
	out := r.must("exec", "--user", "1000:1000", "--additional-gids", "7", id, "id", "-G")
	got := map[string]bool{}
	for _, g := range strings.Fields(out) {
		got[g] = true
	}
	if len(got) != 4 || !got["1000"] || !got["5"] || !got["2000"] || !got["7"] {
		t.Errorf("exec --additional-gids 7: id -G = %q, want the groups 1000 5 2000 7", out)
	}
}

// TestNoNewPrivsOrder (§2.D8): noNewPrivileges is applied when asked and
// only then, and seccomp is still in place either way.
func TestNoNewPrivsOrder(t *testing.T) {
	r := newRT(t)
	for _, nnp := range []bool{true, false} {
		b := testutil.Bundle(t, func(s *specs.Spec) {
			s.Process.NoNewPrivileges = nnp
			s.Linux.Seccomp = &specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Syscalls:      []specs.LinuxSyscall{{Names: []string{"kexec_load"}, Action: specs.ActErrno}},
			}
		}, "cat", "/proc/self/status")
		st := r.must("run", "-b", b, r.id())
		want := map[bool]string{true: "NoNewPrivs:\t1", false: "NoNewPrivs:\t0"}[nnp]
		if !strings.Contains(st, want) || !strings.Contains(st, "Seccomp:\t2") {
			t.Errorf("noNewPrivileges=%v: want %q and Seccomp 2:\n%s", nnp, want, st)
		}
	}
}
