package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultNetnsDir is where `ip netns add` keeps named namespaces.
const DefaultNetnsDir = "/var/run/netns"

// resolveNetns turns --netns NAME|PATH into a path: a bare name lives in the
// netns directory, anything with a slash is a path.
func (m *Manager) resolveNetns(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: empty netns", ErrInvalid)
	}
	if strings.ContainsRune(s, '/') {
		return filepath.Clean(s), nil
	}
	if s == "." || s == ".." || !validName(s) {
		return "", fmt.Errorf("%w: netns name %q", ErrInvalid, s)
	}
	return filepath.Join(m.netnsDir, s), nil
}

// nsID is the identity of a namespace file: the nsfs device and inode.
type nsID struct{ dev, ino uint64 }

// statNetns checks that path is a network namespace and returns its identity.
func statNetns(path string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return nsID{}, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return nsID{}, fmt.Errorf("%s is not a namespace file (is the netns mounted?)", path)
	}
	return nsID{dev: st.Dev, ino: st.Ino}, nil
}

// openNetns opens a netns file and verifies it is a network namespace.
func openNetns(path string) (*os.File, nsID, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nsID{}, err
	}
	var st unix.Stat_t
	var sfs unix.Statfs_t
	if err := unix.Fstat(int(f.Fd()), &st); err == nil {
		err = unix.Fstatfs(int(f.Fd()), &sfs)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, nsID{}, fmt.Errorf("%s is not a namespace file", path)
	}
	// NS_GET_NSTYPE tells a net namespace from, say, a mount namespace file.
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err == nil && t != unix.CLONE_NEWNET {
		f.Close()
		return nil, nsID{}, fmt.Errorf("%s is not a network namespace", path)
	}
	return f, nsID{dev: st.Dev, ino: st.Ino}, nil
}

// ensureSharedDir makes dir a shared mount point, as `ip netns add` does, so
// a netns bind mount made here propagates into mount namespaces created
// later (containers, `ip netns exec`) and unmounts propagate too. lockPath
// serialises the first bind mount: two concurrent connects must not stack
// two bind mounts of dir onto itself.
func ensureSharedDir(dir, lockPath string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Fast path: already a mount point (remounting shared is a no-op then).
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return &os.PathError{Op: "make shared", Path: dir, Err: err}
	}
	l, err := lockFile(lockPath)
	if err != nil {
		return err
	}
	defer l.Unlock()
	err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself first.
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return &os.PathError{Op: "bind mount", Path: dir, Err: err}
		}
		err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return &os.PathError{Op: "make shared", Path: dir, Err: err}
	}
	return nil
}

// createNamedNetns creates a network namespace pinned at path (like `ip netns
// add`). An existing netns at path is kept and reported with created=false.
func createNamedNetns(path, lockPath string) (created bool, retErr error) {
	if _, err := statNetns(path); err == nil {
		return false, nil
	}
	if err := ensureSharedDir(filepath.Dir(path), lockPath); err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if errors.Is(err, fs.ErrExist) {
		// A leftover empty file from a crash, or a concurrent creator.
		if _, err := statNetns(path); err == nil {
			return false, nil
		}
		f, err = os.OpenFile(path, os.O_RDONLY, 0)
	}
	if err != nil {
		return false, err
	}
	f.Close()
	defer func() {
		if retErr != nil {
			os.Remove(path)
		}
	}()
	errc := make(chan error, 1)
	go func() {
		// unshare moves only this OS thread; it is switched back to the
		// original netns before it is unlocked. If switching back fails the
		// goroutine exits still locked and the Go runtime discards the
		// thread, so no other goroutine ever runs in the new namespace.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- os.NewSyscallError("unshare", err)
			return
		}
		src := "/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/ns/net"
		merr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(merr, os.NewSyscallError("setns back", err))
			return
		}
		runtime.UnlockOSThread()
		if merr != nil {
			merr = &os.PathError{Op: "bind mount netns", Path: path, Err: merr}
		}
		errc <- merr
	}()
	if err := <-errc; err != nil {
		return false, err
	}
	return true, nil
}

// deleteNamedNetns unmounts and removes a named netns; a missing one is fine.
func deleteNamedNetns(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "unmount", Path: path, Err: err}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// containerNetns finds the netns of a running container from the runtime's
// state file, <root>/<id>/state.json, without importing the runtime: only
// the init pid is needed, under the key runc uses or a plain "pid".
func containerNetns(root, id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return "", fmt.Errorf("%w: container id %q", ErrInvalid, id)
	}
	data, err := os.ReadFile(filepath.Join(root, id, "state.json"))
	if err != nil {
		return "", fmt.Errorf("container %s: %w", id, err)
	}
	var st map[string]json.RawMessage
	if err := json.Unmarshal(data, &st); err != nil {
		return "", fmt.Errorf("container %s: state.json: %w", id, err)
	}
	for _, k := range []string{"init_process_pid", "pid", "Pid"} {
		if raw, ok := st[k]; ok {
			var pid int
			if err := json.Unmarshal(raw, &pid); err == nil && pid > 0 {
				return "/proc/" + strconv.Itoa(pid) + "/ns/net", nil
			}
		}
	}
	return "", fmt.Errorf("container %s: state.json has no init pid (is it running?)", id)
}
