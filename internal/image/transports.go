package image

import (
	"context"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"berth/internal/image/layout"
	"berth/internal/image/manifest"
	"berth/internal/image/ref"
	"berth/internal/image/registry"
)

// source is where images come from.
type source interface {
	// Manifest returns the top manifest when d is "", else the manifest
	// with digest d.
	Manifest(ctx context.Context, d digest.Digest) (raw []byte, mediaType string, err error)
	// Blob opens a blob; the copy verifies it.
	Blob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
	Close() error
}

// destination is where images go. PutBlob and HasBlob are called
// concurrently; the rest from one goroutine.
type destination interface {
	HasBlob(ctx context.Context, desc ocispec.Descriptor) (bool, error)
	// PutBlob stores a blob from open (called again to retry from the
	// start). The stream is unverified: PutBlob must check digest and
	// size and keep nothing that does not match.
	PutBlob(ctx context.Context, desc ocispec.Descriptor, open func() (io.ReadCloser, error)) error
	// PutManifest stores a manifest that Commit will not name (index
	// children).
	PutManifest(ctx context.Context, m *manifest.Parsed) error
	// Commit stores the top manifest under the destination reference.
	Commit(ctx context.Context, m *manifest.Parsed) error
	// Abort undoes whatever can be undone after a failure.
	Abort()
	// OCIOnly destinations get Docker media types converted.
	OCIOnly() bool
	// Index reports whether the destination can store an index (--all).
	Index() bool
}

// openSource opens the source of a copy: a transport turns its reference
// into a source, here. Every source passes the conformance suite in
// transports_test.go.
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

// openDest opens the destination of a copy (src is the source reference:
// a registry can mount blobs from the same registry). Every destination
// passes the conformance suite in transports_test.go.
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
