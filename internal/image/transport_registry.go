// docker://: a registry repository, through the registry client.

package image

import (
	"context"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"berth/internal/image/layout"
	"berth/internal/image/manifest"
	"berth/internal/image/registry"
)

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

func (d *registryDest) Abort() {}

func (d *registryDest) OCIOnly() bool { return false }

func (d *registryDest) Index() bool { return true }
