// Package image copies container images between registries, OCI layouts,
// archives and directories, as skopeo copy does, and is the Go API the CLI
// (and a one-shot run) calls: Copy for any two references, Pull for "image
// name into berth's store".
//
// The copy is manifest-driven: read the source's top manifest, resolve an
// index to the wanted platform (or keep every platform with All), copy the
// blobs each image needs in parallel (skipping the ones the destination
// has, verifying every byte against its descriptor), convert Docker media
// types to OCI when the destination is an OCI layout, write the manifests
// and commit. Destinations are transactional where the format allows: an
// oci: layout is untouched until the final commit, and archives are
// written to a temporary file renamed into place.
package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"berth/internal/image/layout"
	"berth/internal/image/manifest"
	"berth/internal/image/ref"
	"berth/internal/image/registry"
)

// Options configure a copy. The zero value copies the host platform with
// anonymous-or-auth.json registry access, verified TLS and no retries.
type Options struct {
	// Src and Dest configure registry access for docker:// references
	// on each side.
	Src, Dest registry.Options
	// Platform picks an index entry; empty fields default to the host's
	// (manifest.Host()).
	Platform manifest.Platform
	// All copies every image of an index instead of one platform.
	All bool
	// Jobs is how many blobs transfer at once (default 6, as skopeo).
	Jobs int
	// Progress, if set, receives transfer events. It is called from
	// several goroutines and must be quick.
	Progress func(Event)
	// NoSync skips fsync when writing layouts (scratch use only).
	NoSync bool
	// PreserveDigests fails the copy instead of converting a manifest
	// (which would change its digest), as skopeo --preserve-digests.
	PreserveDigests bool
}

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	BlobStart    EventKind = iota + 1 // a blob transfer begins
	BlobBytes                         // N more bytes of the blob arrived
	BlobDone                          // the blob is stored and verified
	BlobSkipped                       // the destination already has it
	ManifestDone                      // a manifest was written
)

// Event reports copy progress.
type Event struct {
	Kind EventKind
	Desc ocispec.Descriptor
	N    int64 // BlobBytes: bytes in this chunk
}

// Result describes a finished copy.
type Result struct {
	// Digest and MediaType identify the manifest written at the
	// destination's reference (converted, so possibly different from the
	// source's).
	Digest    digest.Digest
	MediaType string
	// SourceDigest is the source manifest the copy started from (after
	// platform selection).
	SourceDigest digest.Digest
	// Platforms copied, as the source index names them (empty when the
	// source was a single image).
	Platforms []manifest.Platform
	// Blobs fetched and skipped (already present), and bytes fetched.
	Fetched, Skipped int
	Bytes            int64
	// Warnings the caller should show (a single-platform source whose
	// platform is not the one asked for).
	Warnings []string
}

// Copy copies the image at src to dst.
func Copy(ctx context.Context, src, dst ref.Ref, opts Options) (_ *Result, retErr error) {
	if opts.Jobs <= 0 {
		opts.Jobs = 6
	}
	opts.Platform = fillPlatform(opts.Platform)
	s, err := openSource(ctx, src, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	d, err := openDest(ctx, dst, src, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			d.Abort()
		}
	}()
	c := &copier{src: s, dst: d, opts: opts, res: &Result{}, done: map[digest.Digest]bool{}}
	raw, mt, err := s.Manifest(ctx, "")
	if err != nil {
		return nil, err
	}
	top, err := manifest.Parse(raw, mt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	sourceWasImage := top.Kind == manifest.Image
	if top.Kind == manifest.Index && !opts.All {
		child, err := manifest.Select(top.Index, opts.Platform)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		c.addPlatform(child.Platform)
		if top, err = c.fetchManifest(ctx, child); err != nil {
			return nil, err
		}
		if top.Kind != manifest.Image {
			return nil, fmt.Errorf("%s: platform %s resolves to a nested index; copy it with --all", src, opts.Platform)
		}
	}
	if top.Kind == manifest.Index && !d.Index() {
		return nil, fmt.Errorf("%s cannot store a multi-platform image; copy one platform (without --all)", dst)
	}
	c.res.SourceDigest = top.Digest
	out, err := c.copyManifest(ctx, top, true)
	if err != nil {
		return nil, err
	}
	if err := d.Commit(ctx, out); err != nil {
		return nil, err
	}
	c.res.Digest, c.res.MediaType = out.Digest, out.MediaType
	if sourceWasImage {
		c.checkPlatform(ctx, top)
	}
	return c.res, nil
}

// checkPlatform warns, as skopeo does, when a single-platform source is
// not for the platform asked for: the copy is still what the user named,
// but it may not run here. The config was just copied, so reading it is
// cheap; failing to read it only loses the warning.
func (c *copier) checkPlatform(ctx context.Context, m *manifest.Parsed) {
	if m.Kind != manifest.Image || (m.Manifest.Config.MediaType != manifest.OCIConfig && m.Manifest.Config.MediaType != manifest.DockerConfig) {
		return
	}
	rc, err := c.src.Blob(ctx, m.Manifest.Config)
	if err != nil {
		return
	}
	defer rc.Close()
	var cfg ocispec.Image
	if json.NewDecoder(layout.NewVerifier(rc, m.Manifest.Config, "config")).Decode(&cfg) != nil {
		return
	}
	p := &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	if !manifest.Matches(p, c.opts.Platform) {
		c.res.Warnings = append(c.res.Warnings, fmt.Sprintf("image platform (%s) does not match the expected platform (%s)",
			manifest.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}, c.opts.Platform))
	}
}

func fillPlatform(p manifest.Platform) manifest.Platform {
	h := manifest.Host()
	if p.OS == "" {
		p.OS = h.OS
	}
	if p.Architecture == "" {
		p.Architecture = h.Architecture
		if p.Variant == "" {
			p.Variant = h.Variant
		}
	}
	return p
}

type copier struct {
	src  source
	dst  destination
	opts Options
	res  *Result
	mu   sync.Mutex
	done map[digest.Digest]bool // blobs already handled in this copy
}

// addPlatform records a platform the copy includes, from its index entry.
func (c *copier) addPlatform(p *ocispec.Platform) {
	if p != nil {
		c.res.Platforms = append(c.res.Platforms, manifest.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant})
	}
}

func (c *copier) progress(e Event) {
	if c.opts.Progress != nil {
		c.opts.Progress(e)
	}
}

// fetchManifest reads a child manifest and checks it is what the parent
// descriptor promised.
func (c *copier) fetchManifest(ctx context.Context, d ocispec.Descriptor) (*manifest.Parsed, error) {
	if d.Size > manifest.MaxSize {
		return nil, fmt.Errorf("manifest %s is %d bytes, more than the %d byte limit", d.Digest, d.Size, manifest.MaxSize)
	}
	raw, mt, err := c.src.Manifest(ctx, d.Digest)
	if err != nil {
		return nil, err
	}
	if got := digest.FromBytes(raw); got != d.Digest || int64(len(raw)) != d.Size {
		return nil, fmt.Errorf("manifest %s: %w: got %d bytes with digest %s, want %d", d.Digest, layout.ErrVerify, len(raw), got, d.Size)
	}
	if mt == "" {
		mt = d.MediaType
	}
	p, err := manifest.Parse(raw, mt)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	return p, nil
}

// copyManifest copies everything m refers to and writes m (converted if the
// destination needs it) unless top, which Commit writes. It returns the
// manifest as written.
func (c *copier) copyManifest(ctx context.Context, m *manifest.Parsed, top bool) (*manifest.Parsed, error) {
	var out *manifest.Parsed
	switch m.Kind {
	case manifest.Image:
		if err := c.copyBlobs(ctx, append([]ocispec.Descriptor{m.Manifest.Config}, m.Manifest.Layers...)); err != nil {
			return nil, err
		}
		out = m
		if c.dst.OCIOnly() && c.opts.PreserveDigests && m.IsDocker() {
			return nil, fmt.Errorf("manifest %s uses Docker media types; writing it to an OCI layout changes its digest, which --preserve-digests forbids", m.Digest)
		}
		if c.dst.OCIOnly() {
			var err error
			if out, err = manifest.ToOCI(m); err != nil {
				return nil, err
			}
		}
	case manifest.Index:
		// Fetch every child first and transfer all their blobs as one
		// parallel batch; copying image by image would leave the pipe
		// idle between small images.
		kids := make([]*manifest.Parsed, len(m.Index.Manifests))
		var blobs []ocispec.Descriptor
		for i, d := range m.Index.Manifests {
			c.addPlatform(d.Platform)
			child, err := c.fetchManifest(ctx, d)
			if err != nil {
				return nil, err
			}
			kids[i] = child
			if child.Kind == manifest.Image {
				blobs = append(append(blobs, child.Manifest.Config), child.Manifest.Layers...)
			}
		}
		if err := c.copyBlobs(ctx, blobs); err != nil {
			return nil, err
		}
		children := map[digest.Digest]ocispec.Descriptor{}
		for i, d := range m.Index.Manifests {
			w, err := c.copyManifest(ctx, kids[i], false)
			if err != nil {
				return nil, err
			}
			children[d.Digest] = w.Descriptor()
		}
		var err error
		if c.dst.OCIOnly() {
			if c.opts.PreserveDigests && m.IsDocker() {
				return nil, fmt.Errorf("index %s uses Docker media types; writing it to an OCI layout changes its digest, which --preserve-digests forbids", m.Digest)
			}
			out, err = manifest.IndexToOCI(m, children, false)
		} else {
			out, err = manifest.UpdateIndex(m, children)
		}
		if err != nil {
			return nil, err
		}
	}
	if !top {
		if err := c.dst.PutManifest(ctx, out); err != nil {
			return nil, err
		}
		c.progress(Event{Kind: ManifestDone, Desc: out.Descriptor()})
	}
	return out, nil
}

// copyBlobs transfers blobs in parallel, each once per copy, skipping those
// the destination has.
func (c *copier) copyBlobs(ctx context.Context, blobs []ocispec.Descriptor) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Jobs)
	for _, b := range blobs {
		c.mu.Lock()
		seen := c.done[b.Digest]
		c.done[b.Digest] = true
		c.mu.Unlock()
		if seen {
			continue
		}
		g.Go(func() error { return c.copyBlob(gctx, b) })
	}
	return g.Wait()
}

func (c *copier) copyBlob(ctx context.Context, b ocispec.Descriptor) error {
	has, err := c.dst.HasBlob(ctx, b)
	if err != nil {
		return err
	}
	if has {
		c.mu.Lock()
		c.res.Skipped++
		c.mu.Unlock()
		c.progress(Event{Kind: BlobSkipped, Desc: b})
		return nil
	}
	c.progress(Event{Kind: BlobStart, Desc: b})
	var fetched atomic.Int64
	open := func() (io.ReadCloser, error) {
		rc, err := c.src.Blob(ctx, b)
		if err != nil {
			return nil, err
		}
		// A retried upload starts over: take back what it reported.
		if n := fetched.Swap(0); n > 0 {
			c.progress(Event{Kind: BlobBytes, Desc: b, N: -n})
		}
		// Not verified here: every destination verifies what it stores
		// (hashing once per byte matters for large layers).
		return &countingReader{ReadCloser: rc, f: func(n int) {
			fetched.Add(int64(n))
			c.progress(Event{Kind: BlobBytes, Desc: b, N: int64(n)})
		}}, nil
	}
	if err := c.dst.PutBlob(ctx, b, open); err != nil {
		return err
	}
	c.mu.Lock()
	c.res.Fetched++
	c.res.Bytes += b.Size
	c.mu.Unlock()
	c.progress(Event{Kind: BlobDone, Desc: b})
	return nil
}

type countingReader struct {
	io.ReadCloser
	f func(int)
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.f(n)
	}
	return n, err
}

// ErrNotFound is wrapped when the source image does not exist (skopeo
// exits 2 for it).
var ErrNotFound = errors.New("image not found")

func notFound(err error) error {
	if errors.Is(err, registry.ErrNotFound) || errors.Is(err, layout.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}
