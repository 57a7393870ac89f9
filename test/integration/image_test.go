package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// imgWorld is a registry holding test/app:v1 (pushed by skopeo in Docker
// schema2 format, so berth's copy to oci: must convert it).
type imgWorld struct {
	reg  *imgRegistry
	dir  string
	auth []string // --src-cert-dir/--src-creds for pulls
}

func imgSetup(t *testing.T) *imgWorld {
	t.Helper()
	imgNeed(t, "skopeo", "umoci")
	w := &imgWorld{reg: imgStartRegistry(t), dir: t.TempDir()}
	w.auth = []string{"--src-cert-dir", w.reg.caDir, "--src-creds", w.reg.creds()}
	src := filepath.Join(w.dir, "src")
	imgWriteLayout(t, src, "v1", "linux/"+runtime.GOARCH)
	imgRun(t, "skopeo", "copy", "-q", "--insecure-policy", "--format", "v2s2", "--dest-cert-dir", w.reg.caDir, "--dest-creds", w.reg.creds(),
		"oci:"+src+":v1", "docker://"+w.reg.host+"/test/app:v1")
	return w
}

func (w *imgWorld) img(repo string) string { return "docker://" + w.reg.host + "/" + repo }

func (w *imgWorld) copyArgs(extra ...string) []string {
	return append(append([]string{"copy"}, w.auth...), extra...)
}

// TestImageClassicCopy is skopeo's classic command with berth's name: the
// layout it writes is read by skopeo inspect and unpacked by umoci.
func TestImageClassicCopy(t *testing.T) {
	w := imgSetup(t)
	layout := filepath.Join(w.dir, "workspace", "images", "app")
	r := imgMust(t, nil, w.copyArgs(w.img("test/app:v1"), "oci:"+layout+":latest")...)
	if r.stdout != "" {
		t.Errorf("copy wrote to stdout (progress belongs on stderr): %q", r.stdout)
	}
	if !strings.Contains(r.stderr, "Copying blob sha256:") || !strings.Contains(r.stderr, "Writing manifest") {
		t.Errorf("no plain progress lines on a non-terminal stderr:\n%s", r.stderr)
	}
	ix := imgIndex(t, layout)
	if len(ix) != 1 || ix[0].MediaType != "application/vnd.oci.image.manifest.v1+json" || ix[0].Annotations["org.opencontainers.image.ref.name"] != "latest" {
		t.Fatalf("index.json: %+v", ix)
	}
	var m struct {
		Config struct{ MediaType string }
		Layers []struct{ MediaType string }
	}
	json.Unmarshal(imgBlob(t, layout, ix[0].Digest), &m)
	if m.Config.MediaType != "application/vnd.oci.image.config.v1+json" || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Fatalf("Docker media types not converted: %+v", m)
	}

	var info struct{ Architecture, Os string }
	if err := json.Unmarshal([]byte(imgRun(t, "skopeo", "inspect", "oci:"+layout+":latest")), &info); err != nil || info.Architecture != runtime.GOARCH {
		t.Fatalf("skopeo inspect of berth's layout: %+v %v", info, err)
	}
	bundle := filepath.Join(w.dir, "bundle")
	imgUmociUnpack(t, layout+":latest", bundle)
	if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "etc", "hello")); err != nil || string(b) != "hello from linux/"+runtime.GOARCH+"\n" {
		t.Fatalf("umoci unpack of berth's layout: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil {
		t.Fatal(err)
	}

	// A second copy under another tag fetches nothing and keeps "latest".
	r = imgMust(t, nil, w.copyArgs(w.img("test/app:v1"), "oci:"+layout+":v1")...)
	if !strings.Contains(r.stderr, "0 blobs fetched") || !strings.Contains(r.stderr, "2 already present") {
		t.Errorf("re-copy fetched blobs again:\n%s", r.stderr)
	}
	if ix := imgIndex(t, layout); len(ix) != 2 {
		t.Fatalf("second tag: index %+v", ix)
	}

	// --digestfile gets the digest of what was written (the converted
	// manifest), --src-tls-verify=false works without the CA.
	df := filepath.Join(w.dir, "digest")
	imgMust(t, nil, "copy", "-q", "--digestfile", df, "--src-tls-verify=false", "--src-creds", w.reg.creds(), w.img("test/app:v1"), "oci:"+layout+":v2")
	if b, _ := os.ReadFile(df); string(b) != imgIndex(t, layout)[0].Digest {
		t.Errorf("--digestfile holds %q, want %s", b, imgIndex(t, layout)[0].Digest)
	}

	// inspect: summary, raw manifest, config.
	reg := []string{"--cert-dir", w.reg.caDir, "--creds", w.reg.creds()}
	r = imgMust(t, nil, append(append([]string{"inspect"}, reg...), w.img("test/app:v1"))...)
	var sum struct {
		Name     string
		RepoTags []string
		Os       string
		Layers   []string
		Env      []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil || sum.Name != w.reg.host+"/test/app" || fmt.Sprint(sum.RepoTags) != "[v1]" || sum.Os != "linux" || len(sum.Layers) != 1 || fmt.Sprint(sum.Env) != "[PATH=/bin]" {
		t.Fatalf("inspect: %+v %v\n%s", sum, err, r.stdout)
	}
	r = imgMust(t, nil, append(append([]string{"inspect", "--raw"}, reg...), w.img("test/app:v1"))...)
	if !strings.Contains(r.stdout, "application/vnd.docker.distribution.manifest.v2+json") {
		t.Fatalf("inspect --raw is not the registry's Docker manifest: %s", r.stdout)
	}
	r = imgMust(t, nil, append(append([]string{"inspect", "--config"}, reg...), w.img("test/app:v1"))...)
	if !strings.Contains(r.stdout, `"diff_ids"`) {
		t.Fatalf("inspect --config: %s", r.stdout)
	}

	// pull: the short form into the store, tagged with the full reference.
	store := filepath.Join(w.dir, "store")
	r = imgMust(t, []string{"BERTH_STORE=" + store}, "pull", "-q", "--cert-dir", w.reg.caDir, "--creds", w.reg.creds(), w.reg.host+"/test/app:v1")
	want := "oci:" + store + ":" + w.reg.host + "/test/app:v1"
	if strings.TrimSpace(r.stdout) != want || r.stderr != "" {
		t.Fatalf("pull printed %q (stderr %q), want %q", r.stdout, r.stderr, want)
	}
	if ix := imgIndex(t, store); len(ix) != 1 || ix[0].Annotations["org.opencontainers.image.ref.name"] != w.reg.host+"/test/app:v1" {
		t.Fatalf("store index: %+v", ix)
	}
}

func TestImageAuth(t *testing.T) {
	w := imgSetup(t)
	ca := []string{"--src-cert-dir", w.reg.caDir}
	img := w.img("test/app:v1")
	// A clean environment: no credential files anywhere by default.
	home := filepath.Join(w.dir, "home")
	os.MkdirAll(home, 0o755)
	env := []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + filepath.Join(w.dir, "run"), "XDG_CONFIG_HOME=", "DOCKER_CONFIG=", "REGISTRY_AUTH_FILE="}

	dst := filepath.Join(w.dir, "out")
	r := imgBerth(t, env, "", append(append([]string{"copy", "-q"}, ca...), img, "oci:"+dst+":v1")...)
	if r.code == 0 || !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "no credentials found") {
		t.Fatalf("anonymous copy: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("failed copy left %s", dst)
	}
	r = imgBerth(t, env, "", append(append([]string{"copy", "-q", "--src-creds", w.reg.user + ":wrong"}, ca...), img, "oci:"+dst+":v1")...)
	if r.code == 0 || !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "rejected") {
		t.Fatalf("wrong password: exit %d\n%s", r.code, r.stderr)
	}

	// login writes ${XDG_RUNTIME_DIR}/containers/auth.json; copy finds it.
	r = imgBerth(t, env, "wrong\n", "login", "--cert-dir", w.reg.caDir, "-u", w.reg.user, "--password-stdin", w.reg.host)
	if r.code == 0 {
		t.Fatalf("login with a wrong password succeeded: %s", r.stdout)
	}
	authFile := filepath.Join(w.dir, "run", "containers", "auth.json")
	if _, err := os.Stat(authFile); !os.IsNotExist(err) {
		t.Fatalf("failed login wrote %s", authFile)
	}
	r = imgBerth(t, env, w.reg.pass+"\n", "login", "--cert-dir", w.reg.caDir, "-u", w.reg.user, "--password-stdin", w.reg.host)
	if r.code != 0 || !strings.Contains(r.stdout, "Login Succeeded") {
		t.Fatalf("login: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if fi, err := os.Stat(authFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("auth file: %v %v", fi, err)
	}
	if r := imgMust(t, env, "login", "--get-login", w.reg.host); strings.TrimSpace(r.stdout) != w.reg.user {
		t.Fatalf("--get-login = %q", r.stdout)
	}
	imgMust(t, env, append(append([]string{"copy", "-q"}, ca...), img, "oci:"+dst+":v1")...)

	// --authfile and REGISTRY_AUTH_FILE name another file (skopeo reads
	// the same format).
	other := filepath.Join(w.dir, "other-auth.json")
	b, _ := os.ReadFile(authFile)
	os.WriteFile(other, b, 0o600)
	imgMust(t, env, "logout", w.reg.host)
	if r := imgBerth(t, env, "", append(append([]string{"copy", "-q"}, ca...), img, "oci:"+dst+":v2")...); r.code == 0 {
		t.Fatal("copy still authenticated after logout")
	}
	imgMust(t, env, append(append([]string{"copy", "-q", "--authfile", other}, ca...), img, "oci:"+dst+":v3")...)
	imgMust(t, append(env, "REGISTRY_AUTH_FILE="+other), append(append([]string{"copy", "-q"}, ca...), img, "oci:"+dst+":v4")...)
	skopeoOut := imgRun(t, "skopeo", "inspect", "--authfile", other, "--cert-dir", w.reg.caDir, img)
	if !strings.Contains(skopeoOut, "Architecture") {
		t.Fatalf("skopeo cannot use berth's auth file: %s", skopeoOut)
	}

	// Docker's config.json with a credential helper.
	bin := filepath.Join(w.dir, "bin")
	os.MkdirAll(bin, 0o755)
	helper := fmt.Sprintf("#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = %q ] || { echo 'credentials not found in native keychain'; exit 1; }\n"+
		"echo '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}'\n", w.reg.host, w.reg.host, w.reg.user, w.reg.pass)
	os.WriteFile(filepath.Join(bin, "docker-credential-berthtest"), []byte(helper), 0o755)
	dockerDir := filepath.Join(w.dir, "docker")
	os.MkdirAll(dockerDir, 0o755)
	os.WriteFile(filepath.Join(dockerDir, "config.json"), []byte(`{"credHelpers":{"`+w.reg.host+`":"berthtest"}}`), 0o644)
	helperEnv := append(env, "DOCKER_CONFIG="+dockerDir, "PATH="+bin+":"+os.Getenv("PATH"))
	imgMust(t, helperEnv, append(append([]string{"copy", "-q"}, ca...), img, "oci:"+dst+":v5")...)
	// And as the file's credsStore.
	os.WriteFile(filepath.Join(dockerDir, "config.json"), []byte(`{"credsStore":"berthtest"}`), 0o644)
	imgMust(t, helperEnv, append(append([]string{"copy", "-q"}, ca...), img, "oci:"+dst+":v6")...)
	if n := len(imgIndex(t, dst)); n != 5 {
		t.Fatalf("%d tags after the successful copies, want 5", n)
	}
}

// TestImageInterop: skopeo-written layouts and archives are read by berth,
// berth's pushes and archives are read by skopeo.
func TestImageInterop(t *testing.T) {
	w := imgSetup(t)
	sk := []string{"--insecure-policy", "--src-cert-dir", w.reg.caDir, "--src-creds", w.reg.creds()}
	skLayout := filepath.Join(w.dir, "skopeo-layout")
	imgRun(t, "skopeo", append(append([]string{"copy", "-q"}, sk...), w.img("test/app:v1"), "oci:"+skLayout+":v1")...)
	berthLayout := filepath.Join(w.dir, "berth-layout")
	imgMust(t, nil, w.copyArgs(w.img("test/app:v1"), "oci:"+berthLayout+":v1")...)
	// Both convert the Docker manifest to OCI with the same layers.
	// skopeo also re-serialises the config (dropping Docker-only fields,
	// so the image ID changes); berth keeps the config blob byte for byte,
	// as the media type conversion does not need to touch it. Compare the
	// configs as JSON values.
	var sm, bm struct {
		Config imgDesc
		Layers []imgDesc
	}
	json.Unmarshal(imgBlob(t, skLayout, imgIndex(t, skLayout)[0].Digest), &sm)
	json.Unmarshal(imgBlob(t, berthLayout, imgIndex(t, berthLayout)[0].Digest), &bm)
	if fmt.Sprint(sm.Layers) != fmt.Sprint(bm.Layers) || sm.Config.MediaType != bm.Config.MediaType {
		t.Errorf("skopeo and berth converted the same image differently:\nskopeo %+v\nberth  %+v", sm, bm)
	}
	var sc, bc any
	json.Unmarshal(imgBlob(t, skLayout, sm.Config.Digest), &sc)
	json.Unmarshal(imgBlob(t, berthLayout, bm.Config.Digest), &bc)
	if fmt.Sprint(sc) != fmt.Sprint(bc) {
		t.Errorf("configs differ:\nskopeo %v\nberth  %v", sc, bc)
	}

	r := imgMust(t, nil, "inspect", "oci:"+skLayout+":v1")
	var info struct {
		Digest string
		Layers []string
		Env    []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || len(info.Layers) != 1 || info.Digest != imgIndex(t, skLayout)[0].Digest {
		t.Fatalf("berth inspect of skopeo's layout: %s %v", r.stdout, err)
	}
	imgMust(t, nil, "copy", "-q", "oci:"+skLayout+":v1", "oci:"+filepath.Join(w.dir, "copied")+":v1")
	// berth adds a tag to skopeo's layout; skopeo still reads both.
	imgMust(t, nil, w.copyArgs("-q", w.img("test/app:v1"), "oci:"+skLayout+":berth")...)
	for _, tag := range []string{"v1", "berth"} {
		imgRun(t, "skopeo", "inspect", "oci:"+skLayout+":"+tag)
	}

	// Push what skopeo wrote, then let skopeo read the pushed image.
	push := []string{"copy", "-q", "--dest-cert-dir", w.reg.caDir, "--dest-creds", w.reg.creds()}
	imgMust(t, nil, append(push, "oci:"+skLayout+":v1", w.img("test/pushed:v2"))...)
	out := imgRun(t, "skopeo", "inspect", "--cert-dir", w.reg.caDir, "--creds", w.reg.creds(), w.img("test/pushed:v2"))
	if !strings.Contains(out, info.Layers[0]) {
		t.Fatalf("skopeo inspect of berth's push lacks the layer: %s", out)
	}
	r = imgMust(t, nil, "list-tags", "--cert-dir", w.reg.caDir, "--creds", w.reg.creds(), w.img("test/pushed"))
	if !strings.Contains(r.stdout, `"v2"`) || !strings.Contains(r.stdout, `"Repository": "`+w.reg.host+`/test/pushed"`) {
		t.Fatalf("list-tags: %s", r.stdout)
	}

	// Registry to registry on one host: blobs are mounted, not moved.
	r = imgMust(t, nil, append(append(w.copyArgs(), "--dest-cert-dir", w.reg.caDir, "--dest-creds", w.reg.creds()), w.img("test/app:v1"), w.img("test/mounted:v1"))...)
	if !strings.Contains(r.stderr, "0 blobs fetched") || !strings.Contains(r.stderr, "2 already present") {
		t.Errorf("same-registry copy transferred blobs instead of mounting them:\n%s", r.stderr)
	}
	imgMust(t, nil, w.copyArgs("-q", w.img("test/mounted:v1"), "oci:"+filepath.Join(w.dir, "mounted")+":v1")...)

	// Archives both ways.
	skArchive := filepath.Join(w.dir, "skopeo.tar")
	imgRun(t, "skopeo", "copy", "-q", "--insecure-policy", "oci:"+skLayout+":v1", "oci-archive:"+skArchive+":v1")
	imgMust(t, nil, "copy", "-q", "oci-archive:"+skArchive+":v1", "oci:"+filepath.Join(w.dir, "from-archive")+":v1")
	dockerArchive := filepath.Join(w.dir, "docker.tar")
	imgMust(t, nil, "copy", "-q", "oci:"+berthLayout+":v1", "docker-archive:"+dockerArchive+":example/app:v1")
	out = imgRun(t, "skopeo", "inspect", "docker-archive:"+dockerArchive)
	if !strings.Contains(out, `"Architecture": "`+runtime.GOARCH+`"`) {
		t.Fatalf("skopeo inspect of berth's docker-archive: %s", out)
	}
	skDocker := filepath.Join(w.dir, "skopeo-docker.tar")
	imgRun(t, "skopeo", "copy", "-q", "--insecure-policy", "oci:"+skLayout+":v1", "docker-archive:"+skDocker+":example/sk:v1")
	imgMust(t, nil, "copy", "-q", "docker-archive:"+skDocker, "oci:"+filepath.Join(w.dir, "from-docker")+":v1")
	// dir: both ways.
	skDir := filepath.Join(w.dir, "skopeo-dir")
	imgRun(t, "skopeo", "copy", "-q", "--insecure-policy", "oci:"+skLayout+":v1", "dir:"+skDir)
	imgMust(t, nil, "copy", "-q", "dir:"+skDir, "oci:"+filepath.Join(w.dir, "from-dir")+":v1")
	berthDir := filepath.Join(w.dir, "berth-dir")
	imgMust(t, nil, "copy", "-q", "oci:"+berthLayout+":v1", "dir:"+berthDir)
	if out := imgRun(t, "skopeo", "inspect", "dir:"+berthDir); !strings.Contains(out, info.Layers[0]) {
		t.Fatalf("skopeo inspect of berth's dir: %s", out)
	}

	bundle := filepath.Join(w.dir, "bundle")
	imgUmociUnpack(t, filepath.Join(w.dir, "from-docker")+":v1", bundle)
	if b, _ := os.ReadFile(filepath.Join(bundle, "rootfs", "platform")); string(b) != "linux/"+runtime.GOARCH+"\n" {
		t.Fatalf("image from skopeo's docker-archive unpacks to %q", b)
	}
}

func TestImageMultiArch(t *testing.T) {
	w := imgSetup(t)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	src := filepath.Join(w.dir, "multi-src")
	imgWriteLayout(t, src, "v1", "linux/"+other, "linux/"+runtime.GOARCH, "linux/s390x")
	imgMust(t, nil, "copy", "-q", "--all", "--dest-cert-dir", w.reg.caDir, "--dest-creds", w.reg.creds(), "oci:"+src+":v1", w.img("test/multi:v1"))

	arch := func(layout, tag string) string {
		t.Helper()
		var top imgDesc
		for _, d := range imgIndex(t, layout) {
			if d.Annotations["org.opencontainers.image.ref.name"] == tag {
				top = d
			}
		}
		if top.MediaType != "application/vnd.oci.image.manifest.v1+json" {
			t.Fatalf("tag %s is a %s, want one image manifest", tag, top.MediaType)
		}
		var m struct{ Config imgDesc }
		json.Unmarshal(imgBlob(t, layout, top.Digest), &m)
		var cfg struct{ Architecture string }
		json.Unmarshal(imgBlob(t, layout, m.Config.Digest), &cfg)
		return cfg.Architecture
	}
	dst := filepath.Join(w.dir, "multi")
	imgMust(t, nil, w.copyArgs("-q", w.img("test/multi:v1"), "oci:"+dst+":host")...)
	if a := arch(dst, "host"); a != runtime.GOARCH {
		t.Fatalf("default copy picked %s, want the host's %s", a, runtime.GOARCH)
	}
	imgMust(t, nil, w.copyArgs("-q", "--override-arch", other, w.img("test/multi:v1"), "oci:"+dst+":other")...)
	if a := arch(dst, "other"); a != other {
		t.Fatalf("--override-arch %s picked %s", other, a)
	}
	before := imgTree(t, dst)
	r := imgBerth(t, nil, "", w.copyArgs("-q", "--override-arch", "riscv64", w.img("test/multi:v1"), "oci:"+dst+":riscv")...)
	if r.code == 0 || !strings.Contains(r.stderr, "no image for platform linux/riscv64") || !strings.Contains(r.stderr, "linux/s390x") {
		t.Fatalf("missing platform: exit %d\n%s", r.code, r.stderr)
	}
	if imgTree(t, dst) != before {
		t.Fatal("a failed copy changed the layout")
	}

	imgMust(t, nil, w.copyArgs("-q", "--all", w.img("test/multi:v1"), "oci:"+dst+":all")...)
	var top imgDesc
	for _, d := range imgIndex(t, dst) {
		if d.Annotations["org.opencontainers.image.ref.name"] == "all" {
			top = d
		}
	}
	var ix struct{ Manifests []imgDesc }
	json.Unmarshal(imgBlob(t, dst, top.Digest), &ix)
	if top.MediaType != "application/vnd.oci.image.index.v1+json" || len(ix.Manifests) != 3 {
		t.Fatalf("--all wrote %s with %d manifests", top.MediaType, len(ix.Manifests))
	}
	for _, m := range ix.Manifests {
		var man struct{ Layers []imgDesc }
		json.Unmarshal(imgBlob(t, dst, m.Digest), &man)
		imgBlob(t, dst, man.Layers[0].Digest)
	}
	if out := imgRun(t, "skopeo", "inspect", "--raw", "oci:"+dst+":all"); !strings.Contains(out, "s390x") {
		t.Fatalf("skopeo reads berth's index: %s", out)
	}
}

func TestImageBadInput(t *testing.T) {
	w := imgSetup(t)
	dst := filepath.Join(w.dir, "out")
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"missing image", w.copyArgs(w.img("test/nope:v1"), "oci:"+dst+":x"), 2, "404"},
		{"missing tag", w.copyArgs(w.img("test/app:v9"), "oci:"+dst+":x"), 2, "MANIFEST_UNKNOWN"},
		{"unknown CA", []string{"copy", "--src-creds", w.reg.creds(), w.img("test/app:v1"), "oci:" + dst + ":x"}, 1, "certificate"},
		{"no transport", []string{"copy", "alpine", "oci:" + dst}, 1, "no transport"},
		{"bad name", []string{"copy", "docker://Alpine", "oci:" + dst}, 1, "lowercase"},
		{"one argument", []string{"copy", "oci:" + dst}, 1, "expects 2 arguments"},
		{"missing layout", []string{"copy", "oci:" + filepath.Join(w.dir, "none") + ":v1", "oci:" + dst}, 2, "no such file"},
		{"bad retry", w.copyArgs("--retry-times", "-1", w.img("test/app:v1"), "oci:"+dst+":x"), 1, "retry-times"},
		{"list-tags with tag", []string{"list-tags", w.img("test/app:v1")}, 1, "just the repository"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := imgBerth(t, nil, "", tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.msg) {
				t.Fatalf("exit %d (want %d), stderr:\n%s\nwant it to mention %q", r.code, tt.code, r.stderr, tt.msg)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Fatalf("failed copy created %s", dst)
			}
		})
	}
	foreign := filepath.Join(w.dir, "foreign")
	os.MkdirAll(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "notes"), []byte("mine"), 0o644)
	r := imgBerth(t, nil, "", w.copyArgs(w.img("test/app:v1"), "oci:"+foreign+":v1")...)
	if r.code == 0 || !strings.Contains(r.stderr, "refusing") {
		t.Fatalf("copy into a non-layout directory: exit %d\n%s", r.code, r.stderr)
	}
}

// TestImageConcurrentCopies runs copies into one layout at once; every tag
// must survive (skopeo#1018 loses some).
func TestImageConcurrentCopies(t *testing.T) {
	w := imgSetup(t)
	dst := filepath.Join(w.dir, "shared")
	var wg sync.WaitGroup
	errs := make([]string, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := imgBerth(t, nil, "", w.copyArgs("-q", w.img("test/app:v1"), fmt.Sprintf("oci:%s:t%d", dst, i))...)
			if r.code != 0 {
				errs[i] = r.stderr
			}
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Errorf("copy %d: %s", i, e)
		}
	}
	if ix := imgIndex(t, dst); len(ix) != len(errs) {
		t.Fatalf("%d tags after %d concurrent copies: %+v", len(ix), len(errs), ix)
	}
	ents, _ := os.ReadDir(dst)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".berth-staging") {
			t.Errorf("staging directory %s left behind", e.Name())
		}
	}
}
