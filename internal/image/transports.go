package image

import (
	"context"
	"fmt"
	"io"
	"os"

	"berth/internal/image/layout"
	"berth/internal/image/manifest"
	"berth/internal/image/ref"
	"berth/internal/image/registry"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func openSource(ctx context.Context, r ref.Ref, opts Options) (source, error) {
	switch r.Transport {
	case ref.Docker:
		c, err := registry.New(ctx, *r.Named, false, opts.Src)
		if err != nil {
			return nil, err
		}
		return &registrySource{c: c}, nil
	case ref.OCI:
		l, err := layout.Open(r.Path)
		if err != nil {
			return nil, notFound(err)
		}
		return newLayoutSource(l, r.Tag, nil)
	case ref.OCIArchive:
		return openOCIArchive(r)
	case ref.DockerArchive:
		return openDockerArchive(r)
	case ref.Dir:
		return openDirSource(r.Path)
	}
	return nil, fmt.Errorf("transport %q cannot be a source", r.Transport)
}

func openDest(ctx context.Context, r, src ref.Ref, opts Options) (destination, error) {
	switch r.Transport {
	case ref.Docker:
		ro := opts.Dest
		if src.Transport == ref.Docker && src.Named.Registry == r.Named.Registry && src.Named.Repository != r.Named.Repository {
			// Same registry: blobs can be mounted, not re-uploaded.
			ro.MountFrom = src.Named.Repository
		}
		c, err := registry.New(ctx, *r.Named, true, ro)
		if err != nil {
			return nil, err
		}
		return &registryDest{c: c, mountFrom: ro.MountFrom}, nil
	case ref.OCI:
		return newLayoutDest(r.Path, r.Tag, opts, nil)
	case ref.OCIArchive:
		return newOCIArchiveDest(r, opts)
	case ref.DockerArchive:
		return newDockerArchiveDest(r)
	case ref.Dir:
		return newDirDest(r.Path)
	}
	return nil, fmt.Errorf("transport %q cannot be a destination", r.Transport)
}

// registrySource reads from a docker:// repository.
type registrySource struct{ c *registry.Client }

func (s *registrySource) Manifest(ctx context.Context, d digest.Digest) ([]byte, string, error) {
	raw, mt, err := s.c.GetManifest(ctx, string(d))
	return raw, mt, notFound(err)
}

func (s *registrySource) Blob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return s.c.OpenBlob(ctx, desc)
}

func (s *registrySource) Close() error { return nil }

// registryDest pushes to a docker:// repository. Manifests keep their media
// types: registries take both Docker and OCI.
type registryDest struct {
	c         *registry.Client
	mountFrom string
}

// HasBlob also reports true for a blob it could mount from the source
// repository on the same registry: either way nothing needs uploading.
func (d *registryDest) HasBlob(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	has, err := d.c.HasBlob(ctx, desc.Digest)
	if err != nil || has || d.mountFrom == "" {
		return has, err
	}
	return d.c.MountBlob(ctx, desc.Digest, d.mountFrom)
}

func (d *registryDest) PutBlob(ctx context.Context, desc ocispec.Descriptor, open func() (io.ReadCloser, error)) error {
	return d.c.PutBlob(ctx, desc, func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		// The registry checks the digest too, but a local check names
		// the culprit (the source) instead of failing the upload.
		return layout.NewVerifier(rc, desc, "blob "+desc.Digest.String()), nil
	})
}

func (d *registryDest) PutManifest(ctx context.Context, m *manifest.Parsed) error {
	return d.c.PutManifest(ctx, m.Digest.String(), m.MediaType, m.Raw)
}

func (d *registryDest) Commit(ctx context.Context, m *manifest.Parsed) error {
	id := d.c.Named.Tag
	if d.c.Named.Digest != "" {
		if digest.Digest(d.c.Named.Digest) != m.Digest {
			return fmt.Errorf("destination %s is pinned to a digest, but the copied manifest is %s", d.c.Named, m.Digest)
		}
		id = d.c.Named.Digest
	}
	return d.c.PutManifest(ctx, id, m.MediaType, m.Raw)
}

func (d *registryDest) Abort()        {}
func (d *registryDest) OCIOnly() bool { return false }
func (d *registryDest) Index() bool   { return true }

// layoutSource reads an oci: layout, verifying every blob.
type layoutSource struct {
	l       *layout.Layout
	top     ocispec.Descriptor
	cleanup func()
}

func newLayoutSource(l *layout.Layout, tag string, cleanup func()) (*layoutSource, error) {
	d, err := l.Resolve(tag)
	if err != nil {
		if cleanup != nil {
			cleanup()
		}
		return nil, notFound(err)
	}
	return &layoutSource{l: l, top: d, cleanup: cleanup}, nil
}

func (s *layoutSource) Manifest(ctx context.Context, d digest.Digest) ([]byte, string, error) {
	desc := s.top
	if d != "" {
		desc = ocispec.Descriptor{Digest: d, Size: -1}
		// The size comes from the parent descriptor, which the copy
		// checks; here only the file's own size is known.
		if fi, err := os.Stat(blobFile(s.l.Dir(), d)); err == nil {
			desc.Size = fi.Size()
		} else {
			return nil, "", notFound(fmt.Errorf("manifest %s: %w %s", d, layout.ErrNotFound, s.l.Dir()))
		}
	}
	raw, err := s.l.ReadBlob(desc, manifest.MaxSize)
	if err != nil {
		return nil, "", err
	}
	mt := ""
	if d == "" {
		mt = s.top.MediaType
	}
	return raw, mt, nil
}

func (s *layoutSource) Blob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	return s.l.OpenBlob(desc)
}

func (s *layoutSource) Close() error {
	if s.cleanup != nil {
		s.cleanup()
	}
	return nil
}

func blobFile(dir string, d digest.Digest) string {
	return dir + "/blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// layoutDest writes an oci: layout through a layout transaction.
type layoutDest struct {
	tx       *layout.Txn
	tag      string
	onCommit func() error // oci-archive: pack the layout
	cleanup  func()
}

func newLayoutDest(dir, tag string, opts Options, onCommit func() error) (*layoutDest, error) {
	var lo []layout.Option
	if opts.NoSync {
		lo = append(lo, layout.NoSync())
	}
	tx, err := layout.Begin(dir, lo...)
	if err != nil {
		return nil, err
	}
	return &layoutDest{tx: tx, tag: tag, onCommit: onCommit}, nil
}

func (d *layoutDest) HasBlob(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	return d.tx.HasBlob(desc.Digest, desc.Size), nil
}

func (d *layoutDest) PutBlob(ctx context.Context, desc ocispec.Descriptor, open func() (io.ReadCloser, error)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return d.tx.WriteBlob(desc, rc)
}

func (d *layoutDest) PutManifest(ctx context.Context, m *manifest.Parsed) error {
	if d.tx.HasBlob(m.Digest, int64(len(m.Raw))) {
		return nil
	}
	return d.tx.WriteBytes(m.Descriptor(), m.Raw)
}

func (d *layoutDest) Commit(ctx context.Context, m *manifest.Parsed) error {
	if err := d.PutManifest(ctx, m); err != nil {
		return err
	}
	if err := d.tx.Commit(layout.Entry{Tag: d.tag, Desc: m.Descriptor()}); err != nil {
		return err
	}
	if d.onCommit != nil {
		return d.onCommit()
	}
	return nil
}

func (d *layoutDest) Abort() {
	d.tx.Abort()
	if d.cleanup != nil {
		d.cleanup()
	}
}

func (d *layoutDest) OCIOnly() bool { return true }
func (d *layoutDest) Index() bool   { return true }
