package oneshot

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/image/bundle"
)

func testRootfs(t *testing.T) string {
	t.Helper()
	r := t.TempDir()
	os.MkdirAll(filepath.Join(r, "etc"), 0o755)
	os.WriteFile(filepath.Join(r, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(r, "etc/group"), []byte("root:x:0:\nweb:x:1000:\nwheel:x:10:web\n"), 0o644)
	return r
}

func testImage(c imgspec.ImageConfig) *bundle.Image {
	return &bundle.Image{Config: &imgspec.Image{Config: c}}
}

func buildSpec(t *testing.T, o Options, c imgspec.ImageConfig) (*specs.Spec, Meta) {
	t.Helper()
	o.Name = "t1"
	if o.VolumeDir == "" {
		o.VolumeDir = "/vols"
	}
	var m Meta
	s, err := o.spec(testImage(c), testRootfs(t), &m)
	if err != nil {
		t.Fatal(err)
	}
	return s, m
}

func envOf(s *specs.Spec, name string) (string, bool) {
	for _, e := range s.Process.Env {
		if k, v, _ := strings.Cut(e, "="); k == name {
			return v, true
		}
	}
	return "", false
}

func TestSpecDefaults(t *testing.T) {
	s, m := buildSpec(t, Options{}, imgspec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"A=1"}})
	if s.Root.Readonly {
		t.Error("root is read-only by default")
	}
	if s.Process.NoNewPrivileges || s.Process.Terminal {
		t.Errorf("noNewPrivileges %v terminal %v", s.Process.NoNewPrivileges, s.Process.Terminal)
	}
	if !reflect.DeepEqual(s.Process.Capabilities.Bounding, DefaultCaps) || s.Process.Capabilities.Ambient != nil {
		t.Errorf("caps: %+v", s.Process.Capabilities)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("seccomp: %v", s.Linux.Seccomp)
	}
	if s.Hostname != "t1" {
		t.Errorf("hostname %q", s.Hostname)
	}
	for name, want := range map[string]string{"A": "1", "HOSTNAME": "t1", "HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"} {
		if v, _ := envOf(s, name); v != want {
			t.Errorf("env %s=%q, want %q", name, v, want)
		}
	}
	if _, ok := envOf(s, "TERM"); ok {
		t.Error("TERM without a terminal")
	}
	found := false
	for _, p := range s.Linux.MaskedPaths {
		found = found || p == "/sys/devices/virtual/powercap"
	}
	if !found {
		t.Error("powercap is not masked")
	}
	var nofile *specs.POSIXRlimit
	for i := range s.Process.Rlimits {
		if s.Process.Rlimits[i].Type == "RLIMIT_NOFILE" {
			nofile = &s.Process.Rlimits[i]
		}
	}
	if nofile == nil || nofile.Hard < 1024 || nofile.Soft != nofile.Hard {
		t.Errorf("nofile: %+v", nofile)
	}
	if !reflect.DeepEqual(m.Args, []string{"sh"}) {
		t.Errorf("args %v", m.Args)
	}
}

func TestSpecCommandRules(t *testing.T) {
	img := imgspec.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}}
	e := func(s string) *string { return &s }
	for _, c := range []struct {
		o    Options
		want []string
	}{
		{Options{}, []string{"/entry", "default"}},
		{Options{Cmd: []string{"x", "y"}}, []string{"/entry", "x", "y"}},
		{Options{Entrypoint: e("/other")}, []string{"/other"}},
		{Options{Entrypoint: e("/other"), Cmd: []string{"a"}}, []string{"/other", "a"}},
		{Options{Entrypoint: e(`["/bin/sh","-c"]`), Cmd: []string{"echo"}}, []string{"/bin/sh", "-c", "echo"}},
		{Options{Entrypoint: e(""), Cmd: []string{"ls"}}, []string{"ls"}},
		{Options{Init: true, InitBinary: "/proc/self/exe"}, []string{InitPath, "--", "/entry", "default"}},
	} {
		if c.o.Init {
			exe, _ := os.Executable()
			if checkStatic(exe) != nil {
				continue // a dynamically linked test binary
			}
			c.o.InitBinary = exe
		}
		s, _ := buildSpec(t, c.o, img)
		if !reflect.DeepEqual(s.Process.Args, c.want) {
			t.Errorf("%+v: args %v, want %v", c.o, s.Process.Args, c.want)
		}
	}
	var m Meta
	if _, err := (&Options{Name: "x", Entrypoint: e("")}).spec(testImage(imgspec.ImageConfig{Cmd: []string{"sh"}}), testRootfs(t), &m); err == nil {
		t.Error("no command at all was accepted")
	}
}

func TestSpecUserAndEnv(t *testing.T) {
	img := imgspec.ImageConfig{User: "web", Cmd: []string{"sh"}}
	s, _ := buildSpec(t, Options{}, img)
	if u := s.Process.User; u.UID != 1000 || u.GID != 1000 || !reflect.DeepEqual(u.AdditionalGids, []uint32{10}) {
		t.Errorf("image user: %+v", u)
	}
	if h, _ := envOf(s, "HOME"); h != "/home/web" {
		t.Errorf("HOME %q", h)
	}
	s, _ = buildSpec(t, Options{User: "0", GroupAdd: []string{"wheel", "77"}, TTY: true, Env: []string{"HOME=/x"}}, img)
	if u := s.Process.User; u.UID != 0 || !reflect.DeepEqual(u.AdditionalGids, []uint32{10, 77}) {
		t.Errorf("-u 0 --group-add: %+v", u)
	}
	if h, _ := envOf(s, "HOME"); h != "/x" {
		t.Errorf("-e HOME: %q", h)
	}
	if v, _ := envOf(s, "TERM"); v != "xterm" {
		t.Errorf("TERM with -t: %q", v)
	}
	var m Meta
	if _, err := (&Options{Name: "x", User: "nobody"}).spec(testImage(img), testRootfs(t), &m); err == nil {
		t.Error("unknown user accepted")
	}
}

func TestSpecMounts(t *testing.T) {
	host := t.TempDir()
	img := imgspec.ImageConfig{Cmd: []string{"sh"}, Volumes: map[string]struct{}{"/data": {}, "/logs": {}}}
	s, m := buildSpec(t, Options{
		Volumes: []string{"/x/y", host + ":/x:ro", "named:/data"},
		Tmpfs:   []string{"/t:size=1m,exec"}, ShmSize: 1 << 20, ReadOnly: true,
	}, img)
	var got []string
	for _, mt := range s.Mounts {
		switch {
		case mt.Type == "bind" || mt.Destination == "/t" || mt.Destination == "/tmp" || mt.Destination == "/run" || mt.Destination == "/var/tmp":
			got = append(got, mt.Destination+" "+mt.Source+" "+strings.Join(mt.Options, ","))
		case mt.Destination == "/data" || mt.Destination == "/logs":
			t.Errorf("umoci's tmpfs for an image volume is left: %+v", mt)
		case mt.Destination == "/dev/shm" && !strings.Contains(strings.Join(mt.Options, ","), "size=1048576"):
			t.Errorf("shm: %v", mt.Options)
		}
	}
	if len(m.Volumes) != 3 {
		t.Fatalf("volumes: %+v", m.Volumes)
	}
	anonX, anonLogs := m.Volumes[0], m.Volumes[2]
	if !anonX.Anonymous || anonX.Destination != "/x/y" || m.Volumes[1].Name != "named" || !anonLogs.Anonymous || anonLogs.Destination != "/logs" {
		t.Errorf("volumes: %+v", m.Volumes)
	}
	want := []string{
		"/t tmpfs rw,nosuid,nodev,size=1m,exec",
		"/run tmpfs rw,nosuid,nodev,mode=1777",
		"/tmp tmpfs rw,nosuid,nodev,mode=1777",
		"/x " + host + " rbind,rprivate,ro",
		"/data /vols/named/_data rbind,rprivate",
		"/logs /vols/" + anonLogs.Name + "/_data rbind,rprivate",
		"/var/tmp tmpfs rw,nosuid,nodev,mode=1777",
		"/x/y /vols/" + anonX.Name + "/_data rbind,rprivate",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mounts (parents first):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !s.Root.Readonly {
		t.Error("--read-only")
	}
}

func TestSpecSecurity(t *testing.T) {
	img := imgspec.ImageConfig{Cmd: []string{"sh"}}
	s, _ := buildSpec(t, Options{Privileged: true}, img)
	if s.Linux.Seccomp != nil || s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil {
		t.Errorf("privileged: seccomp %v masked %v ro %v", s.Linux.Seccomp != nil, s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if !reflect.DeepEqual(s.Process.Capabilities.Bounding, boundingCaps()) {
		t.Errorf("privileged caps: %v", s.Process.Capabilities.Bounding)
	}
	for _, mt := range s.Mounts {
		if mt.Type == "sysfs" && strings.Contains(strings.Join(mt.Options, ","), "ro") {
			t.Errorf("privileged /sys: %v", mt.Options)
		}
	}
	if len(s.Linux.Resources.Devices) != 1 || !s.Linux.Resources.Devices[0].Allow {
		t.Errorf("privileged device rules: %+v", s.Linux.Resources.Devices)
	}
	s, _ = buildSpec(t, Options{SecurityOpt: []string{"no-new-privileges", "seccomp=unconfined"}, CapDrop: []string{"ALL"}, CapAdd: []string{"net_admin"}}, img)
	if !s.Process.NoNewPrivileges || s.Linux.Seccomp != nil || !reflect.DeepEqual(s.Process.Capabilities.Bounding, []string{"CAP_NET_ADMIN"}) {
		t.Errorf("security-opt: nnp %v seccomp %v caps %v", s.Process.NoNewPrivileges, s.Linux.Seccomp, s.Process.Capabilities.Bounding)
	}
	prof := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(prof, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644)
	s, _ = buildSpec(t, Options{SecurityOpt: []string{"seccomp=" + prof}}, img)
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActAllow || len(s.Linux.Seccomp.Syscalls) != 1 {
		t.Errorf("seccomp file: %+v", s.Linux.Seccomp)
	}
	for _, bad := range []string{"apparmor=docker-default", "label=type:x", "seccomp=", "bogus"} {
		var m Meta
		if _, err := (&Options{Name: "x", SecurityOpt: []string{bad}}).spec(testImage(img), testRootfs(t), &m); err == nil {
			t.Errorf("--security-opt %s accepted", bad)
		}
	}
}

func TestParsers(t *testing.T) {
	for in, want := range map[string]RestartPolicy{"": {Name: "no"}, "no": {Name: "no"}, "always": {Name: "always"},
		"on-failure": {Name: "on-failure"}, "on-failure:3": {Name: "on-failure", MaxRetries: 3}, "unless-stopped": {Name: "unless-stopped"}} {
		if got, err := ParseRestart(in); err != nil || got != want {
			t.Errorf("ParseRestart(%q) = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"sometimes", "always:3", "on-failure:x", "on-failure:-1", "no:1"} {
		if _, err := ParseRestart(bad); err == nil {
			t.Errorf("ParseRestart(%q) accepted", bad)
		}
	}
	if l, err := ParseUlimit("nofile=512:1024"); err != nil || l.Type != "RLIMIT_NOFILE" || l.Soft != 512 || l.Hard != 1024 {
		t.Errorf("ParseUlimit: %+v %v", l, err)
	}
	for _, bad := range []string{"nofile", "bogus=1", "nofile=2:1", "nofile=x"} {
		if _, err := ParseUlimit(bad); err == nil {
			t.Errorf("ParseUlimit(%q) accepted", bad)
		}
	}
	for in, want := range map[string]string{"/a": "anon /a", "/h:/c": "bind /h /c false", "/h:/c:ro": "bind /h /c true", "vol:/c": "vol /c false", "vol:/c:ro,z": "vol /c true"} {
		vm, bm, err := parseVolumeFlag(in)
		got := ""
		switch {
		case err != nil:
			got = err.Error()
		case bm != nil:
			got = strings.Join([]string{"bind", bm.Source, bm.Destination, boolStr(bm.ReadOnly)}, " ")
		case vm.Name == "":
			got = "anon " + vm.Destination
		default:
			got = strings.Join([]string{vm.Name, vm.Destination, boolStr(vm.ReadOnly)}, " ")
		}
		if got != want {
			t.Errorf("-v %s: %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"rel", "a:rel", "./x:/c", "/h:/c:rx", "/a:/b:ro:x"} {
		if _, _, err := parseVolumeFlag(bad); err == nil {
			t.Errorf("-v %s accepted", bad)
		}
	}
	ports, err := exposedPorts(map[string]struct{}{"80/tcp": {}, "53/udp": {}, "8080": {}}, []string{"9000-9001", "443/tcp"})
	if err != nil || !reflect.DeepEqual(ports, []string{"53/udp", "80/tcp", "443/tcp", "8080/tcp", "9000/tcp", "9001/tcp"}) {
		t.Errorf("exposedPorts: %v %v", ports, err)
	}
	if d, err := parseDeviceRule("c 1:* rwm"); err != nil || d.Type != "c" || *d.Major != 1 || d.Minor != nil || d.Access != "rwm" {
		t.Errorf("parseDeviceRule: %+v %v", d, err)
	}
	for _, bad := range []string{"c 1:3", "x 1:3 r", "c 1 r", "c 1:3 rx"} {
		if _, err := parseDeviceRule(bad); err == nil {
			t.Errorf("parseDeviceRule(%q) accepted", bad)
		}
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestExitCodeAndRestart(t *testing.T) {
	for msg, want := range map[string]int{
		`unable to start container process: error during container init: exec: "x": executable file not found in $PATH`: 127,
		`error during container init: exec: "/x": no such file or directory`:                                            127,
		`error during container init: exec: "/etc/passwd": permission denied`:                                           126,
		`unable to apply cgroup configuration: no such file or directory`:                                               125,
	} {
		if got := ExitCode(errors.New(msg)); got != want {
			t.Errorf("ExitCode(%q) = %d, want %d", msg, got, want)
		}
	}
	of3 := RestartPolicy{Name: "on-failure", MaxRetries: 3}
	for _, c := range []struct {
		p    RestartPolicy
		st   RunState
		code int
		want bool
	}{
		{of3, RunState{RestartCount: 2}, 1, true},
		{of3, RunState{RestartCount: 3}, 1, false},
		{of3, RunState{}, 0, false},
		{RestartPolicy{Name: "on-failure"}, RunState{RestartCount: 100}, 1, true},
		{RestartPolicy{Name: "always"}, RunState{}, 0, true},
		{RestartPolicy{Name: "always"}, RunState{ManualStop: true}, 0, false},
		{RestartPolicy{Name: "no"}, RunState{}, 1, false},
	} {
		if got := shouldRestart(c.p, c.st, c.code); got != c.want {
			t.Errorf("shouldRestart(%+v, %+v, %d) = %v", c.p, c.st, c.code, got)
		}
	}
}

// TestLogFormat writes output the way a runner does (lines split across
// writes, an unfinished last line, two streams) and reads it back.
func TestLogFormat(t *testing.T) {
	dir := t.TempDir()
	c := &Container{Paths: PathsOf(dir, "x")}
	os.MkdirAll(c.Paths.Dir, 0o700)
	f, err := os.OpenFile(c.Paths.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	w := newLogWriter(f)
	out, errs := w.stream("stdout"), w.stream("stderr")
	out.Write([]byte("one\ntw"))
	errs.Write([]byte("oops\n"))
	out.Write([]byte("o\nthree\nunfin"))
	f.Close()
	var got []string
	c.Logs(t.Context(), LogOptions{Tail: -1}, func(e LogEntry) error {
		if e.Time.IsZero() || time.Since(e.Time) > time.Minute {
			t.Errorf("time %v", e.Time)
		}
		got = append(got, e.Stream+":"+e.Text)
		return nil
	})
	want := []string{"stdout:one\n", "stderr:oops\n", "stdout:two\n", "stdout:three\n", "stdout:unfin"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("log: %q, want %q", got, want)
	}
	got = nil
	c.Logs(t.Context(), LogOptions{Tail: 2}, func(e LogEntry) error { got = append(got, e.Text); return nil })
	if !reflect.DeepEqual(got, []string{"three\n", "unfin"}) {
		t.Errorf("tail 2: %q", got)
	}
}

// TestCopySymlinks copies out of and into a tree whose symlinks point out
// of it: every one resolves inside.
func TestCopySymlinks(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o600)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.MkdirAll(filepath.Join(root, "tmp"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("container"), 0o644)
	os.Symlink("/", filepath.Join(root, "tmp/toroot"))
	os.Symlink("../../../../../../..", filepath.Join(root, "tmp/up"))
	os.Symlink(outside, filepath.Join(root, "tmp/out"))
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "tmp/secret"))
	ct, err := openTree(root, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	host, _ := openTree("/", false)
	defer host.Close()
	dst := t.TempDir()
	o := copyOpts{UID: os.Getuid(), GID: os.Getgid()}
	if err := copyBetween(copyEnd{ct, "/tmp/toroot/etc/passwd"}, copyEnd{host, filepath.Join(dst, "a")}, o); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a")); string(b) != "container" {
		t.Errorf("through /tmp/toroot: %q", b)
	}
	if err := copyBetween(copyEnd{ct, "/tmp/up" + outside + "/secret"}, copyEnd{host, filepath.Join(dst, "b")}, o); err == nil {
		t.Error(".. led out of the root")
	}
	if err := copyBetween(copyEnd{ct, "/tmp/out/secret"}, copyEnd{host, filepath.Join(dst, "c")}, o); err == nil {
		t.Error("an absolute link to a host directory led out of the root")
	}
	// In: a destination that is a link to a host file is followed inside
	// the root, never to the host.
	src := filepath.Join(t.TempDir(), "in")
	os.WriteFile(src, []byte("new"), 0o644)
	copyBetween(copyEnd{host, src}, copyEnd{ct, "/tmp/secret"}, o)
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "host" {
		t.Fatalf("the host file was written: %q", b)
	}
	if err := copyBetween(copyEnd{host, src}, copyEnd{ct, "/tmp/toroot/etc/"}, o); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/in")); string(b) != "new" {
		t.Errorf("copy in through /tmp/toroot: %q", b)
	}
	// A tree, its contents (SRC/.), and the symlinks in it kept as links.
	os.MkdirAll(filepath.Join(root, "srv/sub"), 0o750)
	os.WriteFile(filepath.Join(root, "srv/sub/f"), []byte("f"), 0o640)
	os.Symlink("/etc/passwd", filepath.Join(root, "srv/link"))
	if err := copyBetween(copyEnd{ct, "/srv"}, copyEnd{host, filepath.Join(dst, "srv")}, o); err != nil {
		t.Fatal(err)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "srv/link")); l != "/etc/passwd" {
		t.Errorf("link: %q", l)
	}
	if fi, err := os.Stat(filepath.Join(dst, "srv/sub")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("dir mode: %v %v", fi, err)
	}
	os.MkdirAll(filepath.Join(dst, "contents"), 0o755)
	if err := copyBetween(copyEnd{ct, "/srv/."}, copyEnd{host, filepath.Join(dst, "contents")}, o); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "contents/sub/f")); string(b) != "f" {
		t.Errorf("SRC/.: %q", b)
	}
}
