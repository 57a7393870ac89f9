package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/plan"
	"berth/internal/linux/rootfs"
	"berth/internal/spawn"
)

// idmappedMounts makes the source of every idmapped mount, in the
// runtime's mount namespace, a detached mount that carries its id mapping
// (open_tree(OPEN_TREE_CLONE) and mount_setattr(MOUNT_ATTR_IDMAP) with a
// user namespace holding the mapping); the executor attaches each at its
// destination (internal/nsenter/rootfs.c). The mapping is the mount's own,
// or (idmap/ridmap without one) the container's: its mappings, or the user
// namespace it joins. The files are keyed by the mount's index; the caller
// closes them.
func idmappedMounts(s *specs.Spec, bundle string, ns *nsPlan) (files map[int]*os.File, retErr error) {
	userns := map[string]*os.File{}
	defer func() {
		for _, f := range userns {
			f.Close()
		}
		if retErr != nil {
			for _, f := range files {
				f.Close()
			}
		}
	}()
	for i, m := range s.Mounts {
		idmapped, recursive := rootfs.IDMapped(m)
		if !idmapped {
			continue
		}
		if !rootfs.IsBind(m) {
			return files, &plan.ConfigError{Err: errors.New("id-mapped mounts are only supported for bind-mounts")}
		}
		if os.Geteuid() != 0 {
			// MOUNT_ATTR_IDMAP needs privileges over the filesystem's own
			// user namespace, the host's.
			return files, &plan.ConfigError{Err: errors.New("id-mapped mounts are not supported for rootless containers")}
		}
		uids, gids := m.UIDMappings, m.GIDMappings
		joined := ""
		if len(uids) == 0 && len(gids) == 0 {
			if joined = ns.paths[specs.UserNamespace]; joined == "" {
				uids, gids = s.Linux.UIDMappings, s.Linux.GIDMappings
			}
		}
		if joined == "" && (len(uids) == 0 || len(gids) == 0) {
			return files, &plan.ConfigError{Err: errors.New("id-mapped mounts must have both uid and gid mappings specified")}
		}
		key := joined + fmt.Sprint(uids, gids)
		u, ok := userns[key]
		if !ok {
			var err error
			if joined != "" {
				u, err = os.Open(joined)
			} else {
				u, err = spawn.UserNamespace(sysMaps(uids), sysMaps(gids))
			}
			if err != nil {
				return files, fmt.Errorf("failed to create userns for %s id-mapping: %w", m.Source, err)
			}
			userns[key] = u
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(bundle, src)
		}
		flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
		if rootfs.ParseOptions(m.Options).Flags&unix.MS_REC != 0 {
			flags |= unix.AT_RECURSIVE
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, src, flags)
		if err != nil {
			return files, &os.PathError{Op: "open_tree(OPEN_TREE_CLONE)", Path: src, Err: err}
		}
		f := os.NewFile(uintptr(fd), src)
		if files == nil {
			files = map[int]*os.File{}
		}
		files[i] = f
		at := uint(unix.AT_EMPTY_PATH)
		if recursive {
			at |= unix.AT_RECURSIVE
		}
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(u.Fd())}
		if err := unix.MountSetattr(fd, "", at, attr); err != nil {
			hint := ""
			if errors.Is(err, unix.EINVAL) {
				hint = " (maybe the filesystem used doesn't support idmap mounts on this kernel?)"
			}
			return files, fmt.Errorf("failed to set MOUNT_ATTR_IDMAP on %s: %w%s", m.Source, err, hint)
		}
	}
	return files, nil
}

// sysMaps converts OCI id mappings to the clone's (nil for none).
func sysMaps(m []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	var out []syscall.SysProcIDMap
	for _, x := range m {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(x.ContainerID), HostID: int(x.HostID), Size: int(x.Size)})
	}
	return out
}
