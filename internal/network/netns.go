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

	"berth/internal/atomicfile"
	"berth/internal/killpoint"
	"berth/internal/state"
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

// fileID is the identity of a file: device and inode. For a namespace file
// (nsfs) it is the namespace's identity, the same through /proc/PID/ns/net
// and through a bind mount of it.
type fileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// statNetns checks that path is a network namespace and returns its identity.
func statNetns(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return fileID{}, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return fileID{}, fmt.Errorf("%s is not a namespace file (is the netns mounted?)", path)
	}
	return fileID{Dev: st.Dev, Ino: st.Ino}, nil
}

// openNetns opens a netns file and verifies it is a network namespace.
func openNetns(path string) (*os.File, fileID, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileID{}, err
	}
	var st unix.Stat_t
	var sfs unix.Statfs_t
	err = unix.Fstat(int(f.Fd()), &st)
	if err == nil {
		err = unix.Fstatfs(int(f.Fd()), &sfs)
	}
	if err != nil || sfs.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, fileID{}, fmt.Errorf("%s is not a namespace file", path)
	}
	// NS_GET_NSTYPE tells a net namespace from, say, a mount namespace file.
	t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err == nil && t != unix.CLONE_NEWNET {
		f.Close()
		return nil, fileID{}, fmt.Errorf("%s is not a network namespace", path)
	}
	return f, fileID{Dev: st.Dev, Ino: st.Ino}, nil
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

// A named netns that connect creates is recorded in a marker,
// <state>/.netns/<path with / as %>, written before each thing it makes
// exists under the netns path: first the placeholder file's identity (the
// file is made unnamed with O_TMPFILE and only then linked at the path), then
// the namespace's (taken inside the new namespace, before it is bind-mounted
// over the placeholder). A connect killed at any point so leaves proof of
// exactly what it made; whatever is at the path and matches neither identity
// (a netns another tool made later under the same name, say) is not berth's
// and is never removed.
type netnsMarker struct {
	Netns   string  `json:"netns"`
	Network string  `json:"network"`
	File    *fileID `json:"file,omitempty"`
	NS      *fileID `json:"ns,omitempty"`
}

func (m *Manager) markerDir() string { return filepath.Join(m.stateDir, ".netns") }

func (m *Manager) markerPath(nsPath string) string {
	return filepath.Join(m.markerDir(), strings.ReplaceAll(strings.TrimPrefix(nsPath, "/"), "/", "%"))
}

// netnsLockPath serialises the creation and removal of named netns (and the
// first bind mount of the netns dir): connects to different networks may
// name the same netns.
func (m *Manager) netnsLockPath() string { return filepath.Join(m.stateDir, ".netns.lock") }

func (m *Manager) writeMarker(mk *netnsMarker) error {
	if err := os.MkdirAll(m.markerDir(), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(mk)
	if err != nil {
		return err
	}
	// Not fsynced: a named netns does not survive a reboot either.
	return atomicfile.Write(m.markerPath(mk.Netns), append(b, '\n'), 0o600, atomicfile.NoSync())
}

// parseMarker decodes a marker file; a torn, empty or foreign-format one
// (markers of earlier berth versions held only the path) is an error.
func parseMarker(b []byte) (*netnsMarker, error) {
	var mk netnsMarker
	if err := json.Unmarshal(b, &mk); err != nil {
		return nil, fmt.Errorf("unreadable netns marker: %w", err)
	}
	if mk.Netns == "" || !filepath.IsAbs(mk.Netns) {
		return nil, errors.New("unreadable netns marker: no netns path")
	}
	return &mk, nil
}

// readMarker returns the marker of nsPath, or nil when there is none or it
// cannot be trusted.
func (m *Manager) readMarker(nsPath string) *netnsMarker {
	b, err := os.ReadFile(m.markerPath(nsPath))
	if err != nil {
		return nil
	}
	mk, err := parseMarker(b)
	if err != nil || mk.Netns != nsPath {
		return nil
	}
	return mk
}

func (m *Manager) unmarkNetns(nsPath string) {
	_ = os.Remove(m.markerPath(nsPath))
}

// markerFile is one file in the marker dir: its decoded marker, or why it
// cannot be read.
type markerFile struct {
	name string
	mk   *netnsMarker
	err  error
}

func (m *Manager) markerFiles() ([]markerFile, error) {
	ents, err := os.ReadDir(m.markerDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []markerFile
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue // atomicfile's temp files
		}
		b, err := os.ReadFile(filepath.Join(m.markerDir(), e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		mf := markerFile{name: e.Name()}
		if err == nil {
			mf.mk, mf.err = parseMarker(b)
		} else {
			mf.err = err
		}
		if mf.err == nil && m.markerPath(mf.mk.Netns) != filepath.Join(m.markerDir(), e.Name()) {
			mf.mk, mf.err = nil, errors.New("netns marker names another path")
		}
		out = append(out, mf)
	}
	return out, nil
}

// owned is what the marker proves berth made at its path, now.
type owned int

const (
	ownsNothing owned = iota // gone, never made, or something else now
	ownsFile                 // the placeholder, no namespace mounted on it
	ownsNetns                // the namespace connect created, mounted
)

// identify returns path's identity without following a final symlink (a
// mount point reads as what is mounted on it) and whether it is a namespace
// file.
func identify(path string) (fileID, bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return fileID{}, false, err
	}
	id := fileID{Dev: st.Dev, Ino: st.Ino}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return id, false, nil
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return id, false, err
	}
	return id, sfs.Type == unix.NSFS_MAGIC, nil
}

// owns compares what is at mk's path with the identities mk recorded; lease,
// if set, is the namespace identity an endpoint recorded (a second proof).
func owns(mk *netnsMarker, path string, lease *fileID) owned {
	id, isNS, err := identify(path)
	if err != nil {
		return ownsNothing
	}
	if isNS {
		if (mk != nil && mk.NS != nil && *mk.NS == id) || (lease != nil && *lease == id) {
			return ownsNetns
		}
		return ownsNothing
	}
	if mk != nil && mk.File != nil && *mk.File == id {
		return ownsFile
	}
	return ownsNothing
}

// netnsMade says what createOwnedNetns found or did.
type netnsMade int

const (
	netnsForeign netnsMade = iota // a namespace was there already, not made by this network's connect
	netnsCreated                  // created now
	netnsLeft                     // made by an earlier connect of this network that was killed: proven, reused
)

// createOwnedNetns makes sure a network namespace is pinned at nsPath (as
// `ip netns add` does), recording it for network as described at
// netnsMarker. A netns already there is used as it is; a placeholder an
// earlier killed connect left is replaced; any other file is refused.
func (m *Manager) createOwnedNetns(nsPath, network string) (made netnsMade, retErr error) {
	dir := filepath.Dir(nsPath)
	if err := ensureSharedDir(dir, m.netnsLockPath()); err != nil {
		return 0, err
	}
	l, err := m.lockNetns()
	if err != nil {
		return 0, err
	}
	defer l.Unlock()
	mk := m.readMarker(nsPath)
	switch owns(mk, nsPath, nil) {
	case ownsNetns:
		if mk.Network == network {
			return netnsLeft, nil
		}
		return netnsForeign, nil
	case ownsFile:
		if err := os.Remove(nsPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
	default:
		if _, isNS, err := identify(nsPath); err == nil {
			if isNS {
				return netnsForeign, nil
			}
			return 0, fmt.Errorf("%s exists and is not a network namespace (berth did not make it; remove it or pick another name)", nsPath)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
	}

	// The placeholder is made unnamed, so its identity is on record before
	// it can be found at nsPath.
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, &os.PathError{Op: "create netns file (O_TMPFILE)", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, os.NewSyscallError("fstat", err)
	}
	mk = &netnsMarker{Netns: nsPath, Network: network, File: &fileID{Dev: st.Dev, Ino: st.Ino}}
	if err := m.writeMarker(mk); err != nil {
		return 0, fmt.Errorf("netns marker: %w", err)
	}
	killpoint.At("network connect: netns marker written")
	defer func() {
		if retErr != nil {
			if owns(mk, nsPath, nil) == ownsFile {
				os.Remove(nsPath)
			}
			m.unmarkNetns(nsPath)
		}
	}()
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, nsPath, unix.AT_SYMLINK_FOLLOW); err != nil {
		return 0, &os.PathError{Op: "link netns file", Path: nsPath, Err: err}
	}
	killpoint.At("network connect: netns file linked")
	if err := mountNewNetns(nsPath, func(ns fileID) error {
		mk.NS = &ns
		if err := m.writeMarker(mk); err != nil {
			return fmt.Errorf("netns marker: %w", err)
		}
		killpoint.At("network connect: netns identity recorded")
		return nil
	}); err != nil {
		return 0, err
	}
	killpoint.At("network connect: netns mounted")
	return netnsCreated, nil
}

// mountNewNetns creates a network namespace and bind-mounts it on path (an
// existing file). record gets the namespace's identity before the mount is
// made; if it fails, nothing is mounted.
func mountNewNetns(path string, record func(fileID) error) error {
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
		var merr error
		id, err := statNetns(src)
		if err == nil {
			err = record(id)
		}
		if err != nil {
			merr = err
		} else if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			merr = &os.PathError{Op: "bind mount netns", Path: path, Err: err}
		}
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(merr, os.NewSyscallError("setns back", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- merr
	}()
	return <-errc
}

// removeOwnedNetns removes the named netns at nsPath if berth's record (its
// marker, or lease: the namespace identity an endpoint saved) proves it
// made it, and the marker with it. Anything else at the path is left alone.
func (m *Manager) removeOwnedNetns(nsPath string, lease *fileID) error {
	l, err := m.lockNetns()
	if err != nil {
		return err
	}
	defer l.Unlock()
	mk := m.readMarker(nsPath)
	switch owns(mk, nsPath, lease) {
	case ownsNetns:
		if err := unix.Unmount(nsPath, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "unmount", Path: nsPath, Err: err}
		}
		killpoint.At("network disconnect: netns unmounted")
		// What is left is the placeholder the namespace was mounted on.
		if id, isNS, err := identify(nsPath); err == nil && !isNS && (mk == nil || mk.File == nil || *mk.File == id) {
			if err := os.Remove(nsPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	case ownsFile:
		if err := os.Remove(nsPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	killpoint.At("network disconnect: netns removed")
	m.unmarkNetns(nsPath)
	return nil
}

// deleteNamedNetns unmounts and removes a named netns; a missing one is fine.
// It proves nothing: callers use it only on a netns they made themselves
// (tests); berth's own cleanup goes through removeOwnedNetns.
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

// containerInit finds the init of a running container from the runtime's
// state, <root>/<id>/state.json, with the check every runtime command
// makes: the recorded pid must be alive with the recorded start time, so a
// pid that was reused by another process is never taken for the container.
func containerInit(root, id string) (pid int, start uint64, err error) {
	st, err := state.LoadView(root, id)
	if err != nil {
		return 0, 0, fmt.Errorf("container %s: %w", id, err)
	}
	if st.Status() == state.Stopped {
		return 0, 0, fmt.Errorf("container %s: %w", id, state.ErrNotRunning)
	}
	return st.InitPid, st.InitStart, nil
}

// stillInit reports whether pid is still the process containerInit found:
// checked after its netns was opened, it proves the namespace opened was the
// container's (the pid could not have been reused while still alive).
func stillInit(pid int, start uint64) bool {
	s, zombie, err := state.ProcStart(pid)
	return err == nil && !zombie && s == start
}
