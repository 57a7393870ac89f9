// docker-archive: the `docker save` format (manifest.json, the configs and
// uncompressed layers), read from a possibly compressed tar.

package image

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"berth/internal/image/layout"
	"berth/internal/image/manifest"
	"berth/internal/image/ref"
)

type dockerArchiveEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// dockerArchiveSource serves blobs straight out of the tar: the files of an
// uncompressed tar are contiguous byte ranges.
type dockerArchiveSource struct {
	f       *os.File
	files   map[string]section
	raw     []byte
	blobs   map[digest.Digest]section
	entries []dockerArchiveEntry
	cleanup func()
}

func (s *dockerArchiveSource) allTags() []string {
	tags := []string{}
	for _, e := range s.entries {
		tags = append(tags, e.RepoTags...)
	}
	return tags
}

type section struct{ off, size int64 }

func openDockerArchive(r ref.Ref) (_ source, retErr error) {
	f, err := os.Open(r.Path)
	if err != nil {
		return nil, notFound(fmt.Errorf("docker-archive: %w", err))
	}
	s := &dockerArchiveSource{f: f, files: map[string]section{}, blobs: map[digest.Digest]section{}}
	defer func() {
		if retErr != nil {
			s.Close()
		}
	}()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return nil, fmt.Errorf("docker-archive %s: %w", r.Path, err)
	}
	if c := compressionOf(magic[:]); c != "" {
		// Random access needs the plain tar: decompress once.
		if s.f, s.cleanup, err = decompressToTemp(f, c); err != nil {
			return nil, fmt.Errorf("docker-archive %s: %w", r.Path, err)
		}
		f.Close()
	}
	if err := s.index(); err != nil {
		return nil, fmt.Errorf("docker-archive %s: %w", r.Path, err)
	}
	mf, ok := s.files["manifest.json"]
	if !ok {
		return nil, fmt.Errorf("docker-archive %s: no manifest.json; not a docker save archive", r.Path)
	}
	b, err := s.read(mf, manifest.MaxSize)
	if err != nil {
		return nil, err
	}
	var entries []dockerArchiveEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("docker-archive %s: malformed manifest.json: %w", r.Path, err)
	}
	s.entries = entries
	e, err := pickArchiveEntry(entries, r)
	if err != nil {
		return nil, err
	}
	cfg, ok := s.files[path.Clean(e.Config)]
	if !ok {
		return nil, fmt.Errorf("docker-archive %s: config %q missing", r.Path, e.Config)
	}
	cb, err := s.read(cfg, manifest.MaxConfigSize)
	if err != nil {
		return nil, err
	}
	m := ocispec.Manifest{MediaType: manifest.OCIManifest}
	m.SchemaVersion = 2
	m.Config = ocispec.Descriptor{MediaType: manifest.OCIConfig, Digest: digest.FromBytes(cb), Size: int64(len(cb))}
	s.blobs[m.Config.Digest] = cfg
	for _, l := range e.Layers {
		sec, ok := s.files[path.Clean(l)]
		if !ok {
			return nil, fmt.Errorf("docker-archive %s: layer %q missing", r.Path, l)
		}
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(s.f, sec.off, sec.size)); err != nil {
			return nil, err
		}
		var head [4]byte
		s.f.ReadAt(head[:], sec.off)
		mt := ocispec.MediaTypeImageLayer
		switch compressionOf(head[:]) {
		case "gzip":
			mt = ocispec.MediaTypeImageLayerGzip
		case "zstd":
			mt = ocispec.MediaTypeImageLayerZstd
		}
		d := digest.NewDigest(digest.SHA256, h)
		s.blobs[d] = sec
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: d, Size: sec.size})
	}
	s.raw, _ = json.Marshal(m)
	return s, nil
}

func pickArchiveEntry(entries []dockerArchiveEntry, r ref.Ref) (dockerArchiveEntry, error) {
	switch {
	case r.Index >= 0:
		if r.Index >= len(entries) {
			return dockerArchiveEntry{}, fmt.Errorf("docker-archive %s: no image @%d (it has %d)", r.Path, r.Index, len(entries))
		}
		return entries[r.Index], nil
	case r.Named != nil:
		for _, e := range entries {
			for _, t := range e.RepoTags {
				if n, err := ref.ParseNamed(t); err == nil && n.String() == r.Named.String() {
					return e, nil
				}
			}
		}
		return dockerArchiveEntry{}, fmt.Errorf("%w: docker-archive %s has no image %s", ErrNotFound, r.Path, r.Named)
	}
	if len(entries) != 1 {
		return dockerArchiveEntry{}, fmt.Errorf("docker-archive %s holds %d images; pick one with :NAME:TAG or :@N", r.Path, len(entries))
	}
	return entries[0], nil
}

// index records where each regular file's data sits in the tar, and
// resolves the symlinks older `docker save` uses for shared layers.
func (s *dockerArchiveSource) index() error {
	cr := &countReader{r: s.f}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tr := tar.NewReader(cr)
	links := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		switch h.Typeflag {
		case tar.TypeReg:
			s.files[name] = section{off: cr.n, size: h.Size}
		case tar.TypeSymlink:
			links[name] = path.Join(path.Dir(name), h.Linkname)
		}
	}
	for name, target := range links {
		for range 8 {
			if t, ok := links[target]; ok {
				target = t
			}
		}
		if sec, ok := s.files[target]; ok {
			s.files[name] = sec
		}
	}
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (s *dockerArchiveSource) read(sec section, limit int64) ([]byte, error) {
	if sec.size > limit {
		return nil, fmt.Errorf("docker-archive: file is %d bytes, more than the %d byte limit", sec.size, limit)
	}
	b := make([]byte, sec.size)
	_, err := s.f.ReadAt(b, sec.off)
	return b, err
}

func (s *dockerArchiveSource) Manifest(ctx context.Context, d digest.Digest) ([]byte, string, error) {
	if d != "" && d != digest.FromBytes(s.raw) {
		return nil, "", fmt.Errorf("%w: docker-archive has no manifest %s", ErrNotFound, d)
	}
	return s.raw, manifest.OCIManifest, nil
}

func (s *dockerArchiveSource) Blob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	sec, ok := s.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("%w: docker-archive has no blob %s", ErrNotFound, desc.Digest)
	}
	return io.NopCloser(io.NewSectionReader(s.f, sec.off, sec.size)), nil
}

func (s *dockerArchiveSource) Close() error {
	err := s.f.Close()
	if s.cleanup != nil {
		s.cleanup()
	}
	return err
}

func compressionOf(head []byte) string {
	switch {
	case len(head) >= 3 && head[0] == 0x1f && head[1] == 0x8b && head[2] == 0x08:
		return "gzip"
	case len(head) >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd:
		return "zstd"
	}
	return ""
}

func decompressor(r io.Reader, c string) (io.ReadCloser, error) {
	switch c {
	case "gzip":
		return gzip.NewReader(r)
	case "zstd":
		// Bounded like the layer applier: a hostile frame header cannot make
		// the decoder allocate gigabytes (decompression bombs).
		z, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(128<<20), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, err
		}
		return z.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}

func decompressToTemp(f *os.File, c string) (*os.File, func(), error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, nil, err
	}
	zr, err := decompressor(bufio.NewReaderSize(f, 1<<20), c)
	if err != nil {
		return nil, nil, err
	}
	defer zr.Close()
	tmp, err := os.CreateTemp("", "berth-docker-archive-")
	if err != nil {
		return nil, nil, err
	}
	os.Remove(tmp.Name()) // anonymous: gone when closed, even on a crash
	if _, err := io.Copy(tmp, zr); err != nil {
		tmp.Close()
		return nil, nil, err
	}
	return tmp, nil, nil
}

// dockerArchiveDest writes `docker save` format, which (like skopeo's)
// stores layers uncompressed under their DiffID, the form `docker load`
// and every docker-archive reader accept.
type dockerArchiveDest struct {
	r      ref.Ref
	tmp    string
	mu     sync.Mutex
	layers map[digest.Digest]string // compressed digest -> file in tmp
	diffID map[digest.Digest]digest.Digest
}

func newDockerArchiveDest(r ref.Ref) (destination, error) {
	tmp, err := os.MkdirTemp("", "berth-docker-archive-")
	if err != nil {
		return nil, err
	}
	return &dockerArchiveDest{r: r, tmp: tmp, layers: map[digest.Digest]string{}, diffID: map[digest.Digest]digest.Digest{}}, nil
}

func (d *dockerArchiveDest) HasBlob(context.Context, ocispec.Descriptor) (bool, error) {
	return false, nil
}

func (d *dockerArchiveDest) PutBlob(ctx context.Context, desc ocispec.Descriptor, open func() (io.ReadCloser, error)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	v := layout.NewVerifier(rc, desc, "blob "+desc.Digest.String())
	f, err := os.CreateTemp(d.tmp, "blob-")
	if err != nil {
		return err
	}
	defer f.Close()
	if desc.MediaType == manifest.OCIConfig || desc.MediaType == manifest.DockerConfig {
		if _, err := io.Copy(f, v); err != nil {
			return err
		}
		d.mu.Lock()
		d.layers[desc.Digest] = f.Name()
		d.mu.Unlock()
		return nil
	}
	br := bufio.NewReaderSize(v, 1<<20)
	head, _ := br.Peek(4)
	zr, err := decompressor(br, compressionOf(head))
	if err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), zr); err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	// Drain so the verifier sees the end of the compressed stream.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	d.mu.Lock()
	d.layers[desc.Digest] = f.Name()
	d.diffID[desc.Digest] = digest.NewDigest(digest.SHA256, h)
	d.mu.Unlock()
	return nil
}

func (d *dockerArchiveDest) PutManifest(context.Context, *manifest.Parsed) error {
	return errors.New("docker-archive stores a single image")
}

func (d *dockerArchiveDest) Commit(ctx context.Context, m *manifest.Parsed) error {
	defer os.RemoveAll(d.tmp)
	cfgFile := d.layers[m.Manifest.Config.Digest]
	cb, err := os.ReadFile(cfgFile)
	if err != nil {
		return err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Manifest.Layers) {
		return fmt.Errorf("image config lists %d diff_ids for %d layers", len(cfg.RootFS.DiffIDs), len(m.Manifest.Layers))
	}
	out := filepath.Join(d.tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	entry := dockerArchiveEntry{Config: m.Manifest.Config.Digest.Encoded() + ".json", RepoTags: []string{}}
	if err := os.Rename(cfgFile, filepath.Join(out, entry.Config)); err != nil {
		return err
	}
	if d.r.Named != nil {
		entry.RepoTags = []string{d.r.Named.String()}
	}
	for i, l := range m.Manifest.Layers {
		id := d.diffID[l.Digest]
		if id != cfg.RootFS.DiffIDs[i] {
			return fmt.Errorf("layer %d (%s) uncompresses to %s, but the config says %s", i, l.Digest, id, cfg.RootFS.DiffIDs[i])
		}
		name := id.Encoded() + ".tar"
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			if err := os.Rename(d.layers[l.Digest], filepath.Join(out, name)); err != nil {
				return err
			}
		}
		entry.Layers = append(entry.Layers, name)
	}
	mb, _ := json.Marshal([]dockerArchiveEntry{entry})
	if err := os.WriteFile(filepath.Join(out, "manifest.json"), mb, 0o644); err != nil {
		return err
	}
	return writeTarAtomic(d.r.Path, out, func(string) bool { return true })
}

func (d *dockerArchiveDest) Abort() { os.RemoveAll(d.tmp) }

func (d *dockerArchiveDest) OCIOnly() bool { return false }

func (d *dockerArchiveDest) Index() bool { return false }
