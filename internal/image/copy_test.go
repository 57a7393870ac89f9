package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth/internal/image/layout"
	"berth/internal/image/manifest"
	"berth/internal/image/ref"
	"berth/internal/image/registry"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	ggcrlayout "github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fault lets a test break the registry: it sees every request first and
// may answer it itself.
type fault func(w http.ResponseWriter, r *http.Request) bool

type testRegistry struct {
	*httptest.Server
	host  string
	mu    sync.Mutex
	fault fault
	reqs  []string
}

func newRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	tr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		f := tr.fault
		tr.reqs = append(tr.reqs, r.Method+" "+r.URL.Path+" "+r.Header.Get("Range"))
		tr.mu.Unlock()
		if f != nil && f(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.Close)
	tr.host = strings.TrimPrefix(tr.URL, "http://")
	return tr
}

func (tr *testRegistry) setFault(f fault) {
	tr.mu.Lock()
	tr.fault = f
	tr.mu.Unlock()
}

func (tr *testRegistry) requests() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.reqs...)
}

func (tr *testRegistry) ref(t *testing.T, repo string) ref.Ref {
	t.Helper()
	r, err := ref.Parse("docker://" + tr.host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (tr *testRegistry) push(t *testing.T, repo string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(tr.host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

func (tr *testRegistry) pushIndex(t *testing.T, repo string, ix v1.ImageIndex) {
	t.Helper()
	r, _ := name.ParseReference(tr.host+"/"+repo, name.Insecure)
	if err := remote.WriteIndex(r, ix); err != nil {
		t.Fatal(err)
	}
}

func testOpts() Options {
	o := Options{Platform: manifest.Platform{OS: "linux", Architecture: "amd64"}}
	o.Src.Insecure, o.Dest.Insecure = true, true
	o.Src.RetryDelay, o.Dest.RetryDelay = time.Millisecond, time.Millisecond
	o.NoSync = true
	return o
}

func randomImage(t *testing.T, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(2048, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func ociRef(t *testing.T, dir, tag string) ref.Ref {
	t.Helper()
	r, err := ref.Parse("oci:" + dir + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// snapshot maps every path under dir to its content (or mode for dirs),
// ignoring berth's lock file, which a reader may create.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			out = append(out, rel+"="+string(digest.FromBytes(b)))
		} else {
			out = append(out, rel+"/")
		}
		return nil
	})
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func TestCopyRegistryToLayoutConvertsToOCI(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 3)
	reg.push(t, "app:v1", img)
	dir := filepath.Join(t.TempDir(), "layout")

	res, err := Copy(context.Background(), reg.ref(t, "app:v1"), ociRef(t, dir, "v1"), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched != 4 || res.Skipped != 0 || res.MediaType != manifest.OCIManifest {
		t.Fatalf("result %+v", res)
	}
	srcDigest, _ := img.Digest()
	if res.SourceDigest.String() != srcDigest.String() || res.Digest == res.SourceDigest {
		t.Fatalf("digests: source %s (want %s), written %s: a Docker manifest must be rewritten", res.SourceDigest, srcDigest, res.Digest)
	}
	// go-containerregistry's layout package (what unpack uses) reads it.
	p, err := ggcrlayout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ix, _ := p.ImageIndex()
	im, _ := ix.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations[ocispec.AnnotationRefName] != "v1" {
		t.Fatalf("index.json: %+v", im)
	}
	got, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := got.MediaType()
	if mt != types.OCIManifestSchema1 {
		t.Fatalf("manifest media type %s", mt)
	}
	layers, _ := got.Layers()
	wantLayers, _ := img.Layers()
	for i, l := range layers {
		lmt, _ := l.MediaType()
		d, _ := l.Digest()
		wd, _ := wantLayers[i].Digest()
		if lmt != types.OCILayer || d != wd {
			t.Fatalf("layer %d: %s %s, want %s %s", i, lmt, d, types.OCILayer, wd)
		}
		rc, _ := l.Compressed()
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("layer %d does not verify: %v", i, err)
		}
	}

	// A second copy fetches nothing (blobs present) and a second tag keeps
	// the first.
	res, err = Copy(context.Background(), reg.ref(t, "app:v1"), ociRef(t, dir, "v2"), testOpts())
	if err != nil || res.Fetched != 0 || res.Skipped != 4 {
		t.Fatalf("re-copy: %+v, %v", res, err)
	}
	l, _ := layout.Open(dir)
	lix, _ := l.Index()
	if tags := layout.Tags(lix); fmt.Sprint(tags) != "[v1 v2]" {
		t.Fatalf("tags %v", tags)
	}
}

func multiArch(t *testing.T) (v1.ImageIndex, map[string]v1.Image) {
	t.Helper()
	imgs := map[string]v1.Image{}
	ix := v1.ImageIndex(empty.Index)
	ix = mutate.IndexMediaType(ix, types.DockerManifestList)
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}, {OS: "unknown", Architecture: "unknown"}} {
		img := randomImage(t, 1)
		imgs[p.Architecture] = img
		ix = mutate.AppendManifests(ix, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return ix, imgs
}

func TestCopyMultiArch(t *testing.T) {
	reg := newRegistry(t)
	ix, imgs := multiArch(t)
	reg.pushIndex(t, "multi:1", ix)
	dir := t.TempDir()

	opts := testOpts()
	opts.Platform = manifest.Platform{OS: "linux", Architecture: "arm64"}
	res, err := Copy(context.Background(), reg.ref(t, "multi:1"), ociRef(t, dir, "arm"), opts)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := imgs["arm64"].Digest()
	if res.SourceDigest.String() != want.String() || res.MediaType != manifest.OCIManifest {
		t.Fatalf("arm64 copy picked %s (%s), want %s", res.SourceDigest, res.MediaType, want)
	}

	opts.All = true
	res, err = Copy(context.Background(), reg.ref(t, "multi:1"), ociRef(t, dir, "all"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.MediaType != manifest.OCIIndex || len(res.Platforms) != 3 {
		t.Fatalf("--all: %+v", res)
	}
	l, _ := layout.Open(dir)
	d, _ := l.Resolve("all")
	raw, err := l.ReadBlob(d, manifest.MaxSize)
	if err != nil {
		t.Fatal(err)
	}
	p, err := manifest.Parse(raw, d.MediaType)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Index.Manifests {
		if c.MediaType != manifest.OCIManifest {
			t.Errorf("child %s kept media type %s", c.Digest, c.MediaType)
		}
		b, err := l.ReadBlob(c, manifest.MaxSize)
		if err != nil {
			t.Fatalf("child %s: %v", c.Digest, err)
		}
		if cp, err := manifest.Parse(b, c.MediaType); err != nil || cp.MediaType != manifest.OCIManifest {
			t.Fatalf("child %s: %v", c.Digest, err)
		}
	}

	// Registry to registry keeps the Docker list byte for byte.
	res, err = Copy(context.Background(), reg.ref(t, "multi:1"), reg.ref(t, "mirror:1"), opts)
	if err != nil {
		t.Fatal(err)
	}
	ixDigest, _ := ix.Digest()
	if res.Digest.String() != ixDigest.String() || res.MediaType != manifest.DockerList {
		t.Fatalf("registry copy wrote %s (%s), want the source list %s", res.Digest, res.MediaType, ixDigest)
	}
	if res, err = Copy(context.Background(), reg.ref(t, "mirror:1"), ociRef(t, t.TempDir(), "m"), opts); err != nil || res.MediaType != manifest.OCIIndex {
		t.Fatalf("copy of the mirror: %+v %v", res, err)
	}

	opts.All = false
	opts.Platform = manifest.Platform{OS: "linux", Architecture: "riscv64"}
	before := snapshot(t, dir)
	_, err = Copy(context.Background(), reg.ref(t, "multi:1"), ociRef(t, dir, "riscv"), opts)
	if !errors.Is(err, manifest.ErrNoPlatform) || !strings.Contains(err.Error(), "linux/amd64, linux/arm64/v8") {
		t.Fatalf("missing platform: %v", err)
	}
	if snapshot(t, dir) != before {
		t.Fatal("failed copy changed the layout")
	}
}

func TestCopyBadRegistryAnswers(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 2)
	reg.push(t, "app:v1", img)
	layers, _ := img.Layers()
	layerDigest, _ := layers[1].Digest()
	blobPath := "/v2/app/blobs/" + layerDigest.String()

	status := func(code int, onlyBlob bool) fault {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path == "/v2/" || (onlyBlob && r.URL.Path != blobPath) {
				return false
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"errors":[{"code":"TEST","message":"status %d"}]}`, code)
			return true
		}
	}
	serveBlob := func(body func(real []byte) []byte) fault {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != blobPath || r.Method != http.MethodGet {
				return false
			}
			rc, _ := layers[1].Compressed()
			real, _ := io.ReadAll(rc)
			w.Write(body(real))
			return true
		}
	}
	manifestBody := func(body string) fault {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				return false
			}
			// A generic type, so the body's own mediaType decides.
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, body)
			return true
		}
	}
	tests := []struct {
		name  string
		fault fault
		want  string
		is    error
	}{
		{"401", status(401, false), "401 Unauthorized", nil},
		{"403", status(403, false), "403 Forbidden", nil},
		{"404", status(404, false), "404 Not Found", ErrNotFound},
		{"429", status(429, false), "rate limited", nil},
		{"500 on a blob", status(500, true), "500 Internal Server Error", nil},
		{"wrong digest", serveBlob(func(b []byte) []byte { b[0] ^= 0xff; return b }), "digest is", layout.ErrVerify},
		{"truncated blob", serveBlob(func(b []byte) []byte { return b[:len(b)/2] }), "bytes", nil},
		{"oversized blob", serveBlob(func(b []byte) []byte { return append(b, 'x') }), "more than the expected", layout.ErrVerify},
		{"malformed manifest", manifestBody(`{"schemaVersion":2,`), "malformed manifest", nil},
		{"oversized manifest", manifestBody(`{"x":"` + strings.Repeat("a", manifest.MaxSize) + `"}`), "byte limit", nil},
		{"unknown media type", manifestBody(`{"schemaVersion":2,"mediaType":"application/x-unknown"}`), "unknown manifest media type", manifest.ErrUnsupported},
		{"unknown layer type", manifestBody(`{"schemaVersion":2,"mediaType":"` + manifest.DockerManifest + `","config":{"mediaType":"` + manifest.DockerConfig + `","size":2,"digest":"` + digest.FromString("{}").String() + `"},"layers":[{"mediaType":"application/x-rar","size":1,"digest":"` + digest.FromString("x").String() + `"}]}`), "unknown media type", manifest.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			// A layout that already holds another image must come out
			// unchanged.
			if _, err := Copy(context.Background(), reg.ref(t, "app:v1"), ociRef(t, dir, "old"), testOpts()); err != nil {
				t.Fatal(err)
			}
			os.RemoveAll(filepath.Join(dir, "blobs", "sha256", layerDigest.Hex))
			before := snapshot(t, dir)
			reg.setFault(tt.fault)
			defer reg.setFault(nil)
			_, err := Copy(context.Background(), reg.ref(t, "app:v1"), ociRef(t, dir, "new"), testOpts())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want errors.Is %v", err, tt.is)
			}
			if after := snapshot(t, dir); after != before {
				t.Fatalf("failed copy changed the layout:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			// Into a fresh path, a failed copy leaves nothing at all.
			fresh := filepath.Join(t.TempDir(), "fresh")
			if _, err := Copy(context.Background(), reg.ref(t, "app:v1"), ociRef(t, fresh, "x"), testOpts()); err == nil {
				t.Fatal("copy into a fresh layout succeeded")
			}
			if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("failed copy left %s behind", fresh)
			}
		})
	}
}

func TestCopyRetriesAndResumes(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 1)
	reg.push(t, "app:v1", img)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	var fails atomic.Int32
	// Two 503s with Retry-After on the manifest, then the first blob GET
	// dies halfway through (the server promised the full length).
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.Contains(r.URL.Path, "/manifests/") && fails.Load() < 2:
			fails.Add(1)
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(503)
			return true
		case r.URL.Path == "/v2/app/blobs/"+ld.String() && r.Header.Get("Range") == "":
			rc, _ := layers[0].Compressed()
			b, _ := io.ReadAll(rc)
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			if hj, ok := w.(http.Hijacker); ok {
				conn, _, _ := hj.Hijack()
				conn.Close()
			}
			return true
		}
		return false
	})
	opts := testOpts()
	opts.Src.Retries = 3
	dir := t.TempDir()
	if _, err := Copy(context.Background(), reg.ref(t, "app:v1"), ociRef(t, dir, "v1"), opts); err != nil {
		t.Fatal(err)
	}
	ranged := false
	for _, r := range reg.requests() {
		if strings.HasPrefix(r, "GET /v2/app/blobs/"+ld.String()+" bytes=") {
			ranged = true
		}
	}
	if !ranged {
		t.Fatalf("interrupted blob was not resumed with a Range request: %v", reg.requests())
	}
	if fails.Load() != 2 {
		t.Fatalf("manifest fetched after %d failures", fails.Load())
	}
	// Without retries the same 503 is an error.
	fails.Store(0)
	opts.Src.Retries = 0
	if _, err := Copy(context.Background(), reg.ref(t, "app:v1"), ociRef(t, t.TempDir(), "v1"), opts); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("no retries: %v", err)
	}
}

func TestRoundTripTransports(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 2)
	reg.push(t, "app:v1", img)
	tmp := t.TempDir()
	ctx := context.Background()
	opts := testOpts()
	steps := []struct{ src, dst string }{
		{"docker://" + reg.host + "/app:v1", "oci:" + tmp + "/l1:v1"},
		{"oci:" + tmp + "/l1:v1", "oci-archive:" + tmp + "/a.tar:v1"},
		{"oci-archive:" + tmp + "/a.tar:v1", "dir:" + tmp + "/d"},
		{"dir:" + tmp + "/d", "docker-archive:" + tmp + "/da.tar:example/app:v1"},
		{"docker-archive:" + tmp + "/da.tar", "docker://" + reg.host + "/copied:v2"},
		{"docker://" + reg.host + "/copied:v2", "oci:" + tmp + "/l2:v2"},
	}
	for _, s := range steps {
		src, err := ref.Parse(s.src)
		if err != nil {
			t.Fatal(err)
		}
		dst, err := ref.Parse(s.dst)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Copy(ctx, src, dst, opts); err != nil {
			t.Fatalf("%s -> %s: %v", s.src, s.dst, err)
		}
	}
	// The layers survive the trip (docker-archive stores them
	// uncompressed, so compare DiffIDs via the config).
	c1, err := Config(ctx, ociRef(t, tmp+"/l1", "v1"), opts)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Config(ctx, ociRef(t, tmp+"/l2", "v2"), opts)
	if err != nil {
		t.Fatal(err)
	}
	var a, b ocispec.Image
	json.Unmarshal(c1, &a)
	json.Unmarshal(c2, &b)
	if fmt.Sprint(a.RootFS.DiffIDs) != fmt.Sprint(b.RootFS.DiffIDs) || len(a.RootFS.DiffIDs) != 2 {
		t.Fatalf("diff ids changed: %v vs %v", a.RootFS.DiffIDs, b.RootFS.DiffIDs)
	}
	tags, err := ListTags(ctx, ref.Ref{Transport: ref.DockerArchive, Path: tmp + "/da.tar", Index: -1}, registry.Options{})
	if err != nil || fmt.Sprint(tags) != "[docker.io/example/app:v1]" {
		t.Fatalf("docker-archive tags %v, %v", tags, err)
	}
	info, err := Inspect(ctx, reg.ref(t, "app:v1"), opts, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Layers) != 2 || fmt.Sprint(info.RepoTags) != "[v1]" || info.Name != reg.host+"/app" {
		t.Fatalf("inspect: %+v", info)
	}
}

// TestCopyTokenAuth puts a Bearer token server in front of the registry:
// the copy must find credentials in an auth.json, trade them for a token
// with the repository's pull scope, and fail clearly with wrong ones.
func TestCopyTokenAuth(t *testing.T) {
	reg := newRegistry(t)
	reg.push(t, "private/app:v1", randomImage(t, 1))
	var scopes []string
	var mu sync.Mutex
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/token" {
			u, p, ok := r.BasicAuth()
			if !ok || u != "alice" || p != "secret" {
				w.WriteHeader(http.StatusUnauthorized)
				return true
			}
			mu.Lock()
			scopes = append(scopes, r.URL.Query().Get("scope"))
			mu.Unlock()
			fmt.Fprint(w, `{"token":"tok-123","expires_in":300}`)
			return true
		}
		if r.Header.Get("Authorization") != "Bearer tok-123" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host))
			w.WriteHeader(http.StatusUnauthorized)
			return true
		}
		return false
	})
	authFile := filepath.Join(t.TempDir(), "auth.json")
	write := func(user, pass string) {
		b, _ := json.Marshal(map[string]any{"auths": map[string]any{reg.host: map[string]string{"auth": b64(user + ":" + pass)}}})
		os.WriteFile(authFile, b, 0o600)
	}
	opts := testOpts()
	opts.Src.AuthFile = authFile

	write("alice", "secret")
	if _, err := Copy(context.Background(), reg.ref(t, "private/app:v1"), ociRef(t, t.TempDir(), "v1"), opts); err != nil {
		t.Fatal(err)
	}
	if len(scopes) == 0 || scopes[0] != "repository:private/app:pull" {
		t.Fatalf("token scopes %v", scopes)
	}
	// login: the token exchange alone checks the password, with no scope.
	mu.Lock()
	scopes = nil
	mu.Unlock()
	good := registry.Options{Creds: &registry.Credentials{Username: "alice", Password: "secret"}, Insecure: true}
	if err := registry.CheckLogin(context.Background(), reg.host, good); err != nil {
		t.Fatalf("login: %v", err)
	}
	if len(scopes) != 1 || scopes[0] != "" {
		t.Fatalf("login asked for scopes %q", scopes)
	}
	bad := registry.Options{Creds: &registry.Credentials{Username: "alice", Password: "nope"}, Insecure: true}
	if err := registry.CheckLogin(context.Background(), reg.host, bad); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("login with a wrong password: %v", err)
	}

	write("alice", "wrong")
	_, err := Copy(context.Background(), reg.ref(t, "private/app:v1"), ociRef(t, t.TempDir(), "v1"), opts)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), authFile) {
		t.Fatalf("wrong password: %v", err)
	}
	os.Remove(authFile)
	_, err = Copy(context.Background(), reg.ref(t, "private/app:v1"), ociRef(t, t.TempDir(), "v1"), opts)
	if err == nil || !strings.Contains(err.Error(), "no credentials found") {
		t.Fatalf("anonymous: %v", err)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestCopyCancelled cancels a copy while a blob is streaming (as SIGINT
// does in the CLI): the error is the cancellation and the layout, and its
// directory, are as before.
func TestCopyCancelled(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 2)
	reg.push(t, "app:v1", img)
	layers, _ := img.Layers()
	ld, _ := layers[1].Digest()
	started := make(chan struct{})
	var once sync.Once
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/app/blobs/"+ld.String() || r.Method != http.MethodGet {
			return false
		}
		w.Header().Set("Content-Length", "2048")
		w.Write(make([]byte, 100))
		w.(http.Flusher).Flush()
		once.Do(func() { close(started) })
		<-r.Context().Done()
		return true
	})
	dir := t.TempDir()
	before := snapshot(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	_, err := Copy(ctx, reg.ref(t, "app:v1"), ociRef(t, dir, "v1"), testOpts())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled copy: %v", err)
	}
	if after := snapshot(t, dir); after != before {
		t.Fatalf("cancelled copy changed the layout:\n%s", after)
	}
}

func TestCopyPlatformWarningAndPreserveDigests(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 1)
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "arm64"
	img, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	reg.push(t, "arm:v1", img)
	opts := testOpts() // asks for linux/amd64
	res, err := Copy(context.Background(), reg.ref(t, "arm:v1"), ociRef(t, t.TempDir(), "v1"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "image platform (linux/arm64) does not match the expected platform (linux/amd64)") {
		t.Fatalf("warnings %q", res.Warnings)
	}
	opts.Platform = manifest.Platform{OS: "linux", Architecture: "arm64"}
	if res, _ := Copy(context.Background(), reg.ref(t, "arm:v1"), ociRef(t, t.TempDir(), "v1"), opts); len(res.Warnings) != 0 {
		t.Fatalf("matching platform warned: %q", res.Warnings)
	}

	opts.PreserveDigests = true
	dir := t.TempDir()
	_, err = Copy(context.Background(), reg.ref(t, "arm:v1"), ociRef(t, dir, "v1"), opts)
	if err == nil || !strings.Contains(err.Error(), "--preserve-digests") {
		t.Fatalf("Docker manifest into oci: with PreserveDigests: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("refused copy left %d entries", len(ents))
	}
	// Registry to registry keeps the manifest, so the digest survives.
	res, err = Copy(context.Background(), reg.ref(t, "arm:v1"), reg.ref(t, "arm2:v1"), opts)
	want, _ := img.Digest()
	if err != nil || res.Digest.String() != want.String() {
		t.Fatalf("registry copy with PreserveDigests: %v %v", res, err)
	}
}
