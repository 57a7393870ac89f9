// Package layercache keeps every image layer extracted once, in a
// content-addressed directory keyed by its DiffID, and builds bundles whose
// rootfs is an overlayfs of cached layers plus a private upper directory:
// a cached image becomes a bundle in milliseconds, whatever its size.
//
// Layout of the cache directory:
//
//	lock                    flock: shared while using layers, exclusive for rm/gc
//	sha256/<key>/root/      one extracted layer (overlay whiteout format)
//	tmp/                    extractions in progress (renamed into sha256/ when done)
//	refs/<id>.json          one per overlay bundle: which layers it mounts
//
// <key> is the DiffID hex, suffixed with a hash of the id mapping when the
// layer was extracted with one, since ownership is baked into the files.
package layercache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"berth/internal/atomicfile"
	"berth/internal/image/unpack"
)

// DefaultDir is where the cache lives unless BERTH_LAYERS or a flag says
// otherwise.
const DefaultDir = "/var/lib/berth/layers"

// Dir returns $BERTH_LAYERS or DefaultDir.
func Dir() string {
	if d := os.Getenv("BERTH_LAYERS"); d != "" {
		return d
	}
	return DefaultDir
}

// Cache is an open layer cache.
type Cache struct {
	dir string
}

// Open creates (mode 0700: the cache holds setuid binaries of every image,
// umoci#181) or opens the cache at dir.
func Open(dir string) (*Cache, error) {
	for _, d := range []string{dir, filepath.Join(dir, "sha256"), filepath.Join(dir, "tmp"), filepath.Join(dir, "refs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("layer cache: %w", err)
		}
	}
	return &Cache{dir: dir}, nil
}

// Lock takes the cache lock: shared to use layers, exclusive to delete.
// The returned function releases it.
func (c *Cache) Lock(exclusive bool) (func(), error) {
	f, err := os.OpenFile(filepath.Join(c.dir, "lock"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("layer cache lock: %w", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("layer cache lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// Key names a layer's cache entry for the given unpack options.
func Key(diffID digest.Digest, opts unpack.Options) string {
	k := diffID.Encoded()
	if len(opts.UIDMaps) == 0 && len(opts.GIDMaps) == 0 && !opts.Rootless {
		return k
	}
	h := sha256.New()
	fmt.Fprintf(h, "rootless=%v\n", opts.Rootless)
	for _, m := range opts.UIDMaps {
		fmt.Fprintf(h, "u%s\n", m)
	}
	for _, m := range opts.GIDMaps {
		fmt.Fprintf(h, "g%s\n", m)
	}
	return k + "-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// LayerDir is the extracted root of a cache entry.
func (c *Cache) LayerDir(key string) string { return filepath.Join(c.dir, "sha256", key, "root") }

func validKey(key string) bool {
	hexPart, suffix, _ := strings.Cut(key, "-")
	if len(hexPart) != 64 && len(hexPart) != 128 || len(suffix) > 12 { // sha256 or sha512
		return false
	}
	_, err := hex.DecodeString(hexPart + suffix)
	return err == nil
}

// Ensure makes sure every layer (bottom first) is in the cache, extracting
// those that are missing, and returns their keys. The caller holds a shared
// lock. Missing layers are extracted in parallel (each into its own
// directory); the rare layer that hardlinks into a lower layer not yet
// extracted is redone once all lower layers are in. Concurrent extractions
// of the same layer by two processes are harmless: each writes its own temp
// directory and the first rename wins.
func (c *Cache) Ensure(ctx context.Context, layers []unpack.Layer, opts unpack.Options) (keys []string, extracted int, err error) {
	opts.Format = unpack.FormatOverlay
	opts.OverlayUserXattr = opts.Rootless
	lowersOf := make([][]string, len(layers)) // top first, for hardlinks into lower layers
	var missing []int
	for i, l := range layers {
		if l.DiffID == "" {
			return nil, 0, fmt.Errorf("layer %d has no diff id", i+1)
		}
		if err := l.DiffID.Validate(); err != nil {
			return nil, 0, fmt.Errorf("layer %d: %w", i+1, err)
		}
		key := Key(l.DiffID, opts)
		for j := len(keys) - 1; j >= 0; j-- {
			lowersOf[i] = append(lowersOf[i], c.LayerDir(keys[j]))
		}
		keys = append(keys, key)
		if _, err := os.Lstat(c.LayerDir(key)); err != nil {
			missing = append(missing, i)
		}
	}
	extractOne := func(i int) error {
		o := opts
		o.Lowers = lowersOf[i]
		if err := c.extract(ctx, keys[i], layers[i], o); err != nil {
			return fmt.Errorf("layer %d (%s): %w", i+1, layers[i].Digest, err)
		}
		return nil
	}
	var (
		mu    sync.Mutex
		redo  []int
		g     errgroup.Group
		first error
	)
	g.SetLimit(extractJobs)
	for _, i := range missing {
		g.Go(func() error {
			err := extractOne(i)
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, unpack.ErrHardlinkLower) {
				redo = append(redo, i)
				return nil
			}
			if err != nil && first == nil {
				first = err
			}
			return err
		})
	}
	g.Wait()
	if first != nil {
		return nil, 0, first
	}
	sort.Ints(redo)
	for _, i := range redo {
		if err := extractOne(i); err != nil {
			return nil, 0, err
		}
	}
	return keys, len(missing), nil
}

// extractJobs bounds parallel layer extractions: each already runs its
// decoder and writers concurrently.
const extractJobs = 3

func (c *Cache) extract(ctx context.Context, key string, l unpack.Layer, opts unpack.Options) (retErr error) {
	tmp, err := os.MkdirTemp(filepath.Join(c.dir, "tmp"), key[:12]+"-")
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil || tmp != "" {
			os.RemoveAll(tmp)
		}
	}()
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	if _, err := unpack.ApplyLayer(ctx, root, l, opts); err != nil {
		return err
	}
	entry := filepath.Join(c.dir, "sha256", key)
	if err := os.Rename(tmp, entry); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTEMPTY) {
			return nil // another process extracted it first
		}
		return err
	}
	tmp = ""
	return nil
}

// Entry describes one cached layer.
type Entry struct {
	Key     string
	Size    int64 // bytes of file content
	Created time.Time
	Users   []string // overlay bundles mounting it
}

// List returns the cached layers, with the bundles using each.
func (c *Cache) List() ([]Entry, error) {
	des, err := os.ReadDir(filepath.Join(c.dir, "sha256"))
	if err != nil {
		return nil, err
	}
	users, err := c.users()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, d := range des {
		if !validKey(d.Name()) {
			continue
		}
		e := Entry{Key: d.Name(), Users: users[d.Name()]}
		if fi, err := d.Info(); err == nil {
			e.Created = fi.ModTime()
		}
		filepath.WalkDir(c.LayerDir(d.Name()), func(_ string, de fs.DirEntry, err error) error {
			if err == nil && de.Type().IsRegular() {
				if fi, err := de.Info(); err == nil {
					e.Size += fi.Size()
				}
			}
			return nil
		})
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Remove deletes one cached layer; a layer an overlay bundle mounts is kept
// unless force. The caller holds the exclusive lock.
func (c *Cache) Remove(key string, force bool) error {
	if !validKey(key) {
		return fmt.Errorf("invalid layer key %q", key)
	}
	entry := filepath.Join(c.dir, "sha256", key)
	if _, err := os.Lstat(entry); err != nil {
		return fmt.Errorf("layer %s: %w", key, fs.ErrNotExist)
	}
	users, err := c.users()
	if err != nil {
		return err
	}
	if u := users[key]; len(u) > 0 && !force {
		return fmt.Errorf("layer %s is in use by %s", key, strings.Join(u, ", "))
	}
	return c.removeEntry(entry)
}

// removeEntry renames the entry away first so that a half-removed layer is
// never seen as cached.
func (c *Cache) removeEntry(entry string) error {
	doomed := filepath.Join(c.dir, "tmp", "rm-"+filepath.Base(entry))
	if err := os.Rename(entry, doomed); err != nil {
		return err
	}
	return os.RemoveAll(doomed)
}

// GC removes every cached layer that no overlay bundle uses and that is not
// in keep (DiffID hex of images still in the store), plus leftovers of
// interrupted extractions and refs of bundles that no longer exist. The
// caller holds the exclusive lock. It returns the removed keys.
func (c *Cache) GC(keep map[string]bool) ([]string, error) {
	tmp := filepath.Join(c.dir, "tmp")
	if des, err := os.ReadDir(tmp); err == nil {
		for _, d := range des {
			os.RemoveAll(filepath.Join(tmp, d.Name()))
		}
	}
	users, err := c.users()
	if err != nil {
		return nil, err
	}
	des, err := os.ReadDir(filepath.Join(c.dir, "sha256"))
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, d := range des {
		k := d.Name()
		hexPart, _, _ := strings.Cut(k, "-")
		if len(users[k]) > 0 || keep[hexPart] {
			continue
		}
		if err := c.removeEntry(filepath.Join(c.dir, "sha256", k)); err != nil {
			return removed, err
		}
		removed = append(removed, k)
	}
	return removed, nil
}

// ref records that an overlay bundle mounts layers.
type ref struct {
	Bundle string   `json:"bundle"`
	Layers []string `json:"layers"`
}

func refID(bundle string) string {
	s := sha256.Sum256([]byte(bundle))
	return hex.EncodeToString(s[:16])
}

func (c *Cache) refPath(bundle string) string {
	return filepath.Join(c.dir, "refs", refID(bundle)+".json")
}

func (c *Cache) addRef(bundle string, keys []string) error {
	b, err := json.Marshal(ref{Bundle: bundle, Layers: keys})
	if err != nil {
		return err
	}
	return atomicfile.Write(c.refPath(bundle), b, 0o600)
}

func (c *Cache) dropRef(bundle string) error {
	err := os.Remove(c.refPath(bundle))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// users maps layer keys to the bundles using them; refs of bundles whose
// overlay is gone are pruned on the way.
func (c *Cache) users() (map[string][]string, error) {
	dir := filepath.Join(c.dir, "refs")
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, d := range des {
		if !strings.HasSuffix(d.Name(), ".json") {
			continue
		}
		p := filepath.Join(dir, d.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var r ref
		// A ref is stale once its bundle is gone, unless the overlay is still
		// mounted (a bundle deleted with rm -rf while mounted): its layers
		// must not be pulled out from under a live mount.
		if json.Unmarshal(b, &r) != nil || !isOverlayBundle(r.Bundle) && !mounted(filepath.Join(r.Bundle, "rootfs")) {
			os.Remove(p)
			continue
		}
		for _, k := range r.Layers {
			out[k] = append(out[k], r.Bundle)
		}
	}
	return out, nil
}
