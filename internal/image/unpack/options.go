// Package unpack applies OCI image layers (tar, tar+gzip, tar+zstd) to a
// directory: the layer applier behind `berth unpack` and the layer cache.
//
// Every tar entry is resolved inside the target root with openat2(2)
// RESOLVE_IN_ROOT and then acted on through the resulting directory fd, never
// through a host path string, so no entry name, symlink or hardlink can reach
// outside the root (the containerd TestBreakouts and umoci CVE-2021-29136
// classes). Whiteouts and opaque directories follow the image-spec layer
// rules. Decompression and digest verification run in their own goroutines
// ahead of the applier, and small regular files are written by a worker pool,
// so a layer is applied at disk speed rather than at tar-parsing speed.
package unpack

import (
	"fmt"
	"strconv"
	"strings"
)

// Format is the on-disk form of applied whiteouts.
type Format int

const (
	// FormatPlain applies layers on top of each other in one directory:
	// whiteouts delete what lower layers wrote. The result is a finished
	// rootfs.
	FormatPlain Format = iota
	// FormatOverlay extracts one layer into its own directory, for use as an
	// overlayfs lower layer: a whiteout becomes a 0:0 character device and an
	// opaque directory gets the overlay.opaque xattr.
	FormatOverlay
)

// IDMapping maps Size ids starting at ContainerID to HostID (the uid_map line
// format, and umoci's --uid-map c:h[:n]).
type IDMapping struct {
	ContainerID, HostID, Size uint32
}

// ParseIDMapping parses "container:host[:size]"; size defaults to 1.
func ParseIDMapping(s string) (IDMapping, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 2 && len(parts) != 3 {
		return IDMapping{}, fmt.Errorf("invalid id mapping %q: want container:host[:size]", s)
	}
	var v [3]uint32
	v[2] = 1
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return IDMapping{}, fmt.Errorf("invalid id mapping %q: %q is not a number", s, p)
		}
		v[i] = uint32(n)
	}
	if v[2] == 0 {
		return IDMapping{}, fmt.Errorf("invalid id mapping %q: size must be at least 1", s)
	}
	if uint64(v[0])+uint64(v[2]) > 1<<32 || uint64(v[1])+uint64(v[2]) > 1<<32 {
		return IDMapping{}, fmt.Errorf("invalid id mapping %q: range overflows 32 bits", s)
	}
	return IDMapping{ContainerID: v[0], HostID: v[1], Size: v[2]}, nil
}

func (m IDMapping) String() string { return fmt.Sprintf("%d:%d:%d", m.ContainerID, m.HostID, m.Size) }

// toHost maps a container id to the host; no mappings is the identity.
func toHost(id uint32, maps []IDMapping) (uint32, bool) {
	if len(maps) == 0 {
		return id, true
	}
	for _, m := range maps {
		if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return m.HostID + (id - m.ContainerID), true
		}
	}
	return 0, false
}

// Default limits against decompression and tar bombs (CVE-2017-14992 class).
// They are far above any real image and far below what fills a disk.
const (
	DefaultMaxBytes   int64 = 64 << 30
	DefaultMaxEntries int64 = 8 << 20
	maxNameLen              = 4096 // PATH_MAX: a longer name cannot be created anyway
)

// Options control how layers are applied. The zero value applies as root,
// without id mapping, in FormatPlain, with the default limits.
type Options struct {
	// Rootless skips chown (ownership is recorded in the
	// user.rootlesscontainers xattr, as umoci does), tolerates EPERM on
	// trusted./security. xattrs, skips device nodes and keeps directories
	// owner-writable until the unpack ends.
	Rootless bool
	// UIDMaps and GIDMaps translate image ids to host ids.
	UIDMaps, GIDMaps []IDMapping
	// MaxBytes bounds the uncompressed bytes of all layers together
	// (default DefaultMaxBytes).
	MaxBytes int64
	// MaxEntries bounds the tar entries of all layers together (default
	// DefaultMaxEntries).
	MaxEntries int64
	// Format is the on-disk whiteout form (default FormatPlain).
	Format Format
	// OverlayUserXattr writes user.overlay.opaque instead of
	// trusted.overlay.opaque (FormatOverlay, for userxattr mounts).
	OverlayUserXattr bool
	// Lowers are the directories of already extracted lower layers, top
	// first (FormatOverlay): a hardlink to a file of a lower layer is
	// satisfied by copying it, since links cannot cross layer directories.
	Lowers []string
	// KeepDirlinks keeps a symlink to a directory when a layer has a
	// directory entry at its path (umoci --keep-dirlinks); by default the
	// image-spec rule applies and the symlink is replaced by a directory.
	KeepDirlinks bool
	// Workers is the number of goroutines writing small files (default 4).
	Workers int
}

func (o *Options) maxBytes() int64 {
	if o.MaxBytes > 0 {
		return o.MaxBytes
	}
	return DefaultMaxBytes
}

func (o *Options) maxEntries() int64 {
	if o.MaxEntries > 0 {
		return o.MaxEntries
	}
	return DefaultMaxEntries
}

// Stats describes what an unpack did.
type Stats struct {
	Layers         int
	Entries        int64
	Bytes          int64 // regular file content written
	SkippedDevices int64 // device nodes not created (rootless)
}
