package integration

import (
	"archive/tar"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/internal/spec"
	"berth/internal/testutil"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const unpackBusyConfig = `{"User":"web","Env":["PATH=/bin","GREETING=hello"],"Entrypoint":["/bin/sh","-c"],"Cmd":["id; pwd; echo $GREETING $HOME"],"WorkingDir":"/tmp","Labels":{"app":"busy","containerd.io/restart.loguri":"binary:///bin/sh"},"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGINT"}`

func unpackBusyImage(t *testing.T, dir string) string {
	rootfs := filepath.Join(dir, "src")
	unpackBusybox(t, rootfs)
	layout := filepath.Join(dir, "layout")
	unpackMakeImage(t, layout, "latest", unpackBusyConfig, rootfs+":gzip")
	return layout
}

// TestUnpackRunsUnderRunc: the classic "umoci unpack" command line with
// berth's name makes a bundle that runc runs, with the image's user, cwd,
// env and args.
func TestUnpackRunsUnderRunc(t *testing.T) {
	testutil.RequireRoot(t)
	runc, err := exec.LookPath("runc")
	testutil.Require(t, err == nil, "runc not installed")
	dir := t.TempDir()
	layout := unpackBusyImage(t, dir)
	bundle := filepath.Join(dir, "bundle")
	if out, err := unpackRun(t, nil, "unpack", "--image", layout+":latest", "--terminal=false", bundle); err != nil {
		t.Fatalf("unpack: %v\n%s", err, out)
	}
	if fi, err := os.Stat(bundle); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("bundle mode: %v %v", fi, err)
	}
	s := readSpec(t, bundle)
	if s.Annotations["app"] != "busy" || s.Annotations["org.opencontainers.image.stopSignal"] != "SIGINT" {
		t.Errorf("annotations: %v", s.Annotations)
	}
	if _, ok := s.Annotations["containerd.io/restart.loguri"]; ok {
		t.Error("reserved image label became an annotation")
	}
	id := "berth-itest-unpack-" + filepath.Base(dir)
	t.Cleanup(func() { exec.Command(runc, "delete", "-f", id).Run() })
	cmd := exec.Command(runc, "run", "-b", bundle, id)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	want := "uid=1000(web) gid=1000(web) groups=10(wheel)\n/tmp\nhello /home/web\n"
	if string(out) != want {
		t.Errorf("runc: container output %q, want %q", out, want)
	}
	// And under berth's own runtime.
	root := filepath.Join(dir, "state")
	t.Cleanup(func() { exec.Command(berthBin, "--root", root, "delete", "-f", id).Run() })
	out, err = exec.Command(berthBin, "--root", root, "run", "-b", bundle, id).CombinedOutput()
	if err != nil || string(out) != want {
		t.Errorf("berth run: %v, output %q, want %q", err, out, want)
	}
}

// TestUnpackStoreRef: a short reference is looked up in berth's image store.
func TestUnpackStoreRef(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "src")
	unpackBusybox(t, rootfs)
	store := filepath.Join(dir, "store")
	unpackMakeImage(t, store, "docker.io/library/busy:1.0", unpackBusyConfig, rootfs+":zstd")
	bundle := filepath.Join(dir, "b")
	if out, err := unpackRun(t, []string{"BERTH_STORE=" + store}, "unpack", "--image", "busy:1.0", bundle); err != nil {
		t.Fatalf("unpack: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(bundle, "rootfs/bin/busybox")); err != nil {
		t.Error(err)
	}
	out, err := unpackRun(t, []string{"BERTH_STORE=" + store}, "unpack", "--image", "busy:2.0", filepath.Join(dir, "b2"))
	if err == nil || !strings.Contains(out, "not found") {
		t.Errorf("missing tag: %v %s", err, out)
	}
}

// TestUnpackHostileCLI: a layer that escapes through a symlink, and one whose
// blob does not match its digest, fail the unpack without leaving a bundle or
// touching the host.
func TestUnpackHostileCLI(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	os.Mkdir(outside, 0o755)
	escape := unpackWriteTar(t, filepath.Join(dir, "escape.tar"),
		unpackEnt{name: "./", typ: tar.TypeSymlink, link: outside})
	layout := filepath.Join(dir, "layout")
	unpackMakeImage(t, layout, "escape", "{}", escape+":gzip")
	bundle := filepath.Join(dir, "b")
	out, err := unpackRun(t, nil, "unpack", "--image", layout+":escape", bundle)
	if err == nil || !strings.Contains(out, "root directory") {
		t.Errorf("root symlink accepted: %v %s", err, out)
	}
	if _, err := os.Lstat(bundle); !os.IsNotExist(err) {
		t.Errorf("bundle left behind: %v", err)
	}
	// Corrupt one byte of the only layer blob.
	good := unpackWriteTar(t, filepath.Join(dir, "good.tar"), unpackEnt{name: "a", typ: tar.TypeReg, body: strings.Repeat("x", 4096)})
	unpackMakeImage(t, layout, "corrupt", "{}", good+":none")
	blobs, _ := filepath.Glob(filepath.Join(layout, "blobs/sha256/*"))
	for _, b := range blobs {
		if fi, _ := os.Stat(b); fi.Size() > 4096 {
			data, _ := os.ReadFile(b)
			data[600] ^= 1
			os.WriteFile(b, data, 0o644)
		}
	}
	out, err = unpackRun(t, nil, "unpack", "--image", layout+":corrupt", bundle)
	if err == nil || !strings.Contains(out, "digest mismatch") {
		t.Errorf("corrupt blob accepted: %v %s", err, out)
	}
	if _, err := os.Lstat(bundle); !os.IsNotExist(err) {
		t.Errorf("bundle left behind: %v", err)
	}
	if des, _ := os.ReadDir(outside); len(des) != 0 {
		t.Errorf("wrote outside the rootfs: %v", des)
	}
}

// TestUnpackOverlay: an overlay bundle from the layer cache, a second one
// from the same cached layers, removal and GC.
func TestUnpackOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	unpackBusybox(t, src)
	upper := unpackWriteTar(t, filepath.Join(dir, "l2.tar"),
		unpackEnt{name: "etc/", typ: tar.TypeDir},
		unpackEnt{name: "etc/.wh.group", typ: tar.TypeReg},
		unpackEnt{name: "etc/motd", typ: tar.TypeReg, body: "hi\n"})
	layout := filepath.Join(dir, "layout")
	unpackMakeImage(t, layout, "latest", `{"Cmd":["sh"]}`, src+":gzip", upper+":zstd")
	env := []string{"BERTH_LAYERS=" + filepath.Join(dir, "cache"), "BERTH_STORE=" + filepath.Join(dir, "nostore")}
	b1, b2 := filepath.Join(dir, "b1"), filepath.Join(dir, "b2")
	t.Cleanup(func() {
		unpackRun(t, env, "bundle", "rm", b1)
		unpackRun(t, env, "bundle", "rm", b2)
	})
	if out, err := unpackRun(t, env, "unpack", "--overlay", "--image", layout, b1); err != nil {
		t.Fatalf("unpack --overlay: %v\n%s", err, out)
	}
	start := time.Now()
	if out, err := unpackRun(t, env, "unpack", "--overlay", "--image", layout, "--hostname", "two", b2); err != nil {
		t.Fatalf("second unpack --overlay: %v\n%s", err, out)
	}
	t.Logf("overlay bundle from cached layers: %v", time.Since(start))
	if b, err := os.ReadFile(filepath.Join(b2, "rootfs/etc/motd")); err != nil || string(b) != "hi\n" {
		t.Errorf("motd: %q %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(b2, "rootfs/etc/group")); !os.IsNotExist(err) {
		t.Errorf("whited-out file visible: %v", err)
	}
	if s := readSpec(t, b2); s.Hostname != "two" {
		t.Errorf("hostname %q", s.Hostname)
	}
	if runc, err := exec.LookPath("runc"); err == nil {
		if out, err := unpackRun(t, nil, "bundle", "edit", b2, "--terminal=false", "--args", "/bin/cat /etc/motd"); err != nil {
			t.Fatalf("bundle edit: %v\n%s", err, out)
		}
		id := "berth-itest-overlay-" + filepath.Base(dir)
		t.Cleanup(func() { exec.Command(runc, "delete", "-f", id).Run() })
		if out, err := exec.Command(runc, "run", "-b", b2, id).CombinedOutput(); err != nil || string(out) != "hi\n" {
			t.Errorf("runc run on an overlay bundle: %v %q", err, out)
		}
	}
	os.WriteFile(filepath.Join(b1, "rootfs/etc/motd"), []byte("changed"), 0o644)
	if b, _ := os.ReadFile(filepath.Join(b2, "rootfs/etc/motd")); string(b) != "hi\n" {
		t.Error("a write in one overlay bundle is visible in another")
	}
	out, _ := unpackRun(t, env, "layers", "ls")
	if strings.Count(out, "\n") != 3 {
		t.Errorf("layers ls: %s", out)
	}
	if out, err := unpackRun(t, env, "layers", "gc"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("gc removed layers in use: %v %q", err, out)
	}
	for _, b := range []string{b1, b2} {
		if out, err := unpackRun(t, env, "bundle", "rm", b); err != nil {
			t.Fatalf("bundle rm: %v\n%s", err, out)
		}
		if _, err := os.Lstat(b); !os.IsNotExist(err) {
			t.Errorf("bundle left: %v", err)
		}
	}
	out, err := unpackRun(t, env, "layers", "gc")
	if err != nil || len(strings.Fields(out)) != 2 {
		t.Errorf("gc after rm: %v %q", err, out)
	}
}

// TestBundleEdit: the config edits users script with jq, written atomically;
// a bad value changes nothing.
func TestBundleEdit(t *testing.T) {
	dir := t.TempDir()
	b, _ := json.MarshalIndent(spec.Default(false), "", "\t")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"bundle", "edit", dir, "--netns", "/var/run/netns/web", "--cap-add", "CAP_NET_RAW", "--cap-drop", "kill",
		"--args", `["ping","-c1","10.0.0.1"]`, "--env", "A=1", "--cwd", "/srv", "--terminal=false", "--hostname", "web",
		"--mount", "type=bind,src=/srv,dst=/data,ro"}
	if out, err := unpackRun(t, nil, args...); err != nil {
		t.Fatalf("bundle edit: %v\n%s", err, out)
	}
	s := readSpec(t, dir)
	var netns string
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			netns = n.Path
		}
	}
	caps := strings.Join(s.Process.Capabilities.Bounding, ",")
	if netns != "/var/run/netns/web" || !strings.Contains(caps, "CAP_NET_RAW") || strings.Contains(caps, "CAP_KILL") ||
		s.Process.Args[0] != "ping" || s.Process.Cwd != "/srv" || s.Process.Terminal || s.Hostname != "web" ||
		s.Mounts[len(s.Mounts)-1].Destination != "/data" {
		t.Errorf("edit not applied: %+v", s)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if out, err := unpackRun(t, nil, "bundle", "edit", dir, "--hostname", "x", "--cap-add", "CAP_FLY"); err == nil || !strings.Contains(out, "CAP_FLY") {
		t.Errorf("bad capability accepted: %v %s", err, out)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if string(before) != string(after) {
		t.Error("a failed edit changed config.json")
	}
	if des, _ := os.ReadDir(dir); len(des) != 1 {
		t.Errorf("temp files left in the bundle: %v", des)
	}
}

// TestUnpackRootless: an unprivileged user unpacks an image with files of
// several owners and a device node: no chown failure, ownership recorded in
// user.rootlesscontainers, the device skipped, a rootless config.json.
func TestUnpackRootless(t *testing.T) {
	testutil.RequireRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	testutil.Require(t, err == nil, "setpriv (util-linux) not installed")
	dir, err := os.MkdirTemp("", "berth-itest-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "berth")
	data, err := os.ReadFile(berthBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	l := unpackWriteTar(t, filepath.Join(dir, "l.tar"),
		unpackEnt{name: "etc/", typ: tar.TypeDir},
		unpackEnt{name: "etc/passwd", typ: tar.TypeReg, body: "root:x:0:0::/root:/bin/sh\n"},
		unpackEnt{name: "home/", typ: tar.TypeDir},
		unpackEnt{name: "home/web/", typ: tar.TypeDir, mode: 0o500, uid: 1000, gid: 1000},
		unpackEnt{name: "home/web/f", typ: tar.TypeReg, mode: 0o400, uid: 1000, gid: 1000, body: "x"},
		unpackEnt{name: "dev/", typ: tar.TypeDir},
		unpackEnt{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		unpackEnt{name: "bin/", typ: tar.TypeDir},
		unpackEnt{name: "bin/su", typ: tar.TypeReg, mode: 0o4755, body: "su"})
	layout := filepath.Join(dir, "layout")
	unpackMakeImage(t, layout, "latest", "{}", l+":gzip")
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	os.Chown(out, 65534, 65534)
	bundle := filepath.Join(out, "b")
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", bin, "--root", filepath.Join(out, "run"), "unpack", "--image", layout, bundle)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rootless unpack: %v\n%s", err, o)
	}
	f := filepath.Join(bundle, "rootfs/home/web/f")
	var st unix.Stat_t
	if err := unix.Lstat(f, &st); err != nil || st.Uid != 65534 || st.Mode&0o7777 != 0o400 {
		t.Errorf("owner/mode of %s: %d %o %v", f, st.Uid, st.Mode&0o7777, err)
	}
	if err := unix.Lstat(filepath.Join(bundle, "rootfs/home/web"), &st); err != nil || st.Mode&0o7777 != 0o500 {
		t.Errorf("final directory mode %o %v", st.Mode&0o7777, err)
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(f, "user.rootlesscontainers", buf); err != nil || string(buf[:n]) != "\x08\xe8\x07\x10\xe8\x07" {
		t.Errorf("rootless ownership xattr: %x %v", buf[:n], err)
	}
	if _, err := os.Lstat(filepath.Join(bundle, "rootfs/dev/null")); !os.IsNotExist(err) {
		t.Errorf("device node created rootless: %v", err)
	}
	s := readSpec(t, bundle)
	userns := false
	for _, n := range s.Linux.Namespaces {
		userns = userns || n.Type == specs.UserNamespace
	}
	if !userns || len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0].HostID != 65534 {
		t.Errorf("config is not rootless: %+v", s.Linux)
	}
}

// TestUnpackIDMap: --uid-map/--gid-map shift ownership on disk and give
// config.json a user namespace with the same maps.
func TestUnpackIDMap(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	l := unpackWriteTar(t, filepath.Join(dir, "l.tar"),
		unpackEnt{name: "etc/", typ: tar.TypeDir},
		unpackEnt{name: "etc/passwd", typ: tar.TypeReg, body: "root:x:0:0::/root:/bin/sh\n"},
		unpackEnt{name: "srv/", typ: tar.TypeDir, uid: 1000, gid: 1001},
		unpackEnt{name: "srv/s", typ: tar.TypeReg, mode: 0o4750, uid: 1000, gid: 1001, body: "s"},
		unpackEnt{name: "implicit/parent/f", typ: tar.TypeReg, body: "f"})
	layout := filepath.Join(dir, "layout")
	unpackMakeImage(t, layout, "latest", "{}", l+":none")
	bundle := filepath.Join(dir, "b")
	if out, err := unpackRun(t, nil, "unpack", "--image", layout, "--uid-map", "0:100000:65536", "--gid-map", "0:200000:65536", bundle); err != nil {
		t.Fatalf("unpack: %v\n%s", err, out)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(bundle, "rootfs/srv/s"), &st); err != nil || st.Uid != 101000 || st.Gid != 201001 || st.Mode&0o7777 != 0o4750 {
		t.Errorf("mapped owner: %d:%d mode %o %v", st.Uid, st.Gid, st.Mode&0o7777, err)
	}
	for _, p := range []string{"", "etc", "implicit", "implicit/parent"} {
		if err := unix.Lstat(filepath.Join(bundle, "rootfs", p), &st); err != nil || st.Uid != 100000 || st.Gid != 200000 {
			t.Errorf("/%s: owner %d:%d, want the mapped root 100000:200000 (%v)", p, st.Uid, st.Gid, err)
		}
	}
	s := readSpec(t, bundle)
	if len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0].HostID != 100000 || len(s.Linux.GIDMappings) != 1 || s.Linux.GIDMappings[0].HostID != 200000 {
		t.Errorf("config maps: %+v %+v", s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	out, err := unpackRun(t, nil, "unpack", "--image", layout, "--uid-map", "0:100000:10", filepath.Join(dir, "b2"))
	if err == nil || !strings.Contains(out, "uid 1000 is not in the uid map") {
		t.Errorf("unmapped uid accepted: %v %s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(dir, "b2")); !os.IsNotExist(err) {
		t.Errorf("failed unpack left its bundle: %v", err)
	}
}
