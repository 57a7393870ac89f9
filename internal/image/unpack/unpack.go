package unpack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// readAhead is how many layers decode ahead of the one being applied, and
// pipeDepth how many 1 MiB chunks each may buffer: enough to keep both cores
// busy on many-layer images with bounded memory (about 64 MiB).
const (
	readAhead = 2
	pipeDepth = 16
)

// Apply applies one uncompressed tar stream to root, which must exist.
// It is the building block tests and the layer cache use; Unpack is the
// whole-image entry point.
func Apply(root string, r io.Reader, opts Options) (Stats, error) {
	a, err := newApplier(root, opts)
	if err != nil {
		return Stats{}, err
	}
	defer a.close()
	if err := a.applyLayer(r); err != nil {
		return a.stats, err
	}
	a.stats.Layers = 1
	return a.stats, a.finish()
}

// Unpack creates rootfs (it must not exist, or be an empty directory) and
// applies layers in order, bottom first. On any error — a hostile entry, a
// digest mismatch, a limit — the half-built rootfs is removed, so a rootfs
// that exists is a complete one.
func Unpack(ctx context.Context, rootfs string, layers []Layer, opts Options) (st Stats, retErr error) {
	created, err := makeRoot(rootfs)
	if err != nil {
		return st, err
	}
	defer func() {
		if retErr != nil {
			if rerr := removeTree(rootfs, created); rerr != nil {
				retErr = errors.Join(retErr, fmt.Errorf("removing half-built rootfs: %w", rerr))
			}
		}
	}()
	a, err := newApplier(rootfs, opts)
	if err != nil {
		return st, err
	}
	defer a.close()
	if err := a.ownImplicit([]string{"/"}); err != nil {
		return st, err
	}

	pipes := make([]*pipe, len(layers))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := func(i int) {
		if i >= len(layers) || pipes[i] != nil {
			return
		}
		pipes[i] = newPipe(pipeDepth, layers[i].DiffID)
		go layers[i].produce(ctx, pipes[i], opts.maxBytes())
	}
	defer func() {
		// Stop and drain producers still running after an error.
		for _, p := range pipes {
			if p != nil {
				p.drain()
			}
		}
	}()
	for i := 0; i <= readAhead; i++ {
		start(i)
	}
	for i := range layers {
		start(i + readAhead)
		if err := a.applyLayer(pipes[i]); err != nil {
			return a.stats, fmt.Errorf("layer %d (%s): %w", i+1, layers[i].Digest, err)
		}
		a.stats.Layers++
	}
	if err := a.finish(); err != nil {
		return a.stats, err
	}
	return a.stats, nil
}

// makeRoot creates the rootfs directory, or accepts an existing empty one.
// It reports whether it created it (so rollback removes only what it made).
func makeRoot(rootfs string) (bool, error) {
	err := os.Mkdir(rootfs, 0o755)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return false, fmt.Errorf("create rootfs: %w", err)
	}
	f, err := os.Open(rootfs)
	if err != nil {
		return false, fmt.Errorf("create rootfs: %w", err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return false, fmt.Errorf("rootfs %s already exists and is not empty", rootfs)
	}
	return false, nil
}

// removeTree removes a half-built tree. os.RemoveAll never follows
// symlinks, so hostile links in it cannot redirect the removal; rootless
// unpacks keep directories owner-writable until the end, so it can.
func removeTree(root string, created bool) error {
	if created {
		return os.RemoveAll(root)
	}
	f, err := os.Open(root)
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
		errs = append(errs, os.RemoveAll(root+"/"+n))
	}
	return errors.Join(errs...)
}

// ApplyLayer decompresses, verifies and applies one layer blob to root,
// which must exist (the layer cache extracts each layer alone). Decoding
// runs in its own goroutine ahead of the file system work.
func ApplyLayer(ctx context.Context, root string, l Layer, opts Options) (Stats, error) {
	a, err := newApplier(root, opts)
	if err != nil {
		return Stats{}, err
	}
	defer a.close()
	p := newPipe(pipeDepth, l.DiffID)
	go l.produce(ctx, p, opts.maxBytes())
	defer p.drain()
	if err := a.applyLayer(p); err != nil {
		return a.stats, err
	}
	a.stats.Layers = 1
	return a.stats, a.finish()
}
