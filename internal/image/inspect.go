package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"berth/internal/image/layout"
	"berth/internal/image/manifest"
	"berth/internal/image/ref"
	"berth/internal/image/registry"
)

// Info is skopeo inspect's JSON output.
type Info struct {
	Name          string            `json:"Name,omitempty"`
	Tag           string            `json:"Tag,omitempty"`
	Digest        digest.Digest     `json:"Digest"`
	RepoTags      []string          `json:"RepoTags"`
	Created       *time.Time        `json:"Created,omitempty"`
	DockerVersion string            `json:"DockerVersion"`
	Labels        map[string]string `json:"Labels"`
	Architecture  string            `json:"Architecture"`
	Variant       string            `json:"Variant,omitempty"`
	Os            string            `json:"Os"`
	Layers        []string          `json:"Layers"`
	LayersData    []LayerInfo       `json:"LayersData"`
	Env           []string          `json:"Env"`
}

// LayerInfo describes one layer in Info.
type LayerInfo struct {
	MIMEType    string            `json:"MIMEType"`
	Digest      digest.Digest     `json:"Digest"`
	Size        int64             `json:"Size"`
	Annotations map[string]string `json:"Annotations"`
}

// RawManifest returns the top manifest exactly as the source stores it
// (no platform selection), as `inspect --raw` prints it.
func RawManifest(ctx context.Context, r ref.Ref, opts Options) ([]byte, error) {
	s, err := openSource(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	raw, _, err := s.Manifest(ctx, "")
	return raw, err
}

// imageFor resolves r to one image manifest (selecting the platform from an
// index) and returns it with the top manifest's digest.
func imageFor(ctx context.Context, s source, r ref.Ref, opts Options) (*manifest.Parsed, digest.Digest, error) {
	raw, mt, err := s.Manifest(ctx, "")
	if err != nil {
		return nil, "", err
	}
	top, err := manifest.Parse(raw, mt)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", r, err)
	}
	m := top
	if top.Kind == manifest.Index {
		d, err := manifest.Select(top.Index, fillPlatform(opts.Platform))
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", r, err)
		}
		c := &copier{src: s, opts: opts}
		if m, err = c.fetchManifest(ctx, d); err != nil {
			return nil, "", err
		}
		if m.Kind != manifest.Image {
			return nil, "", fmt.Errorf("%s: nested indexes are not supported by inspect", r)
		}
	}
	return m, top.Digest, nil
}

func readConfig(ctx context.Context, s source, m *manifest.Parsed) ([]byte, error) {
	d := m.Manifest.Config
	if d.Size > manifest.MaxConfigSize {
		return nil, fmt.Errorf("image config is %d bytes, more than the %d byte limit", d.Size, manifest.MaxConfigSize)
	}
	rc, err := s.Blob(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(layout.NewVerifier(rc, d, "image config "+d.Digest.String()))
}

// Config returns the image config blob of r's platform image
// (`inspect --config`).
func Config(ctx context.Context, r ref.Ref, opts Options) ([]byte, error) {
	s, err := openSource(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	m, _, err := imageFor(ctx, s, r, opts)
	if err != nil {
		return nil, err
	}
	return readConfig(ctx, s, m)
}

// Inspect describes r's platform image without fetching its layers. Tags
// are listed for docker:// references unless noTags.
func Inspect(ctx context.Context, r ref.Ref, opts Options, noTags bool) (*Info, error) {
	s, err := openSource(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	m, topDigest, err := imageFor(ctx, s, r, opts)
	if err != nil {
		return nil, err
	}
	cb, err := readConfig(ctx, s, m)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		ocispec.Image
		DockerVersion string `json:"docker_version"`
	}
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return nil, fmt.Errorf("%s: malformed image config: %w", r, err)
	}
	info := &Info{
		Digest:        topDigest,
		RepoTags:      []string{},
		Created:       cfg.Created,
		DockerVersion: cfg.DockerVersion,
		Labels:        cfg.Config.Labels,
		Architecture:  cfg.Architecture,
		Variant:       cfg.Variant,
		Os:            cfg.OS,
		Env:           cfg.Config.Env,
		Layers:        []string{},
		LayersData:    []LayerInfo{},
	}
	switch r.Transport {
	case ref.Docker:
		info.Name = r.Named.Name()
		if rs, ok := s.(*registrySource); ok && !noTags {
			if info.RepoTags, err = rs.c.ListTags(ctx); err != nil {
				return nil, err
			}
		}
	case ref.OCI, ref.OCIArchive:
		info.Tag = r.Tag
	}
	for _, l := range m.Manifest.Layers {
		info.Layers = append(info.Layers, l.Digest.String())
		info.LayersData = append(info.LayersData, LayerInfo{MIMEType: l.MediaType, Digest: l.Digest, Size: l.Size, Annotations: l.Annotations})
	}
	return info, nil
}

// ListTags lists the tags of a docker:// repository, or the images of a
// docker-archive or oci: layout.
func ListTags(ctx context.Context, r ref.Ref, opts registry.Options) ([]string, error) {
	switch r.Transport {
	case ref.Docker:
		c, err := registry.New(ctx, *r.Named, false, opts)
		if err != nil {
			return nil, err
		}
		tags, err := c.ListTags(ctx)
		if err != nil {
			return nil, notFound(err)
		}
		sort.Strings(tags)
		return tags, nil
	case ref.DockerArchive:
		s, err := openDockerArchive(ref.Ref{Transport: ref.DockerArchive, Path: r.Path, Index: 0})
		if err != nil {
			return nil, err
		}
		defer s.Close()
		return s.(*dockerArchiveSource).allTags(), nil
	}
	return nil, errors.New("list-tags works on docker:// repositories and docker-archive: files")
}
