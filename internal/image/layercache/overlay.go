package layercache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// OverlayDir is the bundle subdirectory holding an overlay bundle's private
// upper and work directories and the list of layers it mounts.
const OverlayDir = ".berth-overlay"

type overlayState struct {
	Cache  string   `json:"cache"`
	Layers []string `json:"layers"` // bottom first
}

func isOverlayBundle(bundle string) bool {
	_, err := os.Stat(filepath.Join(bundle, OverlayDir, "layers.json"))
	return err == nil
}

// IsOverlayBundle reports whether bundle was made by MountBundle.
func IsOverlayBundle(bundle string) bool { return isOverlayBundle(bundle) }

// MountBundle makes bundle/rootfs an overlay of the cached layers (keys
// bottom first) with a private upper directory in the bundle, and records
// the use so GC keeps the layers. bundle must be absolute; the caller holds
// a shared lock.
func (c *Cache) MountBundle(bundle string, keys []string) (retErr error) {
	if !filepath.IsAbs(bundle) {
		return fmt.Errorf("bundle path %q must be absolute", bundle)
	}
	ov := filepath.Join(bundle, OverlayDir)
	upper, work, rootfs := filepath.Join(ov, "upper"), filepath.Join(ov, "work"), filepath.Join(bundle, "rootfs")
	for _, d := range []string{ov, upper, work, rootfs} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	// The upper dir's root mode becomes the rootfs root's mode: give it the
	// bottom layer root's attributes, as a plain unpack would.
	if len(keys) > 0 {
		copyRootAttrs(c.LayerDir(keys[len(keys)-1]), upper)
	}
	st := overlayState{Cache: c.dir, Layers: keys}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(ov, "layers.json"), b, 0o600); err != nil {
		return err
	}
	if err := c.addRef(bundle, keys); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			c.dropRef(bundle)
		}
	}()
	lowers := make([]string, 0, len(keys))
	for i := len(keys) - 1; i >= 0; i-- {
		lowers = append(lowers, c.LayerDir(keys[i]))
	}
	return mountOverlay(rootfs, lowers, upper, work)
}

func copyRootAttrs(from, to string) {
	var st unix.Stat_t
	if unix.Stat(from, &st) != nil {
		return
	}
	unix.Chown(to, int(st.Uid), int(st.Gid))
	unix.Chmod(to, st.Mode&0o7777)
}

// mountOverlay uses the new mount API, which takes each lower layer as its
// own "lowerdir+" parameter: mount(2)'s single page of options limits an
// image to a few dozen layers. mount(2) is the fallback for old kernels.
func mountOverlay(target string, lowers []string, upper, work string) error {
	if len(lowers) == 0 {
		return errors.New("overlay needs at least one layer")
	}
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err == nil {
		defer unix.Close(fsfd)
		err = func() error {
			for _, l := range lowers {
				if err := unix.FsconfigSetString(fsfd, "lowerdir+", l); err != nil {
					return fmt.Errorf("overlay lowerdir+ %s: %w", l, err)
				}
			}
			for k, v := range map[string]string{"upperdir": upper, "workdir": work} {
				if err := unix.FsconfigSetString(fsfd, k, v); err != nil {
					return fmt.Errorf("overlay %s: %w", k, err)
				}
			}
			if err := unix.FsconfigCreate(fsfd); err != nil {
				return fmt.Errorf("overlay create: %w", err)
			}
			mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("fsmount overlay: %w", err)
			}
			defer unix.Close(mfd)
			if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return fmt.Errorf("move_mount overlay to %s: %w", target, err)
			}
			return nil
		}()
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return err
		}
	}
	data := "lowerdir=" + strings.Join(escapeAll(lowers), ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(data) >= 4096 {
		return fmt.Errorf("overlay with %d layers does not fit mount(2) options, and the new mount API failed: %w", len(lowers), err)
	}
	if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", target, err)
	}
	return nil
}

func escapeAll(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`).Replace(p)
	}
	return out
}

// Remount mounts an overlay bundle again after its mount went away (a
// reboot): same layers, same upper directory.
func Remount(bundle string) error {
	st, err := readState(bundle)
	if err != nil {
		return err
	}
	c, err := Open(st.Cache)
	if err != nil {
		return err
	}
	unlock, err := c.Lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	rootfs := filepath.Join(bundle, "rootfs")
	if mounted(rootfs) {
		return nil
	}
	var lowers []string
	for i := len(st.Layers) - 1; i >= 0; i-- {
		d := c.LayerDir(st.Layers[i])
		if _, err := os.Stat(d); err != nil {
			return fmt.Errorf("layer %s is no longer cached: %w", st.Layers[i], err)
		}
		lowers = append(lowers, d)
	}
	ov := filepath.Join(bundle, OverlayDir)
	if err := c.addRef(bundle, st.Layers); err != nil {
		return err
	}
	return mountOverlay(rootfs, lowers, filepath.Join(ov, "upper"), filepath.Join(ov, "work"))
}

// Layers returns an overlay bundle's upper directory and its cached layer
// directories, top first (the overlay's lowerdir order).
func Layers(bundle string) (upper string, lowers []string, err error) {
	st, err := readState(bundle)
	if err != nil {
		return "", nil, err
	}
	c, err := Open(st.Cache)
	if err != nil {
		return "", nil, err
	}
	for i := len(st.Layers) - 1; i >= 0; i-- {
		lowers = append(lowers, c.LayerDir(st.Layers[i]))
	}
	return filepath.Join(bundle, OverlayDir, "upper"), lowers, nil
}

func readState(bundle string) (overlayState, error) {
	var st overlayState
	b, err := os.ReadFile(filepath.Join(bundle, OverlayDir, "layers.json"))
	if err != nil {
		return st, fmt.Errorf("%s is not an overlay bundle: %w", bundle, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s/%s/layers.json: %w", bundle, OverlayDir, err)
	}
	return st, nil
}

// mounted reports whether p is a mount point (its mount id differs from its
// parent's).
func mounted(p string) bool {
	var a, b unix.Statx_t
	if unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &a) != nil {
		return false
	}
	if unix.Statx(unix.AT_FDCWD, filepath.Dir(p), unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &b) != nil {
		return false
	}
	return a.Mnt_id != b.Mnt_id
}

// RemoveBundle removes a bundle made by `berth unpack`: it unmounts an
// overlay rootfs (lazily if busy), drops the cache reference, and deletes
// the bundle directory. A bundle that is not an overlay is just deleted.
func RemoveBundle(bundle string) error {
	bundle, err := filepath.Abs(bundle)
	if err != nil {
		return err
	}
	if bundle == "/" {
		return errors.New("refusing to remove /")
	}
	if fi, err := os.Lstat(bundle); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", bundle)
	}
	if _, err := os.Lstat(filepath.Join(bundle, "config.json")); err != nil {
		if _, err2 := os.Lstat(filepath.Join(bundle, "rootfs")); err2 != nil {
			return fmt.Errorf("%s does not look like a bundle (no config.json or rootfs): %w", bundle, err)
		}
	}
	rootfs := filepath.Join(bundle, "rootfs")
	for i := 0; mounted(rootfs) && i < 8; i++ {
		if err := unix.Unmount(rootfs, 0); err != nil {
			if err == unix.EBUSY {
				if err := unix.Unmount(rootfs, unix.MNT_DETACH); err != nil {
					return fmt.Errorf("unmount %s: %w", rootfs, err)
				}
				continue
			}
			return fmt.Errorf("unmount %s: %w", rootfs, err)
		}
	}
	if mounted(rootfs) {
		return fmt.Errorf("%s is still mounted", rootfs)
	}
	if st, err := readState(bundle); err == nil {
		if c, err := Open(st.Cache); err == nil {
			c.dropRef(bundle)
		}
	}
	if err := os.RemoveAll(bundle); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
