package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/testutil"
)

// rootlessUser is the unprivileged user the rootless tests run berth as,
// made for them (with /etc/subuid and /etc/subgid ranges) and removed at
// the end of the test binary's run.
type rootlessUser struct {
	name     string
	uid, gid int
	home     string
}

var (
	rlOnce sync.Once
	rlUser *rootlessUser
	rlErr  error
)

const rlName = "berth-rl-test"

// newRootlessUser makes (once per test binary) the test user.
func newRootlessUser(t *testing.T) *rootlessUser {
	t.Helper()
	testutil.RequireRoot(t)
	rlOnce.Do(func() {
		if _, err := user.Lookup(rlName); err != nil {
			if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", rlName).CombinedOutput(); err != nil {
				rlErr = fmt.Errorf("useradd: %w: %s", err, out)
				return
			}
		}
		u, err := user.Lookup(rlName)
		if err != nil {
			rlErr = err
			return
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		rlUser = &rootlessUser{name: rlName, uid: uid, gid: gid, home: u.HomeDir}
		for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
			b, _ := os.ReadFile(f)
			if !strings.Contains(string(b), rlName+":") {
				fh, err := os.OpenFile(f, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
				if err != nil {
					rlErr = err
					return
				}
				fmt.Fprintf(fh, "%s:300000:65536\n", rlName)
				fh.Close()
			}
		}
	})
	if rlErr != nil {
		t.Fatal(rlErr)
	}
	return rlUser
}

// removeRootlessUser undoes newRootlessUser (TestMain calls it).
func removeRootlessUser() {
	if rlUser == nil {
		return
	}
	exec.Command("userdel", "--remove", rlName).Run()
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var keep []string
		for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			if !strings.HasPrefix(l, rlName+":") {
				keep = append(keep, l)
			}
		}
		os.WriteFile(f, []byte(strings.Join(keep, "\n")+"\n"), 0o644)
	}
}

// dir makes a directory of the user's own below its home, removed at the
// end of the test.
func (u *rootlessUser) dir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp(u.home, "t-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chown(d, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	return d
}

// berth runs berth as the user, with its own XDG_RUNTIME_DIR.
func (u *rootlessUser) berth(t *testing.T, xdg string, args ...string) result {
	t.Helper()
	cmd := exec.Command(berthBin, args...)
	cmd.Env = []string{"HOME=" + u.home, "XDG_RUNTIME_DIR=" + xdg, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "USER=" + u.name}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
	// Files, not pipes: a detached container keeps its stdio open.
	out, err := os.CreateTemp("", "rl-out-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(out.Name())
	errf, err := os.CreateTemp("", "rl-err-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(errf.Name())
	cmd.Stdout, cmd.Stderr = out, errf
	err = cmd.Run()
	out.Close()
	errf.Close()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	ob, _ := os.ReadFile(out.Name())
	eb, _ := os.ReadFile(errf.Name())
	return result{stdout: string(ob), stderr: string(eb), code: code}
}

// bundle is a busybox bundle of the user's with `berth spec --rootless`'s
// config (its /dev/mqueue bind dropped where the host has none), edited.
func (u *rootlessUser) bundle(t *testing.T, mutate func(*specs.Spec), args ...string) string {
	t.Helper()
	b := u.dir(t)
	testutil.BusyboxRootfs(t, filepath.Join(b, "rootfs"))
	if out, err := exec.Command(berthBin, "spec", "--rootless", "--bundle", b).CombinedOutput(); err != nil {
		t.Fatalf("spec --rootless: %v: %s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(b, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	// spec --rootless maps the caller, who is root here: map the user.
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(u.uid), Size: 1}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(u.gid), Size: 1}}
	s.Process.Terminal = false
	s.Process.Args = args
	if _, err := os.Stat("/dev/mqueue"); err != nil {
		var ms []specs.Mount
		for _, m := range s.Mounts {
			if m.Destination != "/dev/mqueue" {
				ms = append(ms, m)
			}
		}
		s.Mounts = ms
	}
	if mutate != nil {
		mutate(&s)
	}
	testutil.WriteSpec(t, b, &s)
	exec.Command("chown", "-R", fmt.Sprintf("%d:%d", u.uid, u.gid), b).Run()
	return b
}

// TestRootlessLifecycle: berth as an ordinary user, as runc does it: state
// under $XDG_RUNTIME_DIR/berth, root in the container mapped to the user,
// no cgroup (the user may create none here), and every command.
func TestRootlessLifecycle(t *testing.T) {
	u := newRootlessUser(t)
	xdg := u.dir(t)
	b := u.bundle(t, nil, "sh", "-c", "id; cat /proc/self/uid_map; cat /proc/self/setgroups")
	res := u.berth(t, xdg, "run", "-b", b, "rl1")
	if res.code != 0 || !strings.Contains(res.stdout, "uid=0(root) gid=0(root)") || !strings.Contains(res.stdout, fmt.Sprintf("0 %10d          1", u.uid)) ||
		!strings.Contains(res.stdout, "deny") {
		t.Fatalf("run: %+v", res)
	}
	if st, err := os.Stat(filepath.Join(xdg, "berth")); err != nil || st.Mode()&os.ModeSticky == 0 {
		t.Errorf("state root: %v %v (want $XDG_RUNTIME_DIR/berth, sticky)", st, err)
	}
	b = u.bundle(t, nil, "sleep", "100")
	if res := u.berth(t, xdg, "run", "-d", "-b", b, "rl2"); res.code != 0 {
		t.Fatalf("run -d: %+v", res)
	}
	defer u.berth(t, xdg, "delete", "-f", "rl2")
	if res := u.berth(t, xdg, "exec", "rl2", "sh", "-c", "id -u; echo $$"); res.code != 0 || res.stdout != "0\n2\n" {
		t.Errorf("exec: %+v", res)
	}
	if res := u.berth(t, xdg, "state", "rl2"); !strings.Contains(res.stdout, `"status": "running"`) {
		t.Errorf("state: %+v", res)
	}
	if res := u.berth(t, xdg, "list", "-q"); res.stdout != "rl2\n" {
		t.Errorf("list: %+v", res)
	}
	if res := u.berth(t, xdg, "exec", "--additional-gids", "10", "rl2", "true"); res.code == 0 || !strings.Contains(res.stderr, "cannot set any additional groups in a rootless container") {
		t.Errorf("exec with extra groups: %+v", res)
	}
	if res := u.berth(t, xdg, "ps", "rl2"); res.code == 0 || !strings.Contains(res.stderr, "no cgroup") {
		t.Errorf("ps without a cgroup: %+v", res)
	}
	if res := u.berth(t, xdg, "kill", "rl2", "KILL"); res.code != 0 {
		t.Errorf("kill: %+v", res)
	}
	waitFor(5e9, func() bool { return strings.Contains(u.berth(t, xdg, "state", "rl2").stdout, `"stopped"`) })
	if res := u.berth(t, xdg, "delete", "rl2"); res.code != 0 {
		t.Errorf("delete: %+v", res)
	}
	if entries, _ := os.ReadDir(filepath.Join(xdg, "berth")); len(entries) != 0 {
		t.Errorf("state left: %v", entries)
	}
}

// TestRootlessCgroupRules: with no cgroup it may create, a rootless
// container runs only when it asks for no limits and names no cgroup,
// with runc's messages otherwise.
func TestRootlessCgroupRules(t *testing.T) {
	u := newRootlessUser(t)
	xdg := u.dir(t)
	limit := int64(10)
	b := u.bundle(t, func(s *specs.Spec) { s.Linux.Resources = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}} }, "true")
	if res := u.berth(t, xdg, "run", "-b", b, "lim"); res.code != 1 || !strings.Contains(res.stderr, "rootless needs no limits + no cgrouppath when no permission is granted for cgroups") {
		t.Errorf("limits: %+v", res)
	}
	b = u.bundle(t, func(s *specs.Spec) { s.Linux.CgroupsPath = "/berth-rl-test" }, "true")
	if res := u.berth(t, xdg, "run", "-b", b, "path"); res.code != 1 || !strings.Contains(res.stderr, "unable to apply cgroup configuration") ||
		!strings.Contains(res.stderr, "permission denied") {
		t.Errorf("cgroupsPath: %+v", res)
	}
	if entries, _ := os.ReadDir(filepath.Join(xdg, "berth")); len(entries) != 0 {
		t.Errorf("state left: %v", entries)
	}
}

// TestRootlessSubordinateIDs: a config that maps the user's /etc/subuid
// and /etc/subgid ranges too (newuidmap and newgidmap write them), with a
// process running as one of those ids.
func TestRootlessSubordinateIDs(t *testing.T) {
	u := newRootlessUser(t)
	xdg := u.dir(t)
	sub := subordinate(t, u.name, "/etc/subuid")
	subg := subordinate(t, u.name, "/etc/subgid")
	b := u.bundle(t, func(s *specs.Spec) {
		s.Linux.UIDMappings = append(s.Linux.UIDMappings, specs.LinuxIDMapping{ContainerID: 1, HostID: sub, Size: 1000})
		s.Linux.GIDMappings = append(s.Linux.GIDMappings, specs.LinuxIDMapping{ContainerID: 1, HostID: subg, Size: 1000})
		s.Process.User = specs.User{UID: 100, GID: 100}
	}, "sh", "-c", "id; wc -l < /proc/self/uid_map; grep CapEff /proc/self/status")
	res := u.berth(t, xdg, "run", "-b", b, "sub")
	if res.code != 0 || !strings.Contains(res.stdout, "uid=100") || !strings.Contains(res.stdout, "gid=100") || !strings.Contains(res.stdout, "2\n") {
		t.Errorf("run with subordinate ids: %+v", res)
	}
}

// TestRootlessHostCgroupsReadOnly: CVE-2023-25809. `spec --rootless`
// binds the host's /sys rbind,ro, and ro is not recursive: the cgroupfs
// mounts below stayed writable, which gave the container its user's
// delegated cgroups. They are read-only.
func TestRootlessHostCgroupsReadOnly(t *testing.T) {
	u := newRootlessUser(t)
	xdg := u.dir(t)
	b := u.bundle(t, nil, "sh", "-c", `grep " /sys/fs/cgroup" /proc/self/mountinfo | cut -d" " -f5,6`)
	res := u.berth(t, xdg, "run", "-b", b, "ro")
	if res.code != 0 || res.stdout == "" {
		t.Fatalf("run: %+v", res)
	}
	for _, l := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
		if !strings.Contains(l, " ro,") && !strings.HasSuffix(l, " ro") {
			t.Errorf("a writable cgroup mount in a rootless container: %q", l)
		}
	}
}

func subordinate(t *testing.T, name, file string) uint32 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) == 3 && f[0] == name {
			n, _ := strconv.Atoi(f[1])
			return uint32(n)
		}
	}
	t.Fatalf("%s has no range in %s", name, file)
	return 0
}
