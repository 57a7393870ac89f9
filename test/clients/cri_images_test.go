package clients

import (
	"archive/tar"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"berth/internal/testutil"
)

// The images critest pulls, built offline: the names are the paths critest
// asks for once -registry-prefix has replaced registry.k8s.io and gcr.io.
// Each is busybox-static with the users and groups of the busybox image
// (www-data is uid 33), plus what critest looks for; the programs critest
// expects (pause, a web server as nginx and httpd, a setuid nonewprivs) are
// testdata/criimage installed under those names.

// busyboxPasswd and busyboxGroup are the busybox image's account files.
const busyboxPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`

const busyboxGroup = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:8:
www-data:x:33:
operator:x:37:
staff:x:50:
users:x:100:
nobody:x:65534:
`

// criFile is one entry of an image layer: a regular file, or with link
// set a hard link to the layer path link.
type criFile struct {
	path    string
	mode    os.FileMode
	content []byte
	link    string
}

// layerOf tars files as one layer: parent directories first (0755), then
// the entries in order, every one owned by root.
func layerOf(t *testing.T, files ...criFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		var parents []string
		for d := filepath.Dir(f.path); d != "." && !dirs[d]; d = filepath.Dir(d) {
			parents = append([]string{d}, parents...)
			dirs[d] = true
		}
		for _, d := range parents {
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)}); err != nil {
				t.Fatal(err)
			}
		}
		h := &tar.Header{Name: f.path, Mode: int64(f.mode.Perm()), ModTime: time.Unix(0, 0)}
		if f.mode&os.ModeSetuid != 0 {
			h.Mode |= 0o4000
		}
		switch {
		case f.mode.IsDir():
			h.Name += "/"
			h.Typeflag = tar.TypeDir
		case f.link != "":
			h.Typeflag, h.Linkname = tar.TypeLink, f.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.content))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.content); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// criBase is the busybox image's layer: busybox-static with every applet as
// a hard link (as in the busybox image: masking one applet's path must not
// mask the others), its account files, and criimage as the applets Debian's
// busybox lacks and critest runs (pgrep, ipcs).
func criBase(t *testing.T, prog []byte) []byte {
	t.Helper()
	bb, err := os.ReadFile(testutil.BusyboxPath)
	if err != nil {
		requireTool(t, testutil.BusyboxPath)
	}
	list, err := exec.Command(testutil.BusyboxPath, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	files := []criFile{}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "root", "var/run", "var/www", "home", "usr/sbin", "etc"} {
		mode := os.ModeDir | 0o755
		if d == "tmp" {
			mode = os.ModeDir | 0o777 | os.ModeSticky
		}
		files = append(files, criFile{path: d, mode: mode})
	}
	files = append(files, criFile{path: "bin/busybox", mode: 0o755, content: bb})
	applets := map[string]bool{}
	for _, a := range strings.Fields(string(list)) {
		applets[a] = true
		if a != "busybox" {
			files = append(files, criFile{path: "bin/" + a, mode: 0o755, link: "bin/busybox"})
		}
	}
	files = append(files,
		criFile{path: "etc/passwd", mode: 0o644, content: []byte(busyboxPasswd)},
		criFile{path: "etc/group", mode: 0o644, content: []byte(busyboxGroup)},
		criFile{path: "usr/local/bin/criimage", mode: 0o755, content: prog})
	for _, a := range []string{"pgrep", "ipcs"} {
		if !applets[a] {
			files = append(files, criFile{path: "usr/bin/" + a, mode: 0o755, link: "usr/local/bin/criimage"})
		}
	}
	return layerOf(t, files...)
}

// criImages builds every image critest uses.
func criImages(t *testing.T) []archiveImage {
	t.Helper()
	prog := filepath.Join(t.TempDir(), "criimage")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-ldflags", "-s -w", "-o", prog, "./testdata/criimage")
	cmd.Dir = filepath.Dir(file)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building testdata/criimage: %v\n%s", err, b)
	}
	progBytes, err := os.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	base := criBase(t, progBytes)
	// The other images' programs: criimage under another name (a copy:
	// hard links between layers are best left out of images).
	named := func(path string, mode os.FileMode) []byte {
		return layerOf(t, criFile{path: path, mode: mode, content: progBytes})
	}
	path := "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	sh := map[string]any{"Env": []string{path}, "Cmd": []string{"sh"}}
	withUser := func(u string) map[string]any {
		return map[string]any{"Env": []string{path}, "Cmd": []string{"sh"}, "User": u}
	}
	marker := func(name string) []byte { return layerOf(t, criFile{path: name, mode: 0o644}) }
	const staging = "k8s-staging-cri-tools/"
	images := []archiveImage{
		{tags: []string{"pause:3.9"}, config: map[string]any{"Entrypoint": []string{"/pause"}},
			layers: [][]byte{layerOf(t, criFile{path: "pause", mode: 0o755, content: progBytes})}},
		{tags: []string{"e2e-test-images/busybox:1.29-2"}, config: sh, layers: [][]byte{base}},
		{tags: []string{"e2e-test-images/nginx:1.14-2"},
			config: map[string]any{"Env": []string{path}, "Cmd": []string{"nginx", "-g", "daemon off;"}, "ExposedPorts": map[string]any{"80/tcp": map[string]any{}}, "StopSignal": "SIGTERM"},
			layers: [][]byte{base, named("usr/sbin/nginx", 0o755)}},
		{tags: []string{staging + "hostnet-nginx-" + runtime.GOARCH + ":latest"},
			config: map[string]any{"Env": []string{path, "NGINX_PORT=12003"}, "Cmd": []string{"nginx", "-g", "daemon off;"}},
			layers: [][]byte{base, named("usr/sbin/nginx", 0o755)}},
		{tags: []string{"e2e-test-images/httpd:2.4.39-4"},
			config: map[string]any{"Env": []string{path}, "Cmd": []string{"/usr/local/apache2/bin/httpd"}, "ExposedPorts": map[string]any{"80/tcp": map[string]any{}}},
			layers: [][]byte{base, named("usr/local/apache2/bin/httpd", 0o755)}},
		{tags: []string{"e2e-test-images/nonewprivs:1.3"},
			config: map[string]any{"Env": []string{path}, "Entrypoint": []string{"/usr/local/bin/nonewprivs"}},
			layers: [][]byte{base, named("usr/local/bin/nonewprivs", 0o755|os.ModeSetuid)}},
		{tags: []string{staging + "test-image-user-uid:latest"}, config: withUser("1002"), layers: [][]byte{base}},
		{tags: []string{staging + "test-image-user-username:latest"}, config: withUser("www-data"), layers: [][]byte{base}},
		{tags: []string{staging + "test-image-user-uid-group:latest"}, config: withUser("1003:1004"), layers: [][]byte{base}},
		{tags: []string{staging + "test-image-user-username-group:latest"}, config: withUser("www-data:1004"), layers: [][]byte{base}},
		// adduser -u 1000 default-user; addgroup -g 50000
		// group-defined-in-image; addgroup default-user group-defined-in-image.
		{tags: []string{staging + "test-image-predefined-group:latest"}, config: withUser("1000"), layers: [][]byte{base, layerOf(t,
			criFile{path: "etc/passwd", mode: 0o644, content: []byte(busyboxPasswd + "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n")},
			criFile{path: "etc/group", mode: 0o644, content: []byte(busyboxGroup + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")},
			criFile{path: "home/default-user", mode: os.ModeDir | 0o755},
		)}},
		// The tag images: each tag's own file (ADD ${TEST} ${TEST}).
		{tags: []string{staging + "test-image-tags:1", staging + "test-image-tags:2", staging + "test-image-tags:3"}, config: sh, layers: [][]byte{base, marker("same-image")}},
		{tags: []string{staging + "test-image-tag:test"}, config: sh, layers: [][]byte{base, marker("test")}},
		{tags: []string{staging + "test-image-tag:all"}, config: sh, layers: [][]byte{base, marker("all")}},
	}
	// test-image-digest is pulled by a fixed digest of the upstream image,
	// which no offline build can reproduce: it is built under its name all
	// the same, and the spec pulling it by digest fails with both runtimes.
	for _, n := range []string{"test-image-1", "test-image-2", "test-image-3", "test-image-latest", "test-image-digest"} {
		images = append(images, archiveImage{tags: []string{staging + n + ":latest"}, config: sh, layers: [][]byte{base, marker(n)}})
	}
	return images
}

// pushCRIImages builds the images and pushes each tag to the registry in
// the suite's namespace with berth copy.
func pushCRIImages(t *testing.T, e *criEnv) {
	t.Helper()
	archive := filepath.Join(e.dir, "cri-images.tar")
	images := criImages(t)
	writeDockerArchive(t, archive, images)
	for _, img := range images {
		for _, tag := range img.tags {
			argv := e.inNetns(berthBin, "copy", "--quiet", "--dest-tls-verify=false", "docker-archive:"+archive+":"+tag, "docker://"+criRegistry+"/"+tag)
			if b, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, b)
			}
		}
	}
}
