// Package ref parses image references in skopeo's transport syntax
// (containers-transports(5)): docker://NAME, oci:PATH[:REF],
// oci-archive:FILE[:REF], docker-archive:FILE[:REF] and dir:PATH, and
// normalises Docker names the way the docker CLI and skopeo do
// ("alpine" is "docker.io/library/alpine:latest").
package ref

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Transport names where an image lives.
type Transport string

// The transports berth can read and write.
const (
	Docker        Transport = "docker"
	OCI           Transport = "oci"
	OCIArchive    Transport = "oci-archive"
	DockerArchive Transport = "docker-archive"
	Dir           Transport = "dir"
)

// Transports lists the supported transports in the order help texts show them.
var Transports = []Transport{Docker, OCI, OCIArchive, DockerArchive, Dir}

// DefaultRegistry is the registry a name without a domain belongs to. It is
// spelt "docker.io" (not ggcr's "index.docker.io") because that is what users,
// skopeo and auth.json files write.
const DefaultRegistry = "docker.io"

// Named is a normalised registry reference: registry host, repository path
// and either a tag or a digest (or both, "name:tag@digest").
type Named struct {
	Registry   string // "docker.io", "localhost:5000"
	Repository string // "library/alpine"
	Tag        string // "latest"; empty when only a digest was given
	Digest     string // "sha256:..."; empty unless pinned
}

// Name is "registry/repository", the part before the tag.
func (n Named) Name() string { return n.Registry + "/" + n.Repository }

// String is the full normalised reference: docker.io/library/alpine:latest,
// or docker.io/library/alpine@sha256:... when pinned by digest.
func (n Named) String() string {
	s := n.Name()
	if n.Tag != "" {
		s += ":" + n.Tag
	}
	if n.Digest != "" {
		s += "@" + n.Digest
	}
	return s
}

// Identifier is what the registry API takes after /manifests/: the digest if
// pinned, else the tag.
func (n Named) Identifier() string {
	if n.Digest != "" {
		return n.Digest
	}
	return n.Tag
}

// Ref is a parsed transport reference.
type Ref struct {
	Transport Transport
	// Named is set for docker:// and for a docker-archive REF that names an
	// image.
	Named *Named
	// Path is the directory or file of the path-based transports.
	Path string
	// Tag is the REF part of oci:/oci-archive: (the value of the
	// org.opencontainers.image.ref.name annotation); empty when not given.
	Tag string
	// Index is the "@N" manifest index of a docker-archive source, -1 if
	// not given.
	Index int
}

// String renders r back in transport syntax.
func (r Ref) String() string {
	switch r.Transport {
	case Docker:
		return "docker://" + r.Named.String()
	case OCI, OCIArchive:
		if r.Tag != "" {
			return string(r.Transport) + ":" + r.Path + ":" + r.Tag
		}
		return string(r.Transport) + ":" + r.Path
	case DockerArchive:
		switch {
		case r.Named != nil:
			return "docker-archive:" + r.Path + ":" + r.Named.String()
		case r.Index >= 0:
			return "docker-archive:" + r.Path + ":@" + strconv.Itoa(r.Index)
		}
		return "docker-archive:" + r.Path
	}
	return string(r.Transport) + ":" + r.Path
}

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid image reference")

func invalid(s, format string, a ...any) error {
	return fmt.Errorf("%w %q: %s", ErrInvalid, s, fmt.Sprintf(format, a...))
}

// Parse parses a reference with an explicit transport, as skopeo's copy
// arguments are written: "docker://alpine", "oci:./images/alpine:latest".
func Parse(s string) (Ref, error) {
	tr, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Ref{}, invalid(s, "no transport; write it as TRANSPORT:DETAILS, e.g. docker://%s (transports: %s)", s, transportList())
	}
	switch Transport(tr) {
	case Docker:
		if !strings.HasPrefix(rest, "//") {
			return Ref{}, invalid(s, "docker transport must be written docker://NAME")
		}
		n, err := ParseNamed(rest[2:])
		if err != nil {
			return Ref{}, err
		}
		return Ref{Transport: Docker, Named: &n, Index: -1}, nil
	case OCI, OCIArchive:
		// The path ends at the first colon, as in containers/image: a
		// layout path cannot contain ':', but the REF can (berth's own
		// store tags images "docker.io/library/alpine:latest").
		path, tag, _ := strings.Cut(rest, ":")
		if path == "" {
			return Ref{}, invalid(s, "%s transport needs a path", tr)
		}
		if tag != "" && !validTag(tag) {
			return Ref{}, invalid(s, "image reference %q in the layout must be letters, digits and ._-:/@+ (at most 512), starting with a letter or digit", tag)
		}
		return Ref{Transport: Transport(tr), Path: path, Tag: tag, Index: -1}, nil
	case DockerArchive:
		path, r, _ := strings.Cut(rest, ":")
		if path == "" {
			return Ref{}, invalid(s, "docker-archive transport needs a file path")
		}
		out := Ref{Transport: DockerArchive, Path: path, Index: -1}
		switch {
		case r == "":
		case strings.HasPrefix(r, "@"):
			i, err := strconv.Atoi(r[1:])
			if err != nil || i < 0 {
				return Ref{}, invalid(s, "%q is not a manifest index (@0, @1, ...)", r)
			}
			out.Index = i
		default:
			n, err := ParseNamed(r)
			if err != nil {
				return Ref{}, err
			}
			if n.Digest != "" {
				return Ref{}, invalid(s, "a docker-archive reference cannot contain a digest")
			}
			out.Named = &n
		}
		return out, nil
	case Dir:
		if rest == "" {
			return Ref{}, invalid(s, "dir transport needs a path")
		}
		return Ref{Transport: Dir, Path: rest, Index: -1}, nil
	}
	return Ref{}, invalid(s, "unknown transport %q (supported: %s)", tr, transportList())
}

// ParseImage parses what `berth pull` takes: a transport reference, or a
// bare Docker name, which means docker://NAME.
func ParseImage(s string) (Ref, error) {
	if tr, _, ok := strings.Cut(s, ":"); ok {
		for _, t := range Transports {
			if Transport(tr) == t {
				return Parse(s)
			}
		}
	}
	n, err := ParseNamed(s)
	if err != nil {
		return Ref{}, err
	}
	return Ref{Transport: Docker, Named: &n, Index: -1}, nil
}

func transportList() string {
	var s []string
	for _, t := range Transports {
		s = append(s, string(t))
	}
	return strings.Join(s, ", ")
}

var (
	// One path component of a repository, as distribution/reference
	// defines it: lowercase alphanumerics joined by ".", "_", "__" or
	// dashes.
	componentRE = lazyRE(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	// A registry host: DNS labels or an IPv6 literal in brackets, and an
	// optional port.
	domainRE = lazyRE(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$`)
	tagRE    = lazyRE(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	layoutRE = lazyRE(`^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,511}$`)
	digestRE = lazyRE(`^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)
)

// lazyRE compiles a pattern on first use: the binary is also the
// container's init, whose start-up should not pay for image parsing.
func lazyRE(pattern string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(pattern) })
}

func validTag(s string) bool { return layoutRE().MatchString(s) }

// ValidDigest reports whether d is a sha256 or sha512 digest in canonical
// (lowercase hex) form.
func ValidDigest(d string) bool { return digestRE().MatchString(d) }

// ParseNamed parses and normalises a Docker image name. A first path
// component that contains '.' or ':' or is "localhost" is a registry;
// otherwise the registry is docker.io, and single-component names on
// docker.io live under "library/". A missing tag and digest means ":latest".
func ParseNamed(s string) (Named, error) {
	if s == "" {
		return Named{}, invalid(s, "empty image name")
	}
	if len(s) > 4096 {
		return Named{}, invalid(s[:64]+"...", "reference is longer than 4096 bytes")
	}
	rest := s
	var n Named
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		n.Digest = rest[i+1:]
		rest = rest[:i]
		if !ValidDigest(n.Digest) {
			return Named{}, invalid(s, "digest %q is not sha256:<64 hex> or sha512:<128 hex>", n.Digest)
		}
	}
	// A tag follows the last colon that comes after the last slash; a
	// colon before it belongs to a registry port.
	if i := strings.LastIndex(rest, ":"); i >= 0 && i > strings.LastIndex(rest, "/") {
		n.Tag = rest[i+1:]
		rest = rest[:i]
		if !tagRE().MatchString(n.Tag) {
			return Named{}, invalid(s, "tag %q must be 1-128 of letters, digits, '_', '.', '-' and not start with '.' or '-'", n.Tag)
		}
	}
	if first, remainder, ok := strings.Cut(rest, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost" || first != strings.ToLower(first)) {
		if !domainRE().MatchString(first) {
			return Named{}, invalid(s, "registry %q is not a valid host[:port]", first)
		}
		n.Registry, rest = first, remainder
	} else {
		n.Registry = DefaultRegistry
	}
	// The docker CLI accepts these spellings of Docker Hub; store one.
	if n.Registry == "index.docker.io" || n.Registry == "registry-1.docker.io" {
		n.Registry = DefaultRegistry
	}
	if rest == "" {
		return Named{}, invalid(s, "no repository name")
	}
	for _, c := range strings.Split(rest, "/") {
		if !componentRE().MatchString(c) {
			if c != strings.ToLower(c) {
				return Named{}, invalid(s, "repository name must be lowercase")
			}
			return Named{}, invalid(s, "repository component %q must be lowercase letters and digits separated by '.', '_', '__' or '-'", c)
		}
	}
	if n.Registry == DefaultRegistry && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	n.Repository = rest
	if len(n.Name()) > 255 {
		return Named{}, invalid(s, "repository name is longer than 255 characters")
	}
	if n.Tag == "" && n.Digest == "" {
		n.Tag = "latest"
	}
	return n, nil
}
