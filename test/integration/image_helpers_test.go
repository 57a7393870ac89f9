package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/internal/testutil"
)

// imgRegistry is Debian's docker-registry on 127.0.0.1 with htpasswd auth
// and a TLS certificate from a CA this test made.
type imgRegistry struct {
	host   string // 127.0.0.1:PORT
	caDir  string // holds ca.crt, for --cert-dir
	user   string
	pass   string
	dir    string
	client *http.Client
}

func imgNeed(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		_, err := exec.LookPath(b)
		testutil.Require(t, err == nil, b+" is not installed (scripts/apt-packages.txt)")
	}
}

func imgStartRegistry(t *testing.T) *imgRegistry {
	t.Helper()
	imgNeed(t, "docker-registry", "htpasswd")
	dir := t.TempDir()
	r := &imgRegistry{dir: dir, user: "tester", pass: "s3cret-pw", caDir: filepath.Join(dir, "certs")}
	os.Mkdir(r.caDir, 0o755)
	certPEM, keyPEM, caPEM := imgMakeCerts(t)
	os.WriteFile(filepath.Join(r.caDir, "ca.crt"), caPEM, 0o644)
	os.WriteFile(filepath.Join(dir, "server.crt"), certPEM, 0o644)
	os.WriteFile(filepath.Join(dir, "server.key"), keyPEM, 0o600)
	out, err := exec.Command("htpasswd", "-Bbn", r.user, r.pass).Output()
	if err != nil {
		t.Fatalf("htpasswd: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "htpasswd"), out, 0o644)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.host = ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %[1]s/data
  delete:
    enabled: true
auth:
  htpasswd:
    realm: berth-test
    path: %[1]s/htpasswd
http:
  addr: %[2]s
  tls:
    certificate: %[1]s/server.crt
    key: %[1]s/server.key
`, dir, r.host)
	os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644)
	cmd := exec.Command("docker-registry", "serve", filepath.Join(dir, "config.yml"))
	logf, _ := os.Create(filepath.Join(dir, "registry.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	r.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := r.client.Get("https://" + r.host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("docker-registry did not come up: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return r
}

func (r *imgRegistry) creds() string { return r.user + ":" + r.pass }

// imgMakeCerts returns a server certificate for 127.0.0.1 signed by a fresh
// CA, its key, and the CA certificate.
func imgMakeCerts(t *testing.T) (certPEM, keyPEM, caPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

type imgResult struct {
	stdout, stderr string
	code           int
}

// imgBerth runs berth with extra environment entries.
func imgBerth(t *testing.T, env []string, stdin string, args ...string) imgResult {
	t.Helper()
	cmd := exec.Command(berthBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	res := imgResult{stdout: o.String(), stderr: e.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("berth %v: %v", args, err)
	}
	return res
}

func imgMust(t *testing.T, env []string, args ...string) imgResult {
	t.Helper()
	r := imgBerth(t, env, "", args...)
	if r.code != 0 {
		t.Fatalf("berth %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func imgRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// imgLayer is a gzip'd tar holding the given files.
func imgLayer(files map[string]string) (gz []byte, diffID string) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for name, body := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)})
		tw.Write([]byte(body))
	}
	tw.Close()
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	zw.Write(tb.Bytes())
	zw.Close()
	return gb.Bytes(), imgDigest(tb.Bytes())
}

func imgDigest(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

type imgDesc struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Platform    map[string]string `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// imgWriteLayout writes an OCI layout tagged tag: one image per platform
// ("linux/amd64"), each with a file /platform naming it, under an index when
// there are several.
func imgWriteLayout(t *testing.T, dir, tag string, platforms ...string) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755)
	put := func(b []byte) string {
		d := imgDigest(b)
		os.WriteFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:")), b, 0o644)
		return d
	}
	var manifests []imgDesc
	for _, p := range platforms {
		osName, arch, _ := strings.Cut(p, "/")
		layer, diff := imgLayer(map[string]string{"platform": p + "\n", "etc/hello": "hello from " + p + "\n"})
		cfg, _ := json.Marshal(map[string]any{"architecture": arch, "os": osName, "config": map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"/bin/sh"}}, "rootfs": map[string]any{"type": "layers", "diff_ids": []string{diff}}})
		m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config": imgDesc{MediaType: "application/vnd.oci.image.config.v1+json", Digest: put(cfg), Size: len(cfg)},
			"layers": []imgDesc{{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: put(layer), Size: len(layer)}}})
		manifests = append(manifests, imgDesc{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: put(m), Size: len(m), Platform: map[string]string{"os": osName, "architecture": arch}})
	}
	top := manifests[0]
	top.Platform = nil
	if len(manifests) > 1 {
		ix, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})
		top = imgDesc{MediaType: "application/vnd.oci.image.index.v1+json", Digest: put(ix), Size: len(ix)}
	}
	top.Annotations = map[string]string{"org.opencontainers.image.ref.name": tag}
	ix, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []imgDesc{top}})
	os.WriteFile(filepath.Join(dir, "index.json"), ix, 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// imgIndex reads a layout's index.json.
func imgIndex(t *testing.T, dir string) []imgDesc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ix struct{ Manifests []imgDesc }
	if err := json.Unmarshal(b, &ix); err != nil {
		t.Fatal(err)
	}
	return ix.Manifests
}

func imgBlob(t *testing.T, dir, digest string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// imgTree lists a directory tree with content digests, for "nothing
// changed" checks.
func imgTree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			out = append(out, rel+" "+imgDigest(b))
		} else {
			out = append(out, rel+"/")
		}
		return nil
	})
	return strings.Join(out, "\n")
}

// imgUmociUnpack unpacks with umoci, rootless when not run as root.
func imgUmociUnpack(t *testing.T, image, bundle string) {
	t.Helper()
	args := []string{"unpack", "--image", image, bundle}
	if os.Geteuid() != 0 {
		args = append([]string{"unpack", "--rootless"}, args[1:]...)
	}
	imgRun(t, "umoci", args...)
}
