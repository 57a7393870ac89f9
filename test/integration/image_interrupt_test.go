package integration

import (
	"bufio"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// TestImageInterrupted sends SIGINT to a copy whose blob download hangs:
// berth must stop, exit non-zero, and leave the existing layout exactly as
// it was (no staging directory, no new blobs, index.json untouched).
func TestImageInterrupted(t *testing.T) {
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	reg := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	var stallOn atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stallOn.Load() && strings.Contains(r.URL.Path, "/blobs/sha256:") && r.Method == http.MethodGet {
			// Promise a megabyte, send a little, then hang.
			w.Header().Set("Content-Length", "1000000")
			w.Write(make([]byte, 1000))
			w.(http.Flusher).Flush()
			select {
			case <-stall:
			case <-r.Context().Done():
			}
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	imgWriteLayout(t, src, "v1", "linux/amd64")
	layout := filepath.Join(dir, "layout")
	imgWriteLayout(t, layout, "old", "linux/arm64")
	imgMust(t, nil, "copy", "-q", "--dest-tls-verify=false", "oci:"+src+":v1", "docker://"+host+"/app:v1")
	before := imgTree(t, layout)

	stallOn.Store(true)
	cmd := exec.Command(berthBin, "copy", "--src-tls-verify=false", "docker://"+host+"/app:v1", "oci:"+layout+":new")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := bufio.NewScanner(stderr)
	started := make(chan struct{})
	go func() {
		once := false
		for lines.Scan() {
			if strings.Contains(lines.Text(), "Copying blob") && !once {
				once = true
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("copy never started a blob")
	}
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("interrupted copy exited 0")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("copy did not stop on SIGINT")
	}
	if after := imgTree(t, layout); after != before {
		t.Fatalf("interrupted copy changed the layout:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	ents, _ := os.ReadDir(layout)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".berth") {
			t.Errorf("left %s behind", e.Name())
		}
	}
}
