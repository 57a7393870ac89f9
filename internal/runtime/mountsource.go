package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/rootfs"
	"berth/internal/spawn"
)

// mountSources answers init's mount source requests (ipc.MountSource), as
// runc's mount source thread does: the source of an idmapped mount, as a
// detached mount carrying its id mapping (open_tree(OPEN_TREE_CLONE) and
// mount_setattr(MOUNT_ATTR_IDMAP) with a user namespace holding the
// mapping), or of a bind the container's root cannot reach, as an O_PATH
// file. Both are opened from init's mount namespace as it is at the
// request, so a source inside the rootfs sees the mounts made before it,
// with the host's privileges. Close releases what it holds.
type mountSources struct {
	spec   *specs.Spec
	bundle string
	ns     *nsPlan
	pid    int // init, whose mount namespace the thread joins

	userns map[string]*os.File // mapping -> a user namespace holding it
	reqs   chan func()         // run on the thread in init's mount namespace
	done   chan struct{}
}

func newMountSources(s *specs.Spec, bundle string, ns *nsPlan) *mountSources {
	return &mountSources{spec: s, bundle: bundle, ns: ns, userns: map[string]*os.File{}}
}

// Open returns the source of mount i; the caller sends and closes it.
func (ms *mountSources) Open(i int) (*os.File, error) {
	if i < 0 || i >= len(ms.spec.Mounts) || !rootfs.IsBind(ms.spec.Mounts[i]) {
		return nil, fmt.Errorf("protocol error: a mount source request for mount %d, not a bind mount", i)
	}
	m := ms.spec.Mounts[i]
	src := m.Source
	if !filepath.IsAbs(src) {
		src = filepath.Join(ms.bundle, src)
	}
	idmapped, recursive := rootfs.IDMapped(m)
	var u *os.File
	if idmapped {
		var err error
		if u, err = ms.mapping(m); err != nil {
			return nil, err
		}
	}
	var f *os.File
	err := ms.inMountNS(func() error {
		if !idmapped {
			fd, err := unix.Open(src, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				return &os.PathError{Op: "open", Path: src, Err: err}
			}
			f = os.NewFile(uintptr(fd), src)
			return nil
		}
		flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
		if rootfs.ParseOptions(m.Options).Flags&unix.MS_REC != 0 {
			flags |= unix.AT_RECURSIVE
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, src, flags)
		if err != nil {
			return &os.PathError{Op: "open_tree(OPEN_TREE_CLONE)", Path: src, Err: err}
		}
		at := uint(unix.AT_EMPTY_PATH)
		if recursive {
			at |= unix.AT_RECURSIVE
		}
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(u.Fd())}
		if err := unix.MountSetattr(fd, "", at, attr); err != nil {
			unix.Close(fd)
			hint := ""
			if errors.Is(err, unix.EINVAL) {
				hint = " (maybe the filesystem used doesn't support idmap mounts on this kernel?)"
			}
			return fmt.Errorf("failed to set MOUNT_ATTR_IDMAP on %s: %w%s", m.Source, err, hint)
		}
		f = os.NewFile(uintptr(fd), src)
		return nil
	})
	return f, err
}

// mapping returns a user namespace with m's id mapping: its own, or
// (idmap/ridmap without one) the container's: its mappings, or the user
// namespace it joins.
func (ms *mountSources) mapping(m specs.Mount) (*os.File, error) {
	uids, gids := m.UIDMappings, m.GIDMappings
	joined := ""
	if len(uids) == 0 && len(gids) == 0 {
		if joined = ms.ns.paths[specs.UserNamespace]; joined == "" {
			uids, gids = ms.spec.Linux.UIDMappings, ms.spec.Linux.GIDMappings
		}
	}
	key := joined + fmt.Sprint(uids, gids)
	if u, ok := ms.userns[key]; ok {
		return u, nil
	}
	var u *os.File
	var err error
	if joined != "" {
		if u, err = os.Open(joined); err != nil {
			return nil, fmt.Errorf("failed to open existing userns for %s id-mapping: %w", m.Source, err)
		}
	} else if u, err = spawn.UserNamespace(sysMaps(uids), sysMaps(gids)); err != nil {
		return nil, fmt.Errorf("failed to create userns for %s id-mapping: %w", m.Source, err)
	}
	ms.userns[key] = u
	return u, nil
}

// inMountNS runs fn on a thread of its own in init's mount namespace,
// started at the first request (unshare(CLONE_FS) lets one thread setns
// there) and ended by Close.
func (ms *mountSources) inMountNS(fn func() error) error {
	if ms.reqs == nil {
		ready := make(chan error, 1)
		ms.reqs, ms.done = make(chan func()), make(chan struct{})
		go func() {
			defer close(ms.done)
			// Never unlocked: the thread leaves init's mount namespace by
			// exiting with the goroutine.
			runtime.LockOSThread()
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				ready <- fmt.Errorf("mount source thread: %w", os.NewSyscallError("unshare(CLONE_FS)", err))
				return
			}
			fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/mnt", ms.pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				ready <- fmt.Errorf("mount source thread: open container mntns: %w", err)
				return
			}
			err = unix.Setns(fd, unix.CLONE_NEWNS)
			unix.Close(fd)
			if err != nil {
				ready <- fmt.Errorf("mount source thread: join container mntns: %w", os.NewSyscallError("setns", err))
				return
			}
			close(ready)
			for req := range ms.reqs {
				req()
			}
		}()
		if err := <-ready; err != nil {
			ms.reqs = nil
			return err
		}
	}
	errc := make(chan error, 1)
	ms.reqs <- func() { errc <- fn() }
	return <-errc
}

// Close ends the thread and releases the user namespaces.
func (ms *mountSources) Close() {
	if ms.reqs != nil {
		close(ms.reqs)
		<-ms.done
		ms.reqs = nil
	}
	for _, u := range ms.userns {
		u.Close()
	}
}

// sysMaps converts OCI id mappings to the clone's (nil for none).
func sysMaps(m []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	var out []syscall.SysProcIDMap
	for _, x := range m {
		out = append(out, syscall.SysProcIDMap{ContainerID: int(x.ContainerID), HostID: int(x.HostID), Size: int(x.Size)})
	}
	return out
}
