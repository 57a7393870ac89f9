package manifest

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Platform is what an index entry is selected by.
type Platform struct {
	OS, Architecture, Variant string
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Host is the platform berth runs on. go-containerregistry would default to
// linux/amd64 whatever the host, so callers always pass a platform.
func Host() Platform {
	p := Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	switch p.Architecture {
	case "arm64":
		p.Variant = "v8"
	case "arm":
		p.Variant = "v7"
	}
	return p
}

// ParsePlatform parses "os/arch[/variant]".
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// normalise maps the spellings that mean the same platform onto one, as
// containerd's platforms package does: arm64 is v8 unless said otherwise,
// 32-bit arm defaults to v7, amd64 without a variant is v1.
func normalise(p Platform) Platform {
	p.OS = strings.ToLower(p.OS)
	p.Architecture = strings.ToLower(p.Architecture)
	switch p.Architecture {
	case "aarch64":
		p.Architecture = "arm64"
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	}
	switch p.Architecture {
	case "arm64":
		if p.Variant == "" || p.Variant == "8" {
			p.Variant = "v8"
		}
	case "arm":
		if p.Variant == "" {
			p.Variant = "v7"
		} else if !strings.HasPrefix(p.Variant, "v") {
			p.Variant = "v" + p.Variant
		}
	case "amd64":
		if p.Variant == "" {
			p.Variant = "v1"
		}
	}
	return p
}

// Matches reports whether an index entry's platform satisfies want. An empty
// want.Variant accepts any variant of the architecture.
func Matches(have *ocispec.Platform, want Platform) bool {
	if have == nil {
		return false
	}
	h := normalise(Platform{OS: have.OS, Architecture: have.Architecture, Variant: have.Variant})
	wantVariant := want.Variant
	w := normalise(want)
	if h.OS != w.OS || h.Architecture != w.Architecture {
		return false
	}
	return wantVariant == "" || h.Variant == w.Variant
}

// IsAttestation reports whether an index entry is a buildx attestation (or
// another unknown/unknown artifact) rather than a runnable image.
func IsAttestation(d ocispec.Descriptor) bool {
	if _, ok := d.Annotations[AttestationAnnotation]; ok {
		return true
	}
	return d.Platform != nil && d.Platform.OS == "unknown" && d.Platform.Architecture == "unknown"
}

// ErrNoPlatform is wrapped when an index has no entry for the platform.
var ErrNoPlatform = errors.New("no image for platform")

// Select returns the first index entry for want (registries list the
// preferred variant first), skipping attestations. The error lists the
// platforms the index does have.
func Select(ix *ocispec.Index, want Platform) (ocispec.Descriptor, error) {
	var available []string
	for _, d := range ix.Manifests {
		if IsAttestation(d) {
			continue
		}
		if Matches(d.Platform, want) {
			return d, nil
		}
		if d.Platform != nil {
			available = append(available, Platform{OS: d.Platform.OS, Architecture: d.Platform.Architecture, Variant: d.Platform.Variant}.String())
		}
	}
	sort.Strings(available)
	if len(available) == 0 {
		return ocispec.Descriptor{}, fmt.Errorf("%w %s: the index lists no platforms", ErrNoPlatform, want)
	}
	return ocispec.Descriptor{}, fmt.Errorf("%w %s (available: %s); choose one with --override-os/--override-arch/--override-variant or copy all with --all", ErrNoPlatform, want, strings.Join(available, ", "))
}
