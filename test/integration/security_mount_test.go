package integration

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/console"
	"berth/internal/testutil"
)

// §2.C of the security reference: mount targets, /dev and the console.

// withoutDevMounts drops every mount at or under /dev, so the runtime works
// on the image's own /dev (the setting of CVE-2026-41579/47766 and 88264).
func withoutDevMounts(s *specs.Spec) {
	var ms []specs.Mount
	for _, m := range s.Mounts {
		if m.Destination == "/dev" || strings.HasPrefix(m.Destination, "/dev/") {
			continue
		}
		ms = append(ms, m)
	}
	s.Mounts = ms
}

// TestCVE_2021_30465_MountTargetSwap (and CVE-2024-45310, its mkdirall
// sibling): container A exchanges a directory on a shared volume with a
// symlink to a host directory, while container B is created again and again
// with a mount whose (missing) target runs through that directory. Nothing
// may be created in the host directory and no mount may leak to the host.
func TestCVE_2021_30465_MountTargetSwap(t *testing.T) {
	r := newRT(t)
	c := newCanary(t)
	probe := buildProbe(t)
	vol := sharedVolume(t)
	os.MkdirAll(filepath.Join(vol, "a"), 0o755)
	if err := os.Symlink(c.sentinel, filepath.Join(vol, "link")); err != nil {
		t.Fatal(err)
	}
	// Only mounts under this test's temp dirs: other tests on the machine
	// mount and unmount things concurrently.
	scope := filepath.Dir(c.sentinel)
	hostMounts := mountPoints(t, scope)
	volMount := specs.Mount{Destination: "/v", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}}
	a := testutil.Bundle(t, func(s *specs.Spec) { s.Mounts = append(s.Mounts, volMount) },
		"/bin/probe", "exchange", "/v/a", "/v/link", "120s", "/v/stop")
	installProbe(t, probe, filepath.Join(a, "rootfs"))
	aid := r.id()
	x := startRacer(t, r, a, aid, filepath.Join(vol, "stop"))
	waitRunning(t, r, aid)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "host-file"), []byte("x"), 0o644)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, volMount,
			specs.Mount{Destination: "/v/a/b/c/d", Type: "tmpfs", Source: "tmpfs"},
			specs.Mount{Destination: "/v/a/b/c/d/e", Type: "bind", Source: src, Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/v/a/file", Type: "bind", Source: filepath.Join(src, "host-file"), Options: []string{"bind", "ro"}})
	}, "true")
	// 40 iterations missed a string-resolving (weakened) build about half
	// the time; 80 caught it.
	n := raceIters(80)
	ok := 0
	for i := 0; i < n; i++ {
		if res := r.run("run", "-b", b, r.id()); res.code == 0 {
			ok++
		}
	}
	x.stop(20 * time.Second)
	if ok == 0 {
		t.Errorf("B never ran in %d tries: the race test tests nothing", n)
	}
	t.Logf("%d of %d creates of B succeeded", ok, n)
	c.check()
	if got := mountPoints(t, scope); got != hostMounts {
		t.Errorf("host mount table changed:\nbefore:\n%s\nafter:\n%s", hostMounts, got)
	}
}

// mountPoints lists the host's mount points under scope, in the kernel's
// order.
func mountPoints(t *testing.T, scope string) string {
	t.Helper()
	return strings.Join(mountsUnder(scope), "\n")
}

// TestCVE_2025_31133_DevNullSymlink: with /dev bind-mounted from an attacker
// directory, /dev/null is a symlink to core_pattern (or missing). Masking
// with it would bind core_pattern read-write over the masked paths, or
// silently skip the masks. Create must fail.
func TestCVE_2025_31133_DevNullSymlink(t *testing.T) {
	r := newRT(t)
	c := newCanary(t)
	for _, tt := range []struct{ name, link string }{
		{"symlink to core_pattern", "/proc/sys/kernel/core_pattern"},
		{"symlink to sysrq-trigger", "/proc/sysrq-trigger"},
		{"missing", ""},
	} {
		dev := t.TempDir()
		if tt.link != "" {
			os.Symlink(tt.link, filepath.Join(dev, "null"))
		}
		b := testutil.Bundle(t, func(s *specs.Spec) {
			withoutDevMounts(s)
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev", Type: "bind", Source: dev, Options: []string{"rbind", "rw"}})
			s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/proc/sysrq-trigger")
		}, "sh", "-c", "cat /proc/kcore | head -c 16 | wc -c; echo x > /proc/sysrq-trigger && echo WROTE; true")
		res := r.run("run", "-b", b, r.id())
		if res.code == 0 || strings.Contains(res.stdout, "WROTE") {
			t.Errorf("%s: want create to fail, got %+v", tt.name, res)
		} else if !strings.Contains(res.stderr, "/dev/null") {
			t.Errorf("%s: the error should name /dev/null: %s", tt.name, res.stderr)
		}
	}
	// The normal case masks for real.
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/proc/sysrq-trigger")
		s.Linux.ReadonlyPaths = nil
	}, "sh", "-c", "echo kcore=$(head -c 16 /proc/kcore | wc -c); echo x > /proc/sysrq-trigger && echo WROTE; true")
	res := r.run("run", "-b", b, r.id())
	if res.code != 0 || !strings.Contains(res.stdout, "kcore=0") || strings.Contains(res.stdout, "WROTE") {
		t.Errorf("masking with the real /dev/null: %+v", res)
	}
	c.check()
}

// TestCVE_2025_52565_ConsolePtsSymlink: terminal=true with an image whose
// /dev/pts/0 (and /dev/pts/ptmx) are symlinks to core_pattern. /dev/console
// must be the container's pty (character device, major 136) and the host's
// core_pattern untouched; without a devpts mount the runtime must refuse
// the fake ptmx rather than use it.
func TestCVE_2025_52565_ConsolePtsSymlink(t *testing.T) {
	r := newRT(t)
	c := newCanary(t)
	for _, tt := range []struct {
		name    string
		noDevpt bool
	}{{"devpts mounted", false}, {"no /dev mounts at all", true}} {
		b := testutil.Bundle(t, func(s *specs.Spec) {
			s.Process.Terminal = true
			if tt.noDevpt {
				withoutDevMounts(s)
			}
		}, "sh", "-c", "stat -c '%F %t' /dev/console; cat /proc/sys/kernel/core_pattern > /dev/null")
		pts := filepath.Join(b, "rootfs", "dev", "pts")
		os.MkdirAll(pts, 0o755)
		os.Symlink("/proc/sys/kernel/core_pattern", filepath.Join(pts, "0"))
		os.Symlink("/proc/sys/kernel/core_pattern", filepath.Join(pts, "ptmx"))
		out, code, stderr := runWithConsole(t, r, b)
		if tt.noDevpt {
			if code == 0 || !strings.Contains(stderr, "not a pty multiplexer") {
				t.Errorf("%s: a fake /dev/pts/ptmx must be refused: exit %d %q %s", tt.name, code, out, stderr)
			}
			continue
		}
		if code != 0 || !strings.Contains(out, "character special file 88") {
			t.Errorf("%s: /dev/console is not a pty: exit %d %q %s", tt.name, code, out, stderr)
		}
	}
	c.check()
}

// runWithConsole runs a terminal container detached with a console socket,
// collects what the container writes to its pty, and waits for it to exit.
func runWithConsole(t *testing.T, r *rt, bundle string) (string, int, string) {
	t.Helper()
	dir := t.TempDir()
	sockPath := filepath.Join(dir, "console.sock")
	l, err := net.Listen("unix", sockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			got <- ""
			return
		}
		defer conn.Close()
		f, err := conn.(*net.UnixConn).File()
		if err != nil {
			got <- ""
			return
		}
		defer f.Close()
		m, err := console.RecvMaster(f)
		if err != nil {
			got <- ""
			return
		}
		defer m.Close()
		var sb strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- sb.String()
	}()
	id := r.id()
	res := r.run("run", "-d", "--console-socket", sockPath, "-b", bundle, id)
	if res.code != 0 {
		return "", res.code, res.stderr
	}
	select {
	case out := <-got:
		return out, 0, res.stderr
	case <-time.After(15 * time.Second):
		t.Fatalf("no console output from %s", id)
	}
	return "", 0, ""
}

// TestCVE_2026_41579_DevSymlinkOutside: no /dev mount, and the image's /dev
// is a symlink to a host directory holding a ptmx file. Device creation and
// the /dev links must stay in the rootfs (CVE-2026-41579, CVE-2026-47766).
func TestCVE_2026_41579_DevSymlinkOutside(t *testing.T) {
	r := newRT(t)
	c := newCanary(t)
	os.WriteFile(filepath.Join(c.sentinel, "ptmx"), []byte("host"), 0o644)
	c.before = c.snapshot()
	for _, target := range []string{c.sentinel, strings.Repeat("../", 20) + strings.TrimPrefix(c.sentinel, "/")} {
		b := testutil.Bundle(t, withoutDevMounts, "sh", "-c", "ls -l /dev/null")
		dev := filepath.Join(b, "rootfs", "dev")
		os.RemoveAll(dev)
		if err := os.Symlink(target, dev); err != nil {
			t.Fatal(err)
		}
		r.run("run", "-b", b, r.id())
	}
	c.check()
}

// TestCVE_2019_18837_ResolvConfSymlink: the image's /etc/resolv.conf is a
// symlink to a host path; the engine bind-mounts a resolv.conf over it. The
// mount target (a new empty file) must be created inside the rootfs.
func TestCVE_2019_18837_ResolvConfSymlink(t *testing.T) {
	r := newRT(t)
	c := newCanary(t)
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 192.0.2.1\n"), 0o644)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: resolv, Options: []string{"bind", "ro"}})
	}, "cat", "/etc/resolv.conf")
	os.Symlink(filepath.Join(c.sentinel, "resolv.conf"), filepath.Join(b, "rootfs", "etc", "resolv.conf"))
	res := r.run("run", "-b", b, r.id())
	if res.code != 0 || !strings.Contains(res.stdout, "192.0.2.1") {
		t.Errorf("bind through an in-image absolute symlink must be scoped, not refused: %+v", res)
	}
	c.check()
}

// TestCVE_2026_88265_DevNullOwnership: stdio on the host's /dev/null, a
// container whose own /dev/null is not the null device (a /dev bind mount of
// an attacker directory with /dev/null -> a file), and a non-root user. The
// host's /dev/null must stay root-owned (runc #3674) and no host file may be
// chowned.
func TestCVE_2026_88265_DevNullOwnership(t *testing.T) {
	r := newRT(t)
	c := newCanary(t)
	secret := filepath.Join(c.sentinel, "shadow")
	os.WriteFile(secret, []byte("secret"), 0o600)
	c.before = c.snapshot()
	var before unix.Stat_t
	if err := unix.Stat("/dev/null", &before); err != nil {
		t.Fatal(err)
	}
	// Never leave the host's /dev/null broken when the test fails.
	t.Cleanup(func() { unix.Chown("/dev/null", int(before.Uid), int(before.Gid)) })
	devnull, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	dev := t.TempDir()
	os.WriteFile(filepath.Join(dev, "null"), nil, 0o666)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		withoutDevMounts(s)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev", Type: "bind", Source: dev, Options: []string{"rbind", "rw"}})
		s.Linux.MaskedPaths = nil
		s.Process.User = specs.User{UID: 1000, GID: 1000}
	}, "true")
	r.runIn("", devnull, "run", "-b", b, r.id())
	// And the exec --user path, on a normal container.
	b2 := testutil.Bundle(t, nil, "sleep", "100")
	id := r.id()
	r.must("run", "-d", "-b", b2, id)
	r.runIn("", devnull, "exec", "--user", "1000:1000", id, "true")
	r.must("delete", "-f", id)
	var after unix.Stat_t
	if err := unix.Stat("/dev/null", &after); err != nil {
		t.Fatal(err)
	}
	if after.Uid != before.Uid || after.Gid != before.Gid || after.Mode != before.Mode {
		t.Errorf("host /dev/null changed: uid %d->%d gid %d->%d mode %o->%o", before.Uid, after.Uid, before.Gid, after.Gid, before.Mode, after.Mode)
	}
	c.check()
}

// TestCVE_2024_23651_TeardownSymlink: after create, the mount point the
// runtime made in the rootfs is replaced by a symlink to a host file;
// delete must not remove (or follow) it.
func TestCVE_2024_23651_TeardownSymlink(t *testing.T) {
	r := newRT(t)
	c := newCanary(t)
	victim := filepath.Join(c.sentinel, "keep")
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Root.Readonly = false
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/made-by-runtime", Type: "tmpfs", Source: "tmpfs"})
	}, "sleep", "100")
	id := r.id()
	r.must("create", "-b", b, id)
	stub := filepath.Join(b, "rootfs", "made-by-runtime")
	os.RemoveAll(stub)
	os.Symlink(victim, stub)
	r.must("delete", "-f", id)
	c.check()
}

// TestCompat_MountThroughSymlinks (§2.C10): the fixes of this class must
// not break images. A target reached through an absolute in-image symlink,
// through a dangling symlink component, or through a trailing dangling
// symlink is created and mounted inside the rootfs, not refused.
func TestCompat_MountThroughSymlinks(t *testing.T) {
	r := newRT(t)
	c := newCanary(t)
	for _, tt := range []struct {
		name, link, to, dest, check string
	}{
		{"absolute symlink", "abs", "/target-abs", "/abs/sub", "/target-abs/sub"},
		{"dangling component", "dang", "/not-yet/there", "/dang/sub", "/not-yet/there/sub"},
		{"trailing dangling", "trail", "/later", "/trail", "/later"},
		{"relative escape", "rel", "../../../../" + strings.TrimPrefix(c.sentinel, "/"), "/rel/sub", c.sentinel + "/sub"},
	} {
		b := testutil.Bundle(t, func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: tt.dest, Type: "tmpfs", Source: "tmpfs"})
		}, "sh", "-c", "grep -c ' "+tt.check+" .* - tmpfs ' /proc/self/mountinfo")
		rootfs := filepath.Join(b, "rootfs")
		if tt.name == "absolute symlink" {
			os.MkdirAll(filepath.Join(rootfs, "target-abs"), 0o755)
		}
		if err := os.Symlink(tt.to, filepath.Join(rootfs, tt.link)); err != nil {
			t.Fatal(err)
		}
		res := r.run("run", "-b", b, r.id())
		if res.code != 0 || strings.TrimSpace(res.stdout) != "1" {
			t.Errorf("%s: the tmpfs is not at %s inside the container: %+v", tt.name, tt.check, res)
		}
	}
	c.check()
}

// TestCompat_NoPivotNoBareProc (§2.C10, runc no_pivot.bats): with
// --no-pivot the host's procfs stays in the container's mount namespace
// under the moved root; container code that makes a user namespace must
// still not be able to mount a fresh, unmasked procfs.
func TestCompat_NoPivotNoBareProc(t *testing.T) {
	r := newRT(t)
	// As uid 1000: mapping uid 0 into a new user namespace needs
	// CAP_SETFCAP, which the default capabilities do not grant.
	b := testutil.Bundle(t, func(s *specs.Spec) { s.Process.User = specs.User{UID: 1000, GID: 1000} },
		"unshare", "-m", "-r", "-p", "-f", "sh", "-c", "mount -t proc proc /mnt && echo MOUNTED && ls /mnt/sysrq-trigger; true")
	os.MkdirAll(filepath.Join(b, "rootfs", "mnt"), 0o755)
	for _, args := range [][]string{{"run"}, {"run", "--no-pivot"}} {
		res := r.run(append(args, "-b", b, r.id())...)
		if res.code != 0 {
			t.Fatalf("%v: %+v", args, res)
		}
		if strings.Contains(res.stdout, "MOUNTED") {
			t.Errorf("%v: the container mounted a bare procfs: %s", args, res.stdout)
		}
		if !strings.Contains(res.stderr, "permission denied") {
			t.Errorf("%v: the mount should be refused by the kernel: %s", args, res.stderr)
		}
	}
}
