package bundle

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func rootfsWith(t *testing.T, passwd, group string) string {
	t.Helper()
	r := t.TempDir()
	os.MkdirAll(filepath.Join(r, "etc"), 0o755)
	if passwd != "" {
		os.WriteFile(filepath.Join(r, "etc/passwd"), []byte(passwd), 0o644)
	}
	if group != "" {
		os.WriteFile(filepath.Join(r, "etc/group"), []byte(group), 0o644)
	}
	return r
}

const passwd = "root:x:0:0:root:/root:/bin/sh\n# comment\nweb:x:1000:1001:web:/home/web:/bin/sh\nbad:x:notanumber:0::/:\n"
const group = "root:x:0:\nweb:x:1001:\nwheel:x:10:web,other\naudio:x:29:web\nstaff:x:50:other\n"

func TestResolveUser(t *testing.T) {
	r := rootfsWith(t, passwd, group)
	cases := []struct {
		spec string
		want User
		err  string
	}{
		{"", User{UID: 0, GID: 0, Home: "/root"}, ""},
		{"root", User{Home: "/root"}, ""},
		{"web", User{UID: 1000, GID: 1001, AdditionalGids: []uint32{10, 29}, Home: "/home/web"}, ""},
		{"1000", User{UID: 1000, GID: 1001, AdditionalGids: []uint32{10, 29}, Home: "/home/web"}, ""},
		{"web:staff", User{UID: 1000, GID: 50, Home: "/home/web"}, ""},
		{"web:7", User{UID: 1000, GID: 7, Home: "/home/web"}, ""},
		{"4242", User{UID: 4242}, ""},
		{"4242:4243", User{UID: 4242, GID: 4243}, ""},
		{"nobody", User{}, "unable to find user nobody"},
		{"web:nogroup", User{}, "unable to find group nogroup"},
	}
	for _, c := range cases {
		got, err := ResolveUser(r, c.spec)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: want error %q, got %v", c.spec, c.err, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %+v, %v; want %+v", c.spec, got, err, c.want)
		}
	}
}

// TestResolveUserSafe: /etc/passwd is read inside the rootfs even when it
// is a symlink to an absolute host path, and a non-regular file is refused.
func TestResolveUserSafe(t *testing.T) {
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "passwd"), []byte("evil:x:0:0::/:\n"), 0o644)
	r := rootfsWith(t, "", "")
	os.Symlink(filepath.Join(host, "passwd"), filepath.Join(r, "etc/passwd"))
	if _, err := ResolveUser(r, "evil"); err == nil {
		t.Error("passwd symlink resolved outside the rootfs")
	}
	r2 := rootfsWith(t, "", "")
	// A fifo would block a naive reader forever.
	if err := unix.Mkfifo(filepath.Join(r2, "etc/passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ResolveUser(r2, "0"); err == nil {
		t.Error("passwd fifo accepted")
	}
}

func TestFromImage(t *testing.T) {
	r := rootfsWith(t, passwd, group)
	created := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	img := &imgspec.Image{
		Created:  &created,
		Author:   "me",
		Platform: imgspec.Platform{OS: "linux", Architecture: "amd64", Variant: "v3"},
		Config: imgspec.ImageConfig{
			User:         "web",
			Env:          []string{"PATH=/opt/bin", "A=1"},
			Entrypoint:   []string{"/entry"},
			Cmd:          []string{"-x"},
			WorkingDir:   "srv",
			ExposedPorts: map[string]struct{}{"443/tcp": {}, "80/tcp": {}},
			Volumes:      map[string]struct{}{"/data": {}, "/../../etc": {}},
			Labels:       map[string]string{"org.opencontainers.image.os": "label-wins", "containerd.io/restart.loguri": "binary:///bin/sh", "run.oci.handler": "krun", "ok": "1"},
			StopSignal:   "SIGQUIT",
		},
	}
	s, err := FromImage(img, r, ConvertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Root == nil || s.Root.Readonly || s.Root.Path != "rootfs" {
		t.Errorf("root: %+v (want a writable rootfs, as umoci writes)", s.Root)
	}
	p := s.Process
	if !reflect.DeepEqual(p.Args, []string{"/entry", "-x"}) || p.Cwd != "/srv" {
		t.Errorf("args/cwd: %v %q", p.Args, p.Cwd)
	}
	if !reflect.DeepEqual(p.Env, []string{"PATH=/opt/bin", "A=1", "TERM=xterm", "HOME=/home/web"}) {
		t.Errorf("env: %v", p.Env)
	}
	if p.User.UID != 1000 || p.User.GID != 1001 || !reflect.DeepEqual(p.User.AdditionalGids, []uint32{10, 29}) {
		t.Errorf("user: %+v", p.User)
	}
	want := map[string]string{
		AnnotationOS: "label-wins", AnnotationArch: "amd64", AnnotationVariant: "v3", AnnotationAuthor: "me",
		AnnotationCreated: "2024-05-06T07:08:09Z", AnnotationStopSignal: "SIGQUIT",
		AnnotationExposedPorts: "443/tcp,80/tcp", "ok": "1",
	}
	if !reflect.DeepEqual(s.Annotations, want) {
		t.Errorf("annotations: %v", s.Annotations)
	}
	var vols []string
	for _, m := range s.Mounts {
		if m.Type == "tmpfs" && m.Source == "tmpfs" && m.Destination != "/dev" {
			vols = append(vols, m.Destination)
		}
	}
	if !reflect.DeepEqual(vols, []string{"/data", "/etc"}) {
		t.Errorf("volumes: %v", vols)
	}
	// Empty image config: the defaults stay.
	s2, err := FromImage(&imgspec.Image{}, r, ConvertOptions{UIDMappings: []specs.LinuxIDMapping{{HostID: 1e5, Size: 65536}}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s2.Process.Args, []string{"sh"}) || s2.Process.Cwd != "/" || s2.Annotations != nil {
		t.Errorf("defaults: %v %q %v", s2.Process.Args, s2.Process.Cwd, s2.Annotations)
	}
	if !hasNamespace(s2, specs.UserNamespace) || len(s2.Linux.UIDMappings) != 1 {
		t.Errorf("uid maps not applied: %+v", s2.Linux)
	}
	if _, err := FromImage(&imgspec.Image{Config: imgspec.ImageConfig{User: "ghost"}}, r, ConvertOptions{}); err == nil {
		t.Error("unknown user accepted")
	}
}

func TestEdit(t *testing.T) {
	yes, host := true, "web"
	e := Edit{
		Namespaces: map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "/run/netns/web", specs.IPCNamespace: "host"},
		CapAdd:     []string{"net_raw", "CAP_KILL"},
		CapDrop:    []string{"CAP_AUDIT_WRITE"},
		Args:       []string{"ping", "-c1", "x"},
		Env:        []string{"TERM", "A=2", "B=3"},
		Cwd:        "/srv",
		Terminal:   &yes,
		Hostname:   &host,
		Mounts:     []specs.Mount{{Destination: "/data", Type: "bind", Source: "/srv", Options: []string{"rbind", "ro"}}, {Destination: "/proc", Type: "proc", Source: "proc"}},
		UnMounts:   []string{"/sys/fs/cgroup"},
		Annotation: []string{"k=v"},
	}
	s := &specs.Spec{
		Process: &specs.Process{Env: []string{"PATH=/bin", "TERM=xterm", "A=1"}, Capabilities: &specs.LinuxCapabilities{
			Bounding: []string{"CAP_AUDIT_WRITE", "CAP_KILL"}, Effective: []string{"CAP_AUDIT_WRITE", "CAP_KILL"}, Permitted: []string{"CAP_AUDIT_WRITE", "CAP_KILL"}}},
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc"}, {Destination: "/sys/fs/cgroup", Type: "cgroup"}, {Destination: "/dev", Type: "tmpfs"}},
		Linux:  &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "network"}, {Type: "ipc"}}},
	}
	if err := e.Apply(s); err != nil {
		t.Fatal(err)
	}
	if want := []string{"CAP_KILL", "CAP_NET_RAW"}; !reflect.DeepEqual(s.Process.Capabilities.Bounding, want) || !reflect.DeepEqual(s.Process.Capabilities.Effective, want) {
		t.Errorf("caps: %+v", s.Process.Capabilities)
	}
	if want := []specs.LinuxNamespace{{Type: "pid"}, {Type: "network", Path: "/run/netns/web"}}; !sameNS(s.Linux.Namespaces, want) {
		t.Errorf("namespaces: %+v", s.Linux.Namespaces)
	}
	if want := []string{"PATH=/bin", "A=2", "B=3"}; !reflect.DeepEqual(s.Process.Env, want) {
		t.Errorf("env: %v", s.Process.Env)
	}
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
	}
	if want := []string{"/dev", "/data", "/proc"}; !reflect.DeepEqual(dests, want) {
		t.Errorf("mounts: %v", dests)
	}
	if s.Hostname != "web" || !s.Process.Terminal || s.Process.Cwd != "/srv" || s.Annotations["k"] != "v" || s.Process.Args[0] != "ping" {
		t.Errorf("scalars: %+v", s)
	}
	bad := []Edit{
		{CapAdd: []string{"CAP_FLY"}},
		{CapAdd: []string{"ALL"}},
		{Namespaces: map[specs.LinuxNamespaceType]string{"bogus": ""}},
		{Cwd: "relative"},
		{Mounts: []specs.Mount{{Destination: "rel"}}},
		{Env: []string{"=x"}},
	}
	for i, b := range bad {
		before := &specs.Spec{Process: &specs.Process{Cwd: "/"}}
		if err := b.Apply(before); err == nil {
			t.Errorf("bad edit %d accepted", i)
		}
		if before.Process.Cwd != "/" || before.Process.Capabilities != nil {
			t.Errorf("bad edit %d changed the spec", i)
		}
	}
}

func sameNS(a, b []specs.LinuxNamespace) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[specs.LinuxNamespaceType]string{}
	for _, n := range a {
		m[n.Type] = n.Path
	}
	for _, n := range b {
		if p, ok := m[n.Type]; !ok || p != n.Path {
			return false
		}
	}
	return true
}

func TestSaveAtomic(t *testing.T) {
	d := t.TempDir()
	s := &specs.Spec{Version: "1.0.2", Hostname: "a"}
	if err := Save(d, s); err != nil {
		t.Fatal(err)
	}
	got, err := Load(d)
	if err != nil || got.Hostname != "a" {
		t.Fatalf("load: %+v %v", got, err)
	}
	des, _ := os.ReadDir(d)
	if len(des) != 1 {
		t.Errorf("temp files left: %v", des)
	}
	os.WriteFile(filepath.Join(d, ConfigName), []byte("{not json"), 0o644)
	if _, err := Load(d); err == nil {
		t.Error("invalid config.json accepted")
	}
}

func TestParseMount(t *testing.T) {
	cases := []struct {
		in   string
		want specs.Mount
		ok   bool
	}{
		{"type=bind,src=/a,dst=/b,ro", specs.Mount{Type: "bind", Source: "/a", Destination: "/b", Options: []string{"ro", "rbind"}}, true},
		{"src=/a,target=/b,bind", specs.Mount{Type: "bind", Source: "/a", Destination: "/b", Options: []string{"bind"}}, true},
		{"type=tmpfs,dst=/run,options=size=64m:mode=755", specs.Mount{Type: "tmpfs", Source: "tmpfs", Destination: "/run", Options: []string{"size=64m", "mode=755"}}, true},
		{"type=bind,dst=/b", specs.Mount{}, false},
		{"src=/a", specs.Mount{}, false},
		{"type=bind,src=/a,dst=/b,colour=red", specs.Mount{}, false},
	}
	for _, c := range cases {
		got, err := ParseMount(c.in)
		if (err == nil) != c.ok || c.ok && !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseMount(%q) = %+v, %v", c.in, got, err)
		}
	}
}

func TestNormalizeRef(t *testing.T) {
	cases := map[string]string{
		"alpine":                          "docker.io/library/alpine:latest",
		"alpine:3.20":                     "docker.io/library/alpine:3.20",
		"user/app":                        "docker.io/user/app:latest",
		"index.docker.io/library/busybox": "docker.io/library/busybox:latest",
		"quay.io/a/b:v1":                  "quay.io/a/b:v1",
		"localhost:5000/x":                "localhost:5000/x:latest",
		"localhost/x":                     "localhost/x:latest",
		"alpine@sha256:" + strings.Repeat("a", 64): "docker.io/library/alpine@sha256:" + strings.Repeat("a", 64),
	}
	for in, want := range cases {
		if got, err := NormalizeRef(in); err != nil || got != want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Alpine", "a@sha256:xyz", "a b"} {
		if got, err := NormalizeRef(bad); err == nil {
			t.Errorf("NormalizeRef(%q) = %q, want error", bad, got)
		}
	}
}
