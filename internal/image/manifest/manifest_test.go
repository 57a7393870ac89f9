package manifest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var (
	d1 = digest.FromString("1")
	d2 = digest.FromString("2")
)

func dockerManifest(layerType string) string {
	return `{"schemaVersion":2,"mediaType":"` + DockerManifest + `",
	"config":{"mediaType":"` + DockerConfig + `","digest":"` + d1.String() + `","size":10},
	"layers":[{"mediaType":"` + layerType + `","digest":"` + d2.String() + `","size":20}]}`
}

func TestParseErrors(t *testing.T) {
	big := `{"schemaVersion":2,"mediaType":"` + OCIManifest + `","annotations":{"a":"` + strings.Repeat("x", MaxSize) + `"}}`
	tests := []struct {
		name, raw, ct, msg string
	}{
		{"not json", `{"schemaVersion":`, "", "malformed manifest"},
		{"oversized", big, "", "byte limit"},
		{"schema1", `{"schemaVersion":1,"fsLayers":[]}`, "", "schema1"},
		{"unknown type", `{"schemaVersion":2,"mediaType":"application/x-foo"}`, "", "unknown manifest media type"},
		{"type mismatch", dockerManifest(DockerLayer), OCIManifest, "served as"},
		{"bad schema", strings.Replace(dockerManifest(DockerLayer), `"schemaVersion":2`, `"schemaVersion":3`, 1), "", "schemaVersion is 3"},
		{"unknown layer", dockerManifest("application/x-tar-bz2"), "", `unknown media type "application/x-tar-bz2"`},
		{"bad digest", strings.Replace(dockerManifest(DockerLayer), d2.String(), "sha256:zz", 1), "", "layers[0]"},
		{"bad config type", strings.Replace(dockerManifest(DockerLayer), DockerConfig, "application/x-cfg", 1), "", "config media type"},
		{"index bad child", `{"schemaVersion":2,"mediaType":"` + OCIIndex + `","manifests":[{"mediaType":"text/html","digest":"` + d1.String() + `","size":1}]}`, "", "index entry 0"},
		{"empty", `{}`, "", "no mediaType"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.raw), tt.ct)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.msg)
		}
	}
	if _, err := Parse([]byte(dockerManifest("x")), ""); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unknown layer type is not ErrUnsupported: %v", err)
	}
}

func TestToOCI(t *testing.T) {
	p, err := Parse([]byte(dockerManifest(DockerLayer)), "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8")
	if err != nil {
		t.Fatal(err)
	}
	o, err := ToOCI(p)
	if err != nil {
		t.Fatal(err)
	}
	if o.MediaType != OCIManifest || o.Manifest.Config.MediaType != OCIConfig || o.Manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Fatalf("converted manifest has types %s %s %s", o.MediaType, o.Manifest.Config.MediaType, o.Manifest.Layers[0].MediaType)
	}
	if o.Digest == p.Digest || o.Manifest.Layers[0].Digest != d2 || o.Manifest.Config.Digest != d1 {
		t.Fatal("conversion must change the manifest digest and keep blob digests")
	}
	var m map[string]any
	json.Unmarshal(o.Raw, &m)
	if m["schemaVersion"] != 2.0 {
		t.Fatalf("schemaVersion lost: %s", o.Raw)
	}
	again, _ := ToOCI(o)
	if again != o {
		t.Fatal("OCI manifest re-converted")
	}
	f, _ := Parse([]byte(dockerManifest(DockerForeignLayer)), "")
	of, _ := ToOCI(f)
	if of.Manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayerNonDistributableGzip { //nolint:staticcheck
		t.Fatalf("foreign layer became %s", of.Manifest.Layers[0].MediaType)
	}
}

func plat(os, arch, variant string) *ocispec.Platform {
	return &ocispec.Platform{OS: os, Architecture: arch, Variant: variant}
}

func TestSelect(t *testing.T) {
	ix := &ocispec.Index{Manifests: []ocispec.Descriptor{
		{Digest: "sha256:att", Platform: plat("unknown", "unknown", ""), Annotations: map[string]string{AttestationAnnotation: "attestation-manifest"}},
		{Digest: "sha256:amd", Platform: plat("linux", "amd64", "")},
		{Digest: "sha256:armv6", Platform: plat("linux", "arm", "v6")},
		{Digest: "sha256:armv7", Platform: plat("linux", "arm", "v7")},
		{Digest: "sha256:arm64", Platform: plat("linux", "arm64", "")},
		{Digest: "sha256:s390x", Platform: plat("linux", "s390x", "")},
	}}
	tests := []struct {
		want Platform
		dgst string
	}{
		{Platform{"linux", "amd64", ""}, "sha256:amd"},
		{Platform{"linux", "amd64", "v1"}, "sha256:amd"},
		{Platform{"linux", "arm64", "v8"}, "sha256:arm64"},
		{Platform{"linux", "arm64", ""}, "sha256:arm64"},
		{Platform{"linux", "arm", ""}, "sha256:armv6"},
		{Platform{"linux", "arm", "v7"}, "sha256:armv7"},
		{Platform{"linux", "arm", "7"}, "sha256:armv7"},
		{Platform{"linux", "aarch64", ""}, "sha256:arm64"},
	}
	for _, tt := range tests {
		d, err := Select(ix, tt.want)
		if err != nil || string(d.Digest) != tt.dgst {
			t.Errorf("Select(%s) = %s, %v; want %s", tt.want, d.Digest, err, tt.dgst)
		}
	}
	_, err := Select(ix, Platform{"linux", "riscv64", ""})
	if !errors.Is(err, ErrNoPlatform) || !strings.Contains(err.Error(), "linux/amd64, linux/arm/v6") || strings.Contains(err.Error(), "unknown") {
		t.Errorf("missing platform error = %v", err)
	}
}

func TestIndexToOCI(t *testing.T) {
	raw := `{"schemaVersion":2,"mediaType":"` + DockerList + `","manifests":[
	{"mediaType":"` + DockerManifest + `","digest":"` + d1.String() + `","size":5,"platform":{"os":"linux","architecture":"amd64"}},
	{"mediaType":"` + DockerManifest + `","digest":"` + d2.String() + `","size":6,"platform":{"os":"linux","architecture":"arm64"}}]}`
	p, err := Parse([]byte(raw), "")
	if err != nil {
		t.Fatal(err)
	}
	nd := digest.FromString("new")
	o, err := IndexToOCI(p, map[digest.Digest]ocispec.Descriptor{d1: {MediaType: OCIManifest, Digest: nd, Size: 7}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if o.MediaType != OCIIndex || len(o.Index.Manifests) != 1 || o.Index.Manifests[0].Digest != nd || o.Index.Manifests[0].Platform.Architecture != "amd64" || o.Index.Manifests[0].MediaType != OCIManifest {
		t.Fatalf("converted index: %s", o.Raw)
	}
}
