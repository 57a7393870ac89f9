package rootfs

import (
	"errors"
	"os"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
)

// EnsureDir creates dir inside rootfs when it is missing (runc creates a
// missing process cwd), resolving every component in-root.
func EnsureDir(rootfs, dir string) error {
	root, err := openRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	if h, err := pathrs.OpenatInRoot(root, dir); err == nil {
		h.Close()
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	h, err := pathrs.MkdirAllHandle(root, dir, 0o755)
	if err != nil {
		return err
	}
	return h.Close()
}
