package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/cyphar/filepath-securejoin/pathrs-lite/procfs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// PivotRoot makes rootfs the root of the mount namespace and detaches the old
// root, using pivot_root(".", ".") so no directory inside the rootfs is needed
// for the old root.
func PivotRoot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/", Err: err}
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: rootfs, Err: err}
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return &os.PathError{Op: "chdir", Path: rootfs, Err: err}
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return &os.PathError{Op: "pivot_root", Path: rootfs, Err: err}
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return err
	}
	// Keep unmount events of the old root from reaching the host.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return &os.PathError{Op: "make old root rslave", Path: ".", Err: err}
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &os.PathError{Op: "unmount old root", Path: ".", Err: err}
	}
	return unix.Chdir("/")
}

// MoveRoot is --no-pivot: move the rootfs mount over / and chroot into it.
// Weaker than pivot_root (the old root stays reachable to a process with
// CAP_SYS_CHROOT), which is why runc warns about it, and so do we.
func MoveRoot(rootfs string) error {
	if err := hideHostProcSys(rootfs); err != nil {
		return err
	}
	if err := unix.Chdir(rootfs); err != nil {
		return &os.PathError{Op: "chdir", Path: rootfs, Err: err}
	}
	if err := unix.Mount(rootfs, "/", "", unix.MS_MOVE, ""); err != nil {
		return &os.PathError{Op: "move rootfs", Path: rootfs, Err: err}
	}
	if err := unix.Chroot("."); err != nil {
		return &os.PathError{Op: "chroot", Path: rootfs, Err: err}
	}
	return unix.Chdir("/")
}

// hideHostProcSys detaches every full procfs and sysfs mount outside the
// rootfs before --no-pivot's chroot. Those mounts stay in the container's
// mount namespace under the moved root, and the kernel allows a new procfs
// (or sysfs) mount in a user namespace whenever a fully visible one exists
// in the mount namespace (mount_too_revealing). So container code could
// `unshare -mrpf` and mount a bare, unmasked /proc (/proc/kcore, sysrq-trigger
// and all) in spite of maskedPaths (runc's no_pivot.bats regression test).
// Where the unmount is refused, an empty tmpfs covers the mount instead.
func hideHostProcSys(rootfs string) error {
	mi, err := readMountinfo()
	if err != nil {
		return err
	}
	rootfs = filepath.Clean(rootfs)
	// Deepest first, so a mount on top of another goes before it.
	for i := len(mi) - 1; i >= 0; i-- {
		m := mi[i]
		if m.root != "/" || (m.fstype != "proc" && m.fstype != "sysfs") {
			continue
		}
		if m.point == rootfs || strings.HasPrefix(m.point, rootfs+"/") {
			continue
		}
		if err := unix.Mount("", m.point, "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "make host mount rslave", Path: m.point, Err: err}
		}
		err := unix.Unmount(m.point, unix.MNT_DETACH)
		if err == nil || errors.Is(err, unix.ENOENT) {
			continue
		}
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EPERM) {
			return &os.PathError{Op: "detach host mount", Path: m.point, Err: err}
		}
		if err := unix.Mount("tmpfs", m.point, "tmpfs", unix.MS_RDONLY, ""); err != nil {
			return &os.PathError{Op: "cover host mount", Path: m.point, Err: err}
		}
	}
	return nil
}

// checkDevNull makes sure /dev/null really is the null device before it is
// bind-mounted over masked files: a container that replaced it (by a symlink
// or another node) could otherwise unmask a path (CVE-2025-31133).
func checkDevNull(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		return errors.New("/dev/null is not the null device")
	}
	return nil
}

// MaskPaths runs after pivot_root: files are covered by /dev/null, directories
// by an empty read-only tmpfs. Missing paths are skipped.
func MaskPaths(paths []string, mountLabel string) error {
	if len(paths) == 0 {
		return nil
	}
	root, err := openRoot("/")
	if err != nil {
		return err
	}
	defer root.Close()
	null, err := pathrs.OpenatInRoot(root, "/dev/null")
	if err != nil {
		return fmt.Errorf("open /dev/null for masking: %w", err)
	}
	defer null.Close()
	if err := checkDevNull(null); err != nil {
		return err
	}
	for _, p := range paths {
		t, err := pathrs.OpenatInRoot(root, p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("masking %s: %w", p, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(int(t.Fd()), &st)
		if err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = unix.Mount("tmpfs", fdPath(t), "tmpfs", unix.MS_RDONLY, labelData(mountLabel))
			} else {
				err = unix.Mount(fdPath(null), fdPath(t), "", unix.MS_BIND, "")
			}
		}
		t.Close()
		if err != nil {
			return fmt.Errorf("masking %s: %w", p, err)
		}
	}
	return nil
}

func labelData(label string) string {
	if label == "" {
		return ""
	}
	return "context=" + label
}

// ReadonlyPaths bind-mounts each path on itself and remounts it read-only.
func ReadonlyPaths(paths []string) error {
	root, err := openRoot("/")
	if err != nil {
		return err
	}
	defer root.Close()
	for _, p := range paths {
		t, err := pathrs.OpenatInRoot(root, p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("readonly path %s: %w", p, err)
		}
		err = unix.Mount(fdPath(t), fdPath(t), "", unix.MS_BIND|unix.MS_REC, "")
		t.Close()
		if err != nil {
			return fmt.Errorf("readonly path %s: %w", p, err)
		}
		t, err = pathrs.OpenatInRoot(root, p)
		if err != nil {
			return err
		}
		err = remountBind(fdPath(t), unix.MS_RDONLY|unix.MS_REC)
		t.Close()
		if err != nil {
			return fmt.Errorf("readonly path %s: %w", p, err)
		}
	}
	return nil
}

// ReadonlyRoot remounts / read-only (root.readonly).
func ReadonlyRoot() error { return remountBind("/", unix.MS_RDONLY) }

// Sysctl writes linux.sysctl through a private procfs handle (pathrs-lite's
// procfs: a fresh procfs instance or a detached clone of /proc, verified to
// be procfs root, with every lookup below it refusing symlinks, magic links
// and mount crossings). CVE-2025-52881: resolving /proc/sys/... through the
// container's own /proc followed whatever the container had arranged there
// (symlinks in a tmpfs, bind mounts of other procfs files), so a write meant
// for kernel.shm_rmid_forced could land in /proc/sysrq-trigger or
// core_pattern, and an fstatfs check cannot tell procfs files apart.
// The sysctl namespaces (net, ipc, uts) follow the writer, which is init.
func Sysctl(kv map[string]string) error {
	if len(kv) == 0 {
		return nil
	}
	proc, err := procfs.OpenProcRoot()
	if err != nil {
		return fmt.Errorf("open procfs for sysctls: %w", err)
	}
	defer proc.Close()
	for k, v := range kv {
		rel := "sys/" + strings.ReplaceAll(k, ".", "/")
		if strings.Contains(k, "/") || strings.Contains(k, "..") {
			rel = "sys" + filepath.Clean("/"+k)
		}
		h, err := proc.OpenRoot(rel)
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
		f, err := pathrs.Reopen(h, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC)
		h.Close()
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
		if err := requireProcfs(f); err != nil {
			f.Close()
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
		_, err = f.WriteString(v)
		f.Close()
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
	}
	return nil
}

func requireProcfs(f *os.File) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return err
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return errors.New("target is not on procfs")
	}
	return nil
}

// ValidateSysctl rejects sysctls that are not namespaced by the container's
// own namespaces, as runc does.
func ValidateSysctl(s *specs.Spec, has func(specs.LinuxNamespaceType) bool) error {
	if s.Linux == nil {
		return nil
	}
	for k := range s.Linux.Sysctl {
		switch {
		case strings.HasPrefix(k, "kernel.msg") || strings.HasPrefix(k, "kernel.shm") || k == "kernel.sem" || strings.HasPrefix(k, "fs.mqueue."):
			if !has(specs.IPCNamespace) {
				return fmt.Errorf("sysctl %q is not allowed in the hosts ipc namespace", k)
			}
		case strings.HasPrefix(k, "net."):
			if !has(specs.NetworkNamespace) {
				return fmt.Errorf("sysctl %q not allowed in host network namespace", k)
			}
		case k == "kernel.domainname" || k == "kernel.hostname":
			if !has(specs.UTSNamespace) {
				return fmt.Errorf("sysctl %q is not allowed as it conflicts with the OCI %q field", k, strings.TrimPrefix(k, "kernel."))
			}
		default:
			return fmt.Errorf("sysctl %q is not in a separate kernel namespace", k)
		}
	}
	return nil
}
