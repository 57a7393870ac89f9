// Package layout is berth's OCI image layout store (image-spec
// image-layout.md): content-addressed blobs under blobs/<alg>/<hex>, an
// index.json naming manifests by org.opencontainers.image.ref.name, and an
// oci-layout marker. It stays a standard layout, so skopeo, umoci and
// go-containerregistry's pkg/v1/layout read what berth writes.
//
// Writes go through a transaction: blobs are verified (digest and size) into
// a private staging directory inside the layout, and only Commit, under an
// exclusive flock, moves them into blobs/ and replaces index.json by rename.
// A copy that fails before Commit therefore leaves the layout exactly as it
// was, and concurrent copies into one layout cannot lose each other's tags
// (skopeo#1018).
//
// Reads verify too: every blob is checked against its digest and size as it
// is read, so a corrupted store is reported, not unpacked.
package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// RefName is the index.json annotation that tags a manifest.
const RefName = ocispec.AnnotationRefName

// Writers serialise on a flock of the layout directory itself: the
// directory's inode outlives every index.json rename, and locking it adds
// no file to the layout, so even a failed first copy leaves nothing behind.

// stagePrefix starts the names of per-transaction staging directories.
const stagePrefix = ".berth-staging-"

// MaxIndexSize bounds index.json, which is read whole.
const MaxIndexSize = 64 << 20

// ErrNotFound is wrapped when a tag or blob is not in the layout.
var ErrNotFound = errors.New("not found in layout")

// Layout is an OCI layout directory.
type Layout struct {
	dir string
}

// Open opens an existing layout, checking its oci-layout marker.
func Open(dir string) (*Layout, error) {
	b, err := os.ReadFile(filepath.Join(dir, ocispec.ImageLayoutFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(dir); serr != nil {
				return nil, fmt.Errorf("open layout %s: %w", dir, serr)
			}
			return nil, fmt.Errorf("open layout %s: no %s file, not an OCI layout", dir, ocispec.ImageLayoutFile)
		}
		return nil, fmt.Errorf("open layout: %w", err)
	}
	var lay ocispec.ImageLayout
	if err := json.Unmarshal(b, &lay); err != nil {
		return nil, fmt.Errorf("open layout %s: malformed %s: %w", dir, ocispec.ImageLayoutFile, err)
	}
	if lay.Version != ocispec.ImageLayoutVersion {
		return nil, fmt.Errorf("open layout %s: unsupported imageLayoutVersion %q (want %q)", dir, lay.Version, ocispec.ImageLayoutVersion)
	}
	return &Layout{dir: dir}, nil
}

// Dir is the layout's directory.
func (l *Layout) Dir() string { return l.dir }

// Index reads index.json.
func (l *Layout) Index() (*ocispec.Index, error) { return readIndex(l.dir) }

func readIndex(dir string) (*ocispec.Index, error) {
	f, err := os.Open(filepath.Join(dir, ocispec.ImageIndexFile))
	if err != nil {
		return nil, fmt.Errorf("read layout index: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxIndexSize+1))
	if err != nil {
		return nil, fmt.Errorf("read layout index: %w", err)
	}
	if len(b) > MaxIndexSize {
		return nil, fmt.Errorf("read layout index: %s is larger than %d bytes", f.Name(), MaxIndexSize)
	}
	var ix ocispec.Index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("read layout index %s: %w", f.Name(), err)
	}
	if ix.SchemaVersion != 2 {
		return nil, fmt.Errorf("read layout index %s: schemaVersion %d, want 2", f.Name(), ix.SchemaVersion)
	}
	return &ix, nil
}

// Resolve finds the manifest tagged tag. An empty tag means the layout's
// only manifest, as in skopeo; with several it is ambiguous.
func (l *Layout) Resolve(tag string) (ocispec.Descriptor, error) {
	ix, err := l.Index()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if tag == "" {
		if len(ix.Manifests) == 1 {
			return ix.Manifests[0], nil
		}
		if len(ix.Manifests) == 0 {
			return ocispec.Descriptor{}, fmt.Errorf("layout %s: %w: it holds no images", l.dir, ErrNotFound)
		}
		return ocispec.Descriptor{}, fmt.Errorf("layout %s holds %d images; name one as oci:%s:TAG (tags: %v)", l.dir, len(ix.Manifests), l.dir, Tags(ix))
	}
	var found []ocispec.Descriptor
	for _, d := range ix.Manifests {
		if d.Annotations[RefName] == tag {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return ocispec.Descriptor{}, fmt.Errorf("image %q: %w %s (tags: %v)", tag, ErrNotFound, l.dir, Tags(ix))
	}
	return ocispec.Descriptor{}, fmt.Errorf("image %q is ambiguous in layout %s: %d entries carry that name", tag, l.dir, len(found))
}

// Tags lists the ref names in ix, in index order.
func Tags(ix *ocispec.Index) []string {
	var tags []string
	for _, d := range ix.Manifests {
		if t, ok := d.Annotations[RefName]; ok {
			tags = append(tags, t)
		}
	}
	return tags
}

func blobPath(dir string, d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("blob digest %q: %w", d, err)
	}
	return filepath.Join(dir, ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded()), nil
}

// HasBlob reports whether the blob is present with the expected size.
// Contents are verified when read, not here: checking presence must stay
// cheap so a re-pull skips what it has.
func (l *Layout) HasBlob(d digest.Digest, size int64) bool {
	p, err := blobPath(l.dir, d)
	if err != nil {
		return false
	}
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

// Open returns a reader for the blob that fails with a clear error at the
// end if the content does not match desc's digest and size. Close it.
func (l *Layout) OpenBlob(desc ocispec.Descriptor) (io.ReadCloser, error) {
	p, err := blobPath(l.dir, desc.Digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("blob %s: %w %s", desc.Digest, ErrNotFound, l.dir)
		}
		return nil, fmt.Errorf("open blob: %w", err)
	}
	return NewVerifier(f, desc, "blob "+p), nil
}

// ReadBlob reads a small blob (manifest, config) whole, verified, refusing
// more than limit bytes.
func (l *Layout) ReadBlob(desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit {
		return nil, fmt.Errorf("blob %s is %d bytes, more than the %d byte limit", desc.Digest, desc.Size, limit)
	}
	rc, err := l.OpenBlob(desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Verifier wraps a stream and checks, when it ends, that it had exactly
// the descriptor's size and digest. It never returns more than Size bytes,
// so an oversized stream cannot fill the disk.
type Verifier struct {
	rc   io.ReadCloser
	desc ocispec.Descriptor
	what string
	h    hash.Hash
	n    int64
	err  error
}

// NewVerifier wraps rc; what names the stream in errors.
func NewVerifier(rc io.ReadCloser, desc ocispec.Descriptor, what string) *Verifier {
	return &Verifier{rc: rc, desc: desc, what: what, h: desc.Digest.Algorithm().Hash()}
}

// ErrVerify is wrapped when content does not match its descriptor.
var ErrVerify = errors.New("content does not match its descriptor")

func (v *Verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if rem := v.desc.Size - v.n; int64(len(p)) > rem+1 {
		// Ask for one byte more than expected so an overlong stream is
		// caught without reading it all.
		p = p[:rem+1]
	}
	n, err := v.rc.Read(p)
	v.n += int64(n)
	if v.n > v.desc.Size {
		v.err = fmt.Errorf("%s: %w: more than the expected %d bytes", v.what, ErrVerify, v.desc.Size)
		return 0, v.err
	}
	v.h.Write(p[:n])
	if err == io.EOF {
		if v.n != v.desc.Size {
			v.err = fmt.Errorf("%s: %w: got %d bytes, want %d (truncated)", v.what, ErrVerify, v.n, v.desc.Size)
			return n, v.err
		}
		if got := digest.NewDigest(v.desc.Digest.Algorithm(), v.h); got != v.desc.Digest {
			v.err = fmt.Errorf("%s: %w: digest is %s, want %s", v.what, ErrVerify, got, v.desc.Digest)
			return n, v.err
		}
		v.err = io.EOF
	} else if err != nil {
		v.err = err
	}
	return n, err
}

// Close closes the underlying stream.
func (v *Verifier) Close() error { return v.rc.Close() }
