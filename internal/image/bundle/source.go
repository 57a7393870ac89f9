package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"berth/internal/image/unpack"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	digest "github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultStore is berth's own image store, an OCI layout.
const DefaultStore = "/var/lib/berth/images"

// StorePath returns $BERTH_STORE or DefaultStore.
func StorePath() string {
	if s := os.Getenv("BERTH_STORE"); s != "" {
		return s
	}
	return DefaultStore
}

// Image is a resolved image: its manifest, config and layers.
type Image struct {
	Layout   string
	Ref      string // the ref name it was found by ("" if the only image)
	Manifest digest.Digest
	Config   *imgspec.Image
	Layers   []unpack.Layer // bottom first
}

// maxMetaBlob bounds manifest, index and config blobs (CVE-2020-1702).
const maxMetaBlob = 8 << 20

// OpenImage resolves umoci's "LAYOUT[:REF]" syntax, or else a reference
// (alpine, docker.io/library/alpine:latest) into the image store.
func OpenImage(arg, store string) (*Image, error) {
	if arg == "" {
		return nil, errors.New("no image given")
	}
	if dir, ref, ok := splitLayoutArg(arg); ok {
		return openFromLayout(dir, ref, false)
	}
	ref, err := NormalizeRef(arg)
	if err != nil {
		return nil, fmt.Errorf("%q is neither an OCI layout nor an image reference: %w", arg, err)
	}
	if !isLayout(store) {
		return nil, fmt.Errorf("%q is not an OCI layout, and the image store %s does not exist", arg, store)
	}
	return openFromLayout(store, ref, true)
}

func isLayout(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "oci-layout"))
	return err == nil && fi.Mode().IsRegular()
}

// splitLayoutArg splits "dir:ref" when dir is an OCI layout; a bare
// layout directory has ref "".
func splitLayoutArg(arg string) (dir, ref string, ok bool) {
	if isLayout(arg) {
		return arg, "", true
	}
	// The ref may itself contain colons (a full reference as the store's
	// tag: /var/lib/berth/images:docker.io/library/alpine:latest), so try
	// every colon from the left.
	for i := 0; i < len(arg); i++ {
		if arg[i] == ':' && i > 0 && isLayout(arg[:i]) {
			return arg[:i], arg[i+1:], true
		}
	}
	return "", "", false
}

// NormalizeRef spells a reference out in full, the way the store tags it:
// "alpine" → "docker.io/library/alpine:latest".
func NormalizeRef(s string) (string, error) {
	name, dig, hasDigest := strings.Cut(s, "@")
	tag := ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	if name == "" || strings.ContainsAny(name, " \t\n") {
		return "", fmt.Errorf("invalid reference %q", s)
	}
	domain, rest, found := strings.Cut(name, "/")
	if !found || !(strings.ContainsAny(domain, ".:") || domain == "localhost") {
		domain, rest = "docker.io", name
	}
	if domain == "index.docker.io" {
		domain = "docker.io"
	}
	if domain == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	if rest == "" || strings.ToLower(rest) != rest {
		return "", fmt.Errorf("invalid reference %q: repository must be lowercase", s)
	}
	out := domain + "/" + rest
	if hasDigest {
		if _, err := digest.Parse(dig); err != nil {
			return "", fmt.Errorf("invalid reference %q: %w", s, err)
		}
		if tag != "" {
			out += ":" + tag
		}
		return out + "@" + dig, nil
	}
	if tag == "" {
		tag = "latest"
	}
	return out + ":" + tag, nil
}

const refNameAnnotation = "org.opencontainers.image.ref.name"

func openFromLayout(dir, ref string, store bool) (*Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("open layout %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("open layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read %s/index.json: %w", dir, err)
	}
	var matches []v1.Descriptor
	want := ref
	if want == "" {
		want = "latest"
	}
	for _, d := range im.Manifests {
		name := d.Annotations[refNameAnnotation]
		if name == want || store && strings.Contains(want, "@") && want[strings.Index(want, "@")+1:] == d.Digest.String() {
			matches = append(matches, d)
		}
	}
	if len(matches) == 0 && ref == "" && len(im.Manifests) == 1 {
		matches = im.Manifests
	}
	if len(matches) == 0 {
		var names []string
		for _, d := range im.Manifests {
			if n := d.Annotations[refNameAnnotation]; n != "" {
				names = append(names, n)
			}
		}
		return nil, fmt.Errorf("image %q not found in %s (tags: %s)", want, dir, strings.Join(names, ", "))
	}
	for _, m := range matches[1:] {
		if m.Digest != matches[0].Digest {
			return nil, fmt.Errorf("tag %q in %s is ambiguous: it names %d different manifests", want, dir, len(matches))
		}
	}
	desc := matches[0]
	if err := checkDigest(desc.Digest); err != nil {
		return nil, err
	}
	if desc.MediaType.IsIndex() {
		desc, err = pickPlatform(p, desc)
		if err != nil {
			return nil, err
		}
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("%s: media type %q is not an image manifest", want, desc.MediaType)
	}
	if desc.Size > maxMetaBlob {
		return nil, fmt.Errorf("manifest %s is larger than %d bytes", desc.Digest, maxMetaBlob)
	}
	rawManifest, err := readBlob(p, desc.Digest)
	if err != nil {
		return nil, err
	}
	var man imgspec.Manifest
	if err := json.Unmarshal(rawManifest, &man); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if err := man.Config.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("manifest %s: config digest: %w", desc.Digest, err)
	}
	rawConfig, err := readBlob(p, v1.Hash{Algorithm: man.Config.Digest.Algorithm().String(), Hex: man.Config.Digest.Encoded()})
	if err != nil {
		return nil, err
	}
	var cfg imgspec.Image
	if err := json.Unmarshal(rawConfig, &cfg); err != nil {
		return nil, fmt.Errorf("image config %s: %w", man.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(man.Layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff ids in its config", desc.Digest, len(man.Layers), len(cfg.RootFS.DiffIDs))
	}
	img := &Image{Layout: dir, Ref: want, Manifest: digest.Digest(desc.Digest.String()), Config: &cfg}
	for i, l := range man.Layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("layer %d digest %q: %w", i+1, l.Digest, err)
		}
		if err := cfg.RootFS.DiffIDs[i].Validate(); err != nil {
			return nil, fmt.Errorf("layer %d diff id: %w", i+1, err)
		}
		h := v1.Hash{Algorithm: l.Digest.Algorithm().String(), Hex: l.Digest.Encoded()}
		img.Layers = append(img.Layers, unpack.Layer{
			Open:      func() (io.ReadCloser, error) { return p.Blob(h) },
			MediaType: l.MediaType,
			Digest:    l.Digest,
			DiffID:    cfg.RootFS.DiffIDs[i],
			Size:      l.Size,
		})
	}
	return img, nil
}

func checkDigest(h v1.Hash) error {
	if _, err := digest.Parse(h.String()); err != nil {
		return fmt.Errorf("descriptor digest %q: %w", h.String(), err)
	}
	return nil
}

// readBlob reads a small blob and verifies its digest.
func readBlob(p layout.Path, h v1.Hash) ([]byte, error) {
	if err := checkDigest(h); err != nil {
		return nil, err
	}
	rc, err := p.Blob(h)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxMetaBlob+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	if len(b) > maxMetaBlob {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", h, maxMetaBlob)
	}
	if got := digest.FromBytes(b); got.String() != h.String() {
		return nil, fmt.Errorf("blob %s: content digest is %s", h, got)
	}
	return b, nil
}

// pickPlatform chooses the host's platform from an image index, ignoring
// attestation entries (unknown/unknown).
func pickPlatform(p layout.Path, d v1.Descriptor) (v1.Descriptor, error) {
	raw, err := readBlob(p, d.Digest)
	if err != nil {
		return d, err
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		return d, fmt.Errorf("index %s: %w", d.Digest, err)
	}
	var avail []string
	for _, m := range idx.Manifests {
		if m.Platform == nil || m.Platform.OS == "unknown" {
			continue
		}
		avail = append(avail, m.Platform.String())
		if m.Platform.OS == runtime.GOOS && m.Platform.Architecture == runtime.GOARCH && m.MediaType.IsImage() {
			if err := checkDigest(m.Digest); err != nil {
				return d, err
			}
			return m, nil
		}
	}
	return d, fmt.Errorf("index %s has no image for %s/%s (available: %s)", d.Digest, runtime.GOOS, runtime.GOARCH, strings.Join(avail, ", "))
}

// LayoutDiffIDs returns the DiffIDs (hex) of every image in an OCI layout,
// through nested indexes; the layer cache keeps these on GC. A missing
// layout has none.
func LayoutDiffIDs(dir string) (map[string]bool, error) {
	out := map[string]bool{}
	if !isLayout(dir) {
		return out, nil
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var walk func(ds []v1.Descriptor, depth int) error
	walk = func(ds []v1.Descriptor, depth int) error {
		if depth > 4 {
			return errors.New("image indexes nested too deep")
		}
		for _, d := range ds {
			raw, err := readBlob(p, d.Digest)
			if err != nil {
				continue // blobs may be missing (a foreign layer store)
			}
			switch {
			case d.MediaType.IsIndex():
				var sub v1.IndexManifest
				if json.Unmarshal(raw, &sub) == nil {
					if err := walk(sub.Manifests, depth+1); err != nil {
						return err
					}
				}
			case d.MediaType.IsImage():
				var man imgspec.Manifest
				if json.Unmarshal(raw, &man) != nil || man.Config.Digest.Validate() != nil {
					continue
				}
				rawCfg, err := readBlob(p, v1.Hash{Algorithm: man.Config.Digest.Algorithm().String(), Hex: man.Config.Digest.Encoded()})
				if err != nil {
					continue
				}
				var cfg imgspec.Image
				if json.Unmarshal(rawCfg, &cfg) != nil {
					continue
				}
				for _, id := range cfg.RootFS.DiffIDs {
					if id.Validate() == nil {
						out[id.Encoded()] = true
					}
				}
			}
		}
		return nil
	}
	return out, walk(im.Manifests, 0)
}
