package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"berth/internal/image/bundle"
	"berth/internal/image/layercache"
	"berth/internal/image/unpack"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"
)

func init() {
	flags := []cli.Flag{
		cli.StringFlag{Name: "image", Usage: "the image: `LAYOUT[:REF]` (an OCI layout, umoci's syntax) or a reference into berth's image store (alpine, docker.io/library/alpine:latest)"},
		cli.StringFlag{Name: "store", EnvVar: "BERTH_STORE", Value: bundle.DefaultStore, Usage: "berth's image store (an OCI layout)"},
		cli.BoolFlag{Name: "rootless", Usage: "unpack as an unprivileged user: no chown (ownership goes to the user.rootlesscontainers xattr), no device nodes, rootless config.json; implied when not root"},
		cli.StringSliceFlag{Name: "uid-map", Usage: "map image uids to host uids: `CONTAINER:HOST[:SIZE]` (repeatable); also written to config.json"},
		cli.StringSliceFlag{Name: "gid-map", Usage: "map image gids to host gids: `CONTAINER:HOST[:SIZE]` (repeatable)"},
		cli.BoolFlag{Name: "overlay", Usage: "make rootfs an overlayfs of cached layers plus a private upper dir (each layer is extracted once into the layer cache)"},
		cli.StringFlag{Name: "layer-cache", EnvVar: "BERTH_LAYERS", Value: layercache.DefaultDir, Usage: "layer cache `DIR` for --overlay"},
		cli.Int64Flag{Name: "max-size", Value: unpack.DefaultMaxBytes, Usage: "refuse images larger than `BYTES` uncompressed (decompression bombs)"},
		cli.Int64Flag{Name: "max-entries", Value: unpack.DefaultMaxEntries, Usage: "refuse images with more than `N` tar entries"},
		cli.BoolFlag{Name: "keep-dirlinks", Usage: "keep a symlink to a directory when a later layer has a directory at its path (umoci --keep-dirlinks); by default it is replaced"},
	}
	register(cli.Command{
		Name:      "unpack",
		Usage:     "unpack an OCI image into a runtime bundle (rootfs/ + config.json)",
		ArgsUsage: "BUNDLE",
		Description: `Applies the image's layers into BUNDLE/rootfs and writes BUNDLE/config.json
from the image config (user and groups resolved from the rootfs' /etc/passwd
and /etc/group, env, working dir, entrypoint + cmd, exposed ports, volumes as
tmpfs mounts, labels and annotations, stop signal) on top of berth's default
spec ("berth spec") with a writable root, as umoci writes it (--readonly=true
for a read-only one). Image labels in namespaces runtimes act on (containerd.io/,
run.oci., io.kubernetes., org.systemd.property., bundle ...) are dropped.

Layers may be gzip, zstd or uncompressed. gzip layers are inflated by igzip
(ISA-L, Debian package "isal") when it is installed, about three times faster
than in Go, as containerd uses unpigz; BERTH_NO_IGZIP=1 keeps inflation in
berth. Every blob digest and DiffID is verified by berth, every tar entry is resolved inside the rootfs (no "..", symlink or
hardlink can escape), and a failed unpack leaves no bundle behind. BUNDLE must
not exist or be empty; it is created with mode 0700.

Unlike umoci, berth writes no umoci.json and no mtree manifest (the mtree walk
is a third of umoci's time and is only needed by "umoci repack"). An overlay
bundle (--overlay) instead keeps BUNDLE/.berth-overlay/ (upper and work dirs
and the list of cached layers); remove it with "berth bundle rm".

The config edit flags (--netns, --cap-add, --args ...) are applied to the
generated config, as "berth bundle edit" would.

Example:

    # berth unpack --image ./images/alpine:latest ./bundles/alpine
    # berth unpack --image alpine --overlay --netns /var/run/netns/web \
        --terminal=false ./bundles/web
    # runc run -b ./bundles/alpine alpine`,
		Flags:  append(flags, configEditFlags...),
		Action: unpackAction,
	})
}

func idMaps(c *cli.Context, name string) ([]unpack.IDMapping, []specs.LinuxIDMapping, error) {
	var um []unpack.IDMapping
	var sm []specs.LinuxIDMapping
	for _, s := range c.StringSlice(name) {
		m, err := unpack.ParseIDMapping(s)
		if err != nil {
			return nil, nil, fmt.Errorf("--%s: %w", name, err)
		}
		um = append(um, m)
		sm = append(sm, specs.LinuxIDMapping{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size})
	}
	return um, sm, nil
}

func unpackAction(c *cli.Context) (retErr error) {
	if c.NArg() != 1 {
		return fmt.Errorf("unpack: expects exactly one argument, the bundle directory (got %d)", c.NArg())
	}
	if c.String("image") == "" {
		return errors.New("unpack: --image is required")
	}
	edit, _, err := editFromFlags(c)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	uids, suids, err := idMaps(c, "uid-map")
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	gids, sgids, err := idMaps(c, "gid-map")
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	rootless := c.Bool("rootless") || os.Geteuid() != 0
	overlay := c.Bool("overlay")
	if overlay && c.Bool("keep-dirlinks") {
		return errors.New("unpack: --keep-dirlinks does not apply to --overlay (overlayfs merges the layers: an upper directory replaces a lower symlink)")
	}
	if overlay && os.Geteuid() != 0 {
		return errors.New("unpack: --overlay needs root (an overlay mount)")
	}
	bundleDir, err := filepath.Abs(c.Args().First())
	if err != nil {
		return err
	}
	start := time.Now()
	img, err := bundle.OpenImage(c.String("image"), c.String("store"))
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	created, err := makeBundleDir(bundleDir)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	rootfs := filepath.Join(bundleDir, "rootfs")
	mountedOverlay := false
	defer func() {
		if retErr == nil {
			return
		}
		var rerr error
		if mountedOverlay {
			rerr = layercache.RemoveBundle(bundleDir)
		} else if created {
			rerr = os.RemoveAll(bundleDir)
		} else {
			rerr = emptyDir(bundleDir)
		}
		if rerr != nil {
			retErr = errors.Join(retErr, fmt.Errorf("cleaning up %s: %w", bundleDir, rerr))
		}
	}()
	opts := unpack.Options{Rootless: rootless, UIDMaps: uids, GIDMaps: gids, KeepDirlinks: c.Bool("keep-dirlinks"),
		MaxBytes: c.Int64("max-size"), MaxEntries: c.Int64("max-entries")}
	// An interrupted unpack is a failed one: cancel the decoders so the
	// half-built rootfs and bundle are removed instead of left behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if overlay {
		cache, err := layercache.Open(c.String("layer-cache"))
		if err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		unlock, err := cache.Lock(false)
		if err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		defer unlock()
		keys, n, err := cache.Ensure(ctx, img.Layers, opts)
		if err != nil {
			return fmt.Errorf("unpack: caching layers: %w", err)
		}
		if err := cache.MountBundle(bundleDir, keys); err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		mountedOverlay = true
		log.Debugf("unpack: overlay of %d layers (%d newly extracted)", len(keys), n)
	} else {
		st, err := unpack.Unpack(ctx, rootfs, img.Layers, opts)
		if err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		log.Debugf("unpack: %d layers, %d entries, %d bytes, %d device nodes skipped", st.Layers, st.Entries, st.Bytes, st.SkippedDevices)
	}
	s, err := bundle.FromImage(img.Config, rootfs, bundle.ConvertOptions{Rootless: rootless, UIDMappings: suids, GIDMappings: sgids})
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	if err := edit.Apply(s); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	if err := bundle.Save(bundleDir, s); err != nil {
		return fmt.Errorf("unpack: writing config.json: %w", err)
	}
	log.Debugf("unpack: %s (%s) -> %s in %v", img.Ref, img.Manifest, bundleDir, time.Since(start))
	return nil
}

// makeBundleDir creates the bundle with mode 0700 (it will hold setuid
// binaries: umoci#181), or accepts an existing empty directory.
func makeBundleDir(dir string) (bool, error) {
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return false, err
	}
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != io.EOF {
		return false, fmt.Errorf("bundle %s already exists and is not empty", dir)
	}
	return false, os.Chmod(dir, 0o700)
}

func emptyDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, n)))
	}
	return errors.Join(errs...)
}
