// Package demo builds what `berth demo` needs from what berth carries with
// it: a small OCI image whose only program is berth itself (plus the shared
// libraries it links), served by an in-process registry, so the whole
// classic workflow runs offline on a fresh machine.
package demo

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Payload is the command the demo container runs: berth's hidden
// demo-payload command, which reports what the container sees.
var Payload = []string{"/bin/berth", "demo-payload"}

// libDirs are searched for the shared libraries berth links.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// runtimeFiles returns berth's binary and every shared object it needs, as
// host path -> path in the image.
func runtimeFiles(exe string) (map[string]string, error) {
	files := map[string]string{exe: "bin/berth"}
	queue := []string{exe}
	seen := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		f, err := elf.Open(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		libs, _ := f.ImportedLibraries()
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				b, err := io.ReadAll(prog.Open())
				if err == nil {
					interp := strings.TrimRight(string(b), "\x00")
					files[interp] = strings.TrimPrefix(interp, "/")
					queue = append(queue, interp)
				}
			}
		}
		f.Close()
		for _, l := range libs {
			found := ""
			for _, d := range libDirs {
				if _, err := os.Stat(filepath.Join(d, l)); err == nil {
					found = filepath.Join(d, l)
					break
				}
			}
			if found == "" {
				return nil, fmt.Errorf("shared library %s (needed by %s) not found", l, p)
			}
			files[found] = strings.TrimPrefix(found, "/")
			queue = append(queue, found)
		}
	}
	return files, nil
}

// layer builds the image's single layer.
func layer(exe string) (v1.Layer, error) {
	files, err := runtimeFiles(exe)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Unix(0, 0)
	dirs := map[string]bool{}
	addDir := func(d string) error {
		if d == "." || dirs[d] {
			return nil
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: now})
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root"} {
		if err := addDir(d); err != nil {
			return nil, err
		}
	}
	for host, in := range files {
		var parents []string
		for d := filepath.Dir(in); d != "."; d = filepath.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if err := addDir(d); err != nil {
				return nil, err
			}
		}
		b, err := os.ReadFile(host)
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: in, Mode: 0o755, Size: int64(len(b)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	etc := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/berth\n",
		"etc/group":  "root:x:0:\n",
	}
	for n, c := range etc {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(c)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// Image is the demo image: one layer with berth and its libraries, OCI media
// types, the payload as entrypoint.
func Image(exe string) (v1.Image, error) {
	l, err := layer(exe)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = Payload
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": "berth demo"}
	return mutate.ConfigFile(img, cf)
}

// Registry is an in-process registry on a loopback port.
type Registry struct {
	Addr string // host:port
	srv  *http.Server
	ln   net.Listener
}

// Serve starts a registry on 127.0.0.1 and pushes img as repo:tag.
func Serve(img v1.Image, repoTag string) (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Registry{Addr: ln.Addr().String(), ln: ln, srv: &http.Server{Handler: registry.New(registry.Logger(discardLogger())), ReadHeaderTimeout: 10 * time.Second}}
	go r.srv.Serve(ln)
	ref, err := name.ParseReference(r.Addr+"/"+repoTag, name.Insecure)
	if err != nil {
		r.Close()
		return nil, err
	}
	if err := remote.Write(ref, img); err != nil {
		r.Close()
		return nil, fmt.Errorf("pushing the demo image: %w", err)
	}
	return r, nil
}

// Close stops the registry.
func (r *Registry) Close() error {
	if r == nil || r.srv == nil {
		return errors.New("registry not running")
	}
	return r.srv.Close()
}
