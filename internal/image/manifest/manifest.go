// Package manifest parses, validates and converts image manifests and indexes
// (OCI image-spec and Docker schema2), and picks a platform from an index.
// Everything here is pure: bytes in, bytes or errors out.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types berth understands. The OCI ones come from image-spec; Docker's
// are spelled out because image-spec does not define them.
const (
	OCIManifest = ocispec.MediaTypeImageManifest
	OCIIndex    = ocispec.MediaTypeImageIndex
	OCIConfig   = ocispec.MediaTypeImageConfig
	OCIEmpty    = ocispec.MediaTypeEmptyJSON

	DockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	DockerList         = "application/vnd.docker.distribution.manifest.list.v2+json"
	DockerConfig       = "application/vnd.docker.container.image.v1+json"
	DockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	DockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	DockerSchema1      = "application/vnd.docker.distribution.manifest.v1+json"
	DockerSchema1Sig   = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// AcceptHeader is the Accept list for manifest requests: every manifest kind
// berth can copy, so a registry never falls back to schema1.
var AcceptHeader = strings.Join([]string{OCIIndex, OCIManifest, DockerList, DockerManifest}, ", ")

// MaxSize bounds a manifest or index, as containers/image does (4 MiB): a
// registry answering with more is broken or hostile, and the whole body is
// held in memory.
const MaxSize = 4 << 20

// MaxConfigSize bounds an image config blob for the same reason.
const MaxConfigSize = 8 << 20

// Kind says whether a manifest describes one image or a list of them.
type Kind int

// Manifest kinds.
const (
	Image Kind = iota + 1
	Index
)

// Parsed is a validated manifest. Docker schema2 manifests and lists have
// the same JSON shape as their OCI counterparts, so both use the OCI types;
// MediaType says which it really is.
type Parsed struct {
	Kind      Kind
	MediaType string
	Digest    digest.Digest
	Raw       []byte
	Manifest  *ocispec.Manifest // Kind == Image
	Index     *ocispec.Index    // Kind == Index
}

// IsDocker reports whether p uses Docker media types.
func (p *Parsed) IsDocker() bool { return p.MediaType == DockerManifest || p.MediaType == DockerList }

// Descriptor describes p itself.
func (p *Parsed) Descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: p.MediaType, Digest: p.Digest, Size: int64(len(p.Raw))}
}

// ErrUnsupported is wrapped by errors about media types berth will not copy.
var ErrUnsupported = errors.New("unsupported manifest")

// Parse validates raw as a manifest. contentType is the media type the
// source reported (the registry's Content-Type, a layout descriptor's
// mediaType); it may be empty or a generic JSON type, in which case the
// manifest's own mediaType field (or its shape) decides.
func Parse(raw []byte, contentType string) (*Parsed, error) {
	if len(raw) > MaxSize {
		return nil, fmt.Errorf("manifest is %d bytes, more than the %d byte limit", len(raw), MaxSize)
	}
	var probe struct {
		SchemaVersion *int            `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Config        json.RawMessage `json:"config"`
		Layers        json.RawMessage `json:"layers"`
		Manifests     json.RawMessage `json:"manifests"`
		FSLayers      json.RawMessage `json:"fsLayers"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("malformed manifest: %w", err)
	}
	ct := contentType
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	switch ct {
	case "", "application/json", "text/plain", "application/octet-stream":
		ct = ""
	}
	mt := probe.MediaType
	switch {
	case ct != "" && mt != "" && ct != mt:
		return nil, fmt.Errorf("malformed manifest: served as %q but its mediaType field says %q", ct, mt)
	case mt == "":
		mt = ct
	}
	if mt == "" {
		// OCI allows omitting mediaType; the shape decides.
		switch {
		case probe.FSLayers != nil:
			mt = DockerSchema1
		case probe.Manifests != nil:
			mt = OCIIndex
		case probe.Config != nil:
			mt = OCIManifest
		default:
			return nil, errors.New("malformed manifest: no mediaType, config or manifests")
		}
	}
	p := &Parsed{MediaType: mt, Digest: digest.FromBytes(raw), Raw: raw}
	switch mt {
	case OCIManifest, DockerManifest:
		if probe.Manifests != nil {
			return nil, fmt.Errorf("malformed manifest: %s has a manifests list", mt)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("malformed manifest: %w", err)
		}
		if err := checkSchema(probe.SchemaVersion); err != nil {
			return nil, err
		}
		if err := validateImage(&m); err != nil {
			return nil, err
		}
		p.Kind, p.Manifest = Image, &m
	case OCIIndex, DockerList:
		var ix ocispec.Index
		if err := json.Unmarshal(raw, &ix); err != nil {
			return nil, fmt.Errorf("malformed index: %w", err)
		}
		if err := checkSchema(probe.SchemaVersion); err != nil {
			return nil, err
		}
		for i, d := range ix.Manifests {
			if err := checkDescriptor(d); err != nil {
				return nil, fmt.Errorf("malformed index: manifests[%d]: %w", i, err)
			}
			switch d.MediaType {
			case OCIManifest, DockerManifest, OCIIndex, DockerList:
			default:
				return nil, fmt.Errorf("%w: index entry %d has media type %q", ErrUnsupported, i, d.MediaType)
			}
		}
		p.Kind, p.Index = Index, &ix
	case DockerSchema1, DockerSchema1Sig:
		return nil, fmt.Errorf("%w: Docker schema1 manifests are deprecated and not supported; ask the registry for schema2 or OCI", ErrUnsupported)
	default:
		return nil, fmt.Errorf("%w: unknown manifest media type %q", ErrUnsupported, mt)
	}
	return p, nil
}

func checkSchema(v *int) error {
	if v == nil || *v != 2 {
		got := "missing"
		if v != nil {
			got = fmt.Sprint(*v)
		}
		return fmt.Errorf("malformed manifest: schemaVersion is %s, want 2", got)
	}
	return nil
}

func checkDescriptor(d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("negative size %d", d.Size)
	}
	return nil
}

// AttestationAnnotation marks buildx attestation manifests in an index.
const AttestationAnnotation = "vnd.docker.reference.type"

func validateImage(m *ocispec.Manifest) error {
	if err := checkDescriptor(m.Config); err != nil {
		return fmt.Errorf("malformed manifest: config: %w", err)
	}
	if m.Config.Size > MaxConfigSize {
		return fmt.Errorf("image config is %d bytes, more than the %d byte limit", m.Config.Size, MaxConfigSize)
	}
	switch m.Config.MediaType {
	case OCIConfig, DockerConfig:
	case OCIEmpty:
		// An artifact; its layers may be anything.
		return validateLayers(m, true)
	default:
		return fmt.Errorf("%w: unknown config media type %q", ErrUnsupported, m.Config.MediaType)
	}
	return validateLayers(m, false)
}

func validateLayers(m *ocispec.Manifest, anyType bool) error {
	for i, l := range m.Layers {
		if err := checkDescriptor(l); err != nil {
			return fmt.Errorf("malformed manifest: layers[%d]: %w", i, err)
		}
		if !anyType && !KnownLayer(l.MediaType) {
			return fmt.Errorf("%w: layer %d (%s) has unknown media type %q", ErrUnsupported, i, l.Digest, l.MediaType)
		}
	}
	return nil
}

// KnownLayer reports whether mt is a layer media type berth can copy and
// unpack.
func KnownLayer(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
		ocispec.MediaTypeImageLayerNonDistributable, ocispec.MediaTypeImageLayerNonDistributableGzip, //nolint:staticcheck // still must be accepted
		ocispec.MediaTypeImageLayerNonDistributableZstd, //nolint:staticcheck
		DockerLayer, DockerForeignLayer,
		"application/vnd.in-toto+json": // buildx attestation layers
		return true
	}
	return false
}

// ociType maps a Docker media type to its OCI equivalent; others pass
// through unchanged.
func ociType(mt string) string {
	switch mt {
	case DockerManifest:
		return OCIManifest
	case DockerList:
		return OCIIndex
	case DockerConfig:
		return OCIConfig
	case DockerLayer:
		return ocispec.MediaTypeImageLayerGzip
	case DockerForeignLayer:
		return ocispec.MediaTypeImageLayerNonDistributableGzip //nolint:staticcheck
	}
	return mt
}

// ToOCI rewrites a Docker schema2 manifest with OCI media types, as skopeo
// does when writing an oci: layout. Blobs are unchanged (the Docker and OCI
// config formats are the same JSON); the manifest bytes, and so its digest,
// change. An OCI manifest is returned as is.
func ToOCI(p *Parsed) (*Parsed, error) {
	if p.Kind != Image {
		return nil, errors.New("ToOCI: not an image manifest")
	}
	if p.MediaType == OCIManifest {
		return p, nil
	}
	m := *p.Manifest
	m.MediaType = OCIManifest
	m.Config.MediaType = ociType(m.Config.MediaType)
	m.Layers = append([]ocispec.Descriptor(nil), m.Layers...)
	for i := range m.Layers {
		m.Layers[i].MediaType = ociType(m.Layers[i].MediaType)
	}
	return marshal(&m, OCIManifest)
}

// IndexToOCI rewrites an index with OCI media types and replaces each
// child's descriptor with children[old digest] when present (a child that
// was converted has a new digest and size). Children not in the map are
// dropped when keepOthers is false.
func IndexToOCI(p *Parsed, children map[digest.Digest]ocispec.Descriptor, keepOthers bool) (*Parsed, error) {
	if p.Kind != Index {
		return nil, errors.New("IndexToOCI: not an index")
	}
	ix := *p.Index
	ix.MediaType = OCIIndex
	ix.Manifests = nil
	for _, d := range p.Index.Manifests {
		nd, ok := children[d.Digest]
		if !ok {
			if !keepOthers {
				continue
			}
			nd = d
		}
		// Keep what the index said about the child (platform,
		// annotations); only identity and type change.
		d.Digest, d.Size, d.MediaType = nd.Digest, nd.Size, ociType(nd.MediaType)
		ix.Manifests = append(ix.Manifests, d)
	}
	return marshal(&ix, OCIIndex)
}

// UpdateIndex is IndexToOCI without the media type change, for
// destinations that keep Docker types: it only swaps child descriptors.
func UpdateIndex(p *Parsed, children map[digest.Digest]ocispec.Descriptor) (*Parsed, error) {
	changed := false
	for _, d := range p.Index.Manifests {
		if nd, ok := children[d.Digest]; ok && nd.Digest != d.Digest {
			changed = true
		}
	}
	if !changed {
		return p, nil
	}
	ix := *p.Index
	ix.Manifests = nil
	for _, d := range p.Index.Manifests {
		if nd, ok := children[d.Digest]; ok {
			d.Digest, d.Size, d.MediaType = nd.Digest, nd.Size, nd.MediaType
		}
		ix.Manifests = append(ix.Manifests, d)
	}
	return marshal(&ix, p.MediaType)
}

func marshal(v any, mt string) (*Parsed, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return Parse(raw, mt)
}
