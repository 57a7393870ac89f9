// oci:: an OCI image layout directory (layout.Txn writes it).

package image

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"berth/internal/image/layout"
	"berth/internal/image/manifest"
)

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

func (d *layoutDest) Index() bool { return true }
