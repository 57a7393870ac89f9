package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"berth/internal/image/manifest"
	"berth/internal/image/ref"
)

// The transports' conformance suite, in the manner of
// go-containerregistry's pkg/v1/validate: every transport that is both a
// destination and a source takes an image through the destination
// interface (as Copy drives it) and gives back, through the source
// interface, an image that is consistent in itself (every blob matches
// its descriptor, every layer's uncompressed digest is the config's
// DiffID) and is the image written. A new transport is added to
// transportCases and must pass all of it.

// transportCase is one transport under the suite.
type transportCase struct {
	name string
	// ref names a fresh place to write to and read back from; n tells
	// two places of one test apart.
	ref func(t *testing.T, dir string, n int) ref.Ref
	// sameBlobs: the transport keeps manifest and blobs byte for byte
	// (docker-archive keeps layers uncompressed and writes its own
	// manifest, so only DiffIDs survive).
	sameBlobs bool
	// files: the destination is a path on disk (Abort must leave none).
	files bool
}

func transportCases(t *testing.T) []transportCase {
	reg := newRegistry(t)
	parse := func(t *testing.T, s string) ref.Ref {
		t.Helper()
		r, err := ref.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	return []transportCase{
		{name: "docker", sameBlobs: true, ref: func(t *testing.T, dir string, n int) ref.Ref {
			return parse(t, fmt.Sprintf("docker://%s/%s/img%d:v1", reg.host, filepath.Base(dir), n))
		}},
		{name: "oci", sameBlobs: true, files: true, ref: func(t *testing.T, dir string, n int) ref.Ref {
			return parse(t, fmt.Sprintf("oci:%s/layout%d:v1", dir, n))
		}},
		{name: "oci-archive", sameBlobs: true, files: true, ref: func(t *testing.T, dir string, n int) ref.Ref {
			return parse(t, fmt.Sprintf("oci-archive:%s/img%d.tar:v1", dir, n))
		}},
		{name: "docker-archive", files: true, ref: func(t *testing.T, dir string, n int) ref.Ref {
			return parse(t, fmt.Sprintf("docker-archive:%s/img%d.tar:example/img:v1", dir, n))
		}},
		{name: "dir", sameBlobs: true, files: true, ref: func(t *testing.T, dir string, n int) ref.Ref {
			return parse(t, fmt.Sprintf("dir:%s/dir%d", dir, n))
		}},
	}
}

// testImage is an OCI image held in memory: what the suite writes.
type testImage struct {
	m     *manifest.Parsed
	blobs map[digest.Digest][]byte
	diffs []digest.Digest
}

func newTestImage(t *testing.T, layers int) *testImage {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for i := 0; i < layers; i++ {
		l, err := random.Layer(4096, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	ti := &testImage{blobs: map[digest.Digest][]byte{}}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	if ti.m, err = manifest.Parse(raw, manifest.OCIManifest); err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	ti.blobs[ti.m.Manifest.Config.Digest] = cfg
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		d, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		ti.blobs[digest.Digest(d.String())] = b
		diff, _ := l.DiffID()
		ti.diffs = append(ti.diffs, digest.Digest(diff.String()))
	}
	return ti
}

func (ti *testImage) descriptors() []ocispec.Descriptor {
	return append([]ocispec.Descriptor{ti.m.Manifest.Config}, ti.m.Manifest.Layers...)
}

func opener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// write takes ti through d as Copy does: the blobs, then the manifest.
func (ti *testImage) write(t *testing.T, d destination) {
	t.Helper()
	ctx := context.Background()
	for _, desc := range ti.descriptors() {
		if err := d.PutBlob(ctx, desc, opener(ti.blobs[desc.Digest])); err != nil {
			t.Fatalf("PutBlob %s: %v", desc.Digest, err)
		}
	}
	if err := d.Commit(ctx, ti.m); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func TestTransportConformance(t *testing.T) {
	ctx := context.Background()
	opts := testOpts()
	for _, tc := range transportCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := newTestImage(t, 2)

			// A blob that does not match its descriptor is refused and
			// not kept: the destination verifies what it is given.
			r := tc.ref(t, dir, 0)
			d, err := openDest(ctx, r, r, opts)
			if err != nil {
				t.Fatal(err)
			}
			bad := img.m.Manifest.Layers[0]
			corrupt := append([]byte(nil), img.blobs[bad.Digest]...)
			corrupt[len(corrupt)/2] ^= 0xff
			if err := d.PutBlob(ctx, bad, opener(corrupt)); err == nil {
				t.Error("PutBlob accepted a blob whose digest does not match")
			}
			if has, err := d.HasBlob(ctx, bad); err != nil || has {
				t.Errorf("HasBlob after a refused blob = %v, %v; want false", has, err)
			}
			img.write(t, d)
			validateSource(t, tc, r, img)

			// Writing another image to the same place replaces it.
			d, err = openDest(ctx, r, r, opts)
			if err != nil {
				t.Fatal(err)
			}
			img2 := newTestImage(t, 1)
			img2.write(t, d)
			validateSource(t, tc, r, img2)

			// Abort after some blobs leaves nothing where nothing was.
			r1 := tc.ref(t, dir, 1)
			d, err = openDest(ctx, r1, r1, opts)
			if err != nil {
				t.Fatal(err)
			}
			cfg := img.m.Manifest.Config
			if err := d.PutBlob(ctx, cfg, opener(img.blobs[cfg.Digest])); err != nil {
				t.Fatal(err)
			}
			d.Abort()
			if tc.files {
				if _, err := os.Lstat(r1.Path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("Abort left %s (%v)", r1.Path, err)
				}
			}
			if s, err := openSource(ctx, r1, opts); err == nil {
				if _, _, err := s.Manifest(ctx, ""); err == nil {
					t.Error("an aborted destination has a manifest")
				}
				s.Close()
			}
		})
	}
}

// validateSource opens r and checks that it holds want, as a consistent
// image: the manifest, the config and every layer read back match their
// descriptors, each layer uncompresses to its DiffID, and what was not
// written cannot be read.
func validateSource(t *testing.T, tc transportCase, r ref.Ref, want *testImage) {
	t.Helper()
	ctx := context.Background()
	s, err := openSource(ctx, r, testOpts())
	if err != nil {
		t.Fatalf("openSource: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	raw, mt, err := s.Manifest(ctx, "")
	if err != nil {
		t.Fatalf("Manifest: %v", err)
	}
	m, err := manifest.Parse(raw, mt)
	if err != nil {
		t.Fatalf("the manifest does not parse: %v", err)
	}
	if m.Kind != manifest.Image {
		t.Fatalf("manifest kind %v, want an image", m.Kind)
	}
	if m.Digest != digest.FromBytes(raw) {
		t.Errorf("manifest digest %s is not the digest of its bytes", m.Digest)
	}
	if tc.sameBlobs && m.Digest != want.m.Digest {
		t.Errorf("manifest %s, want the one written, %s", m.Digest, want.m.Digest)
	}
	if again, _, err := s.Manifest(ctx, m.Digest); err != nil || !bytes.Equal(again, raw) {
		t.Errorf("Manifest by its digest: %v (same bytes: %v)", err, bytes.Equal(again, raw))
	}
	cfgBytes := readBlob(t, s, m.Manifest.Config)
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgBytes, &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	if fmt.Sprint(cfg.RootFS.DiffIDs) != fmt.Sprint(want.diffs) {
		t.Errorf("DiffIDs %v, want %v", cfg.RootFS.DiffIDs, want.diffs)
	}
	if len(m.Manifest.Layers) != len(cfg.RootFS.DiffIDs) {
		t.Fatalf("%d layers for %d DiffIDs", len(m.Manifest.Layers), len(cfg.RootFS.DiffIDs))
	}
	for i, l := range m.Manifest.Layers {
		b := readBlob(t, s, l)
		if tc.sameBlobs && !bytes.Equal(b, want.blobs[l.Digest]) {
			t.Errorf("layer %d is not the blob written", i)
		}
		zr, err := decompressor(bytes.NewReader(b), compressionOf(b))
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		diff, err := digest.FromReader(zr)
		zr.Close()
		if err != nil || diff != cfg.RootFS.DiffIDs[i] {
			t.Errorf("layer %d uncompresses to %s (%v), its DiffID is %s", i, diff, err, cfg.RootFS.DiffIDs[i])
		}
	}
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("not written"), Size: 11}
	if rc, err := s.Blob(ctx, missing); err == nil {
		b, rerr := io.ReadAll(rc)
		rc.Close()
		if rerr == nil && digest.FromBytes(b) == missing.Digest {
			t.Error("Blob served a blob never written")
		}
	}
	if _, _, err := s.Manifest(ctx, digest.FromString("no such manifest")); err == nil {
		t.Error("Manifest served a digest never written")
	}
}

// readBlob reads desc from s and checks it against the descriptor.
func readBlob(t *testing.T, s source, desc ocispec.Descriptor) []byte {
	t.Helper()
	rc, err := s.Blob(context.Background(), desc)
	if err != nil {
		t.Fatalf("Blob %s: %v", desc.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", desc.Digest, err)
	}
	if int64(len(b)) != desc.Size || digest.FromBytes(b) != desc.Digest {
		t.Fatalf("blob %s: %d bytes with digest %s, the descriptor says %d and %s",
			desc.Digest, len(b), digest.FromBytes(b), desc.Size, desc.Digest)
	}
	return b
}
