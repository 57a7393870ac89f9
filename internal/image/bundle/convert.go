// Package bundle turns an OCI image config into a runtime bundle's
// config.json (the image-spec conversion rules, on top of berth's default
// spec) and edits the config.json of any bundle, atomically.
package bundle

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"berth/internal/spec"

	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Annotation keys the conversion writes (image-spec conversion.md).
const (
	AnnotationOS           = "org.opencontainers.image.os"
	AnnotationArch         = "org.opencontainers.image.architecture"
	AnnotationVariant      = "org.opencontainers.image.variant"
	AnnotationOSVersion    = "org.opencontainers.image.os.version"
	AnnotationOSFeatures   = "org.opencontainers.image.os.features"
	AnnotationAuthor       = "org.opencontainers.image.author"
	AnnotationCreated      = "org.opencontainers.image.created"
	AnnotationStopSignal   = "org.opencontainers.image.stopSignal"
	AnnotationExposedPorts = "org.opencontainers.image.exposedPorts"
)

// reservedLabelPrefixes are annotation namespaces that runtimes and shims act
// on. An image label there would let an image author steer the host
// (CVE-2026-53488: a containerd.io/ label chose a logger binary), so image
// labels in them are dropped instead of becoming annotations.
var reservedLabelPrefixes = []string{
	"containerd.io/", "io.containerd.", "run.oci.", "io.kubernetes.", "io.podman.",
	"org.systemd.property.", "org.criu.config", "bundle", "berth.",
}

// IsReservedLabel reports whether an image label key is dropped.
func IsReservedLabel(k string) bool {
	for _, p := range reservedLabelPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// ConvertOptions adjust the generated config.
type ConvertOptions struct {
	// Rootless starts from the rootless default spec (user namespace mapping
	// the caller to root, no network namespace).
	Rootless bool
	// UIDMappings/GIDMappings, when set, give the container a user
	// namespace with these maps (matching an unpack with --uid-map).
	UIDMappings, GIDMappings []specs.LinuxIDMapping
}

// FromImage builds config.json for an image whose rootfs is at rootfs (used
// only to resolve Config.User from its /etc/passwd and /etc/group).
//
// The base is berth's default spec ("berth spec", runc's document) with a
// writable root, as umoci's unpack writes it: an image's programs write to
// their root (nginx's /var/lib/nginx, a package cache), and the root of an
// unpacked bundle is the user's own copy. What still differs from umoci on
// purpose: the hostname is runc's "runc" (umoci: "umoci-default"); no
// inheritable or ambient capabilities (umoci gives its three there too, which
// would hand them to a non-root user's programs); runc's longer list of
// masked paths (/proc/acpi, /proc/asound, /proc/keys are masked, not just
// read-only); annotations with empty values are left out.
func FromImage(img *imgspec.Image, rootfs string, o ConvertOptions) (*specs.Spec, error) {
	s := spec.Default(o.Rootless)
	s.Root.Readonly = false
	c := img.Config
	p := s.Process

	// Env: the image's values win; defaults only fill names it lacks.
	env := append([]string(nil), c.Env...)
	for _, d := range p.Env {
		if !hasEnv(env, envName(d)) {
			env = append(env, d)
		}
	}
	p.Env = env

	if c.WorkingDir != "" {
		p.Cwd = path.Clean("/" + c.WorkingDir)
	}
	if args := append(append([]string(nil), c.Entrypoint...), c.Cmd...); len(args) > 0 {
		p.Args = args
	}

	u, err := ResolveUser(rootfs, c.User)
	if err != nil {
		return nil, fmt.Errorf("resolving image user %q: %w", c.User, err)
	}
	p.User = specs.User{UID: u.UID, GID: u.GID, AdditionalGids: u.AdditionalGids}
	if u.Home != "" && !hasEnv(p.Env, "HOME") {
		p.Env = append(p.Env, "HOME="+u.Home)
	}

	// Volumes become private tmpfs mounts, as umoci does; the path is made
	// absolute and clean so it names a place inside the rootfs.
	vols := make([]string, 0, len(c.Volumes))
	for v := range c.Volumes {
		vols = append(vols, path.Clean("/"+v))
	}
	sort.Strings(vols)
	for _, v := range vols {
		if v == "/" {
			continue
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: v, Type: "tmpfs", Source: "tmpfs",
			Options: []string{"rw", "nosuid", "nodev", "noexec", "relatime"}})
	}

	ann := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			ann[k] = v
		}
	}
	set(AnnotationOS, img.OS)
	set(AnnotationArch, img.Architecture)
	set(AnnotationVariant, img.Variant)
	set(AnnotationOSVersion, img.OSVersion)
	set(AnnotationOSFeatures, strings.Join(img.OSFeatures, ","))
	set(AnnotationAuthor, img.Author)
	if img.Created != nil && !img.Created.IsZero() {
		set(AnnotationCreated, img.Created.UTC().Format("2006-01-02T15:04:05Z07:00"))
	}
	set(AnnotationStopSignal, c.StopSignal)
	if len(c.ExposedPorts) > 0 {
		ports := make([]string, 0, len(c.ExposedPorts))
		for k := range c.ExposedPorts {
			ports = append(ports, k)
		}
		sort.Strings(ports)
		set(AnnotationExposedPorts, strings.Join(ports, ","))
	}
	// Labels win over the derived keys (umoci 0.6.0 precedence).
	for k, v := range c.Labels {
		if !IsReservedLabel(k) {
			ann[k] = v
		}
	}
	if len(ann) > 0 {
		s.Annotations = ann
	}

	if len(o.UIDMappings) > 0 || len(o.GIDMappings) > 0 {
		if !hasNamespace(s, specs.UserNamespace) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		}
		s.Linux.UIDMappings = o.UIDMappings
		s.Linux.GIDMappings = o.GIDMappings
	}
	return s, nil
}

func envName(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return k
}

func hasEnv(env []string, name string) bool {
	for _, e := range env {
		if envName(e) == name {
			return true
		}
	}
	return false
}

func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	if s.Linux == nil {
		return false
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == t {
			return true
		}
	}
	return false
}
