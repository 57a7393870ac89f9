package oneshot

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/image/bundle"
	"berth/internal/image/layercache"
)

// Change is one entry of `container diff`: A (added), C (changed) or D
// (deleted), and the path in the container.
type Change struct {
	Kind byte
	Path string
}

// Diff lists what the container changed in its writable layer against its
// image, docker's and podman's way: the overlay upper directory, where a
// whiteout (a 0:0 character device) is a deletion and an entry the image
// also has is a change. Volumes, binds and tmpfs mounts are not part of it.
func (c *Container) Diff() ([]Change, error) {
	upper, lowers, err := layercache.Layers(c.Paths.Bundle)
	if err != nil {
		return nil, err
	}
	inImage := func(p string) bool {
		for _, l := range lowers {
			if _, err := os.Lstat(filepath.Join(l, p)); err == nil {
				return true
			}
		}
		return false
	}
	var out []Change
	err = filepath.WalkDir(upper, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, upper), "/")
		if rel == "/" {
			return nil
		}
		if d.Type()&os.ModeCharDevice != 0 {
			var st unix.Stat_t
			if unix.Lstat(p, &st) == nil && st.Rdev == 0 {
				out = append(out, Change{'D', rel})
				return nil
			}
		}
		kind := byte('A')
		if inImage(rel) {
			kind = 'C'
		}
		out = append(out, Change{kind, rel})
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	// berth writes these into the writable layer (podman and docker bind
	// them from elsewhere): they are not the container's changes, nor is
	// /etc only for them. Neither are the mount points the runtime made
	// for the container's mounts (docker keeps them in an init layer).
	ours := map[string]bool{"/etc/hosts": true, "/etc/hostname": true, "/etc/resolv.conf": true}
	mountPoints := map[string]bool{}
	if cfg, err := bundle.Load(c.Paths.Bundle); err == nil {
		for _, m := range cfg.Mounts {
			mountPoints[path.Clean(m.Destination)] = true
		}
	}
	kept, etcOther := out[:0], false
	for _, ch := range out {
		if !ours[ch.Path] && !(ch.Kind == 'A' && mountPoints[ch.Path]) {
			kept = append(kept, ch)
			etcOther = etcOther || strings.HasPrefix(ch.Path, "/etc/")
		}
	}
	out = kept[:0]
	for _, ch := range kept {
		if ch.Path != "/etc" || etcOther || ch.Kind != 'C' {
			out = append(out, ch)
		}
	}
	return out, err
}

// Export writes the container's root filesystem (the image with its
// changes, without volumes or other mounts) to w as a tar stream. The walk
// works on descriptors, as cp does, so a running container cannot swap in
// a symlink that leads the export out of its root.
func (c *Container) Export(w io.Writer) error {
	if err := c.ensureMounted(); err != nil {
		return err
	}
	root, err := os.OpenFile(filepath.Join(c.Paths.Bundle, "rootfs"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	if err := tarDir(tw, root, ""); err != nil {
		return err
	}
	return tw.Close()
}

func timespec(t unix.Timespec) time.Time { return time.Unix(t.Sec, t.Nsec) }

func tarDir(tw *tar.Writer, dir *os.File, prefix string) error {
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		name := path.Join(prefix, n)
		var st unix.Stat_t
		if err := unix.Fstatat(int(dir.Fd()), n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed meanwhile
			}
			return &os.PathError{Op: "stat", Path: name, Err: err}
		}
		hdr := &tar.Header{Name: name, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
			ModTime: timespec(st.Mtim), Format: tar.FormatPAX}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			sub, err := openAt(dir, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
			err = tw.WriteHeader(hdr)
			if err == nil {
				err = tarDir(tw, sub, name)
			}
			sub.Close()
			if err != nil {
				return err
			}
		case unix.S_IFREG:
			f, err := openAt(dir, n, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK)
			if err != nil {
				return err
			}
			var fst unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &fst); err != nil || fst.Mode&unix.S_IFMT != unix.S_IFREG {
				f.Close()
				return fmt.Errorf("%s changed while it was exported", name)
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, fst.Size
			if err := tw.WriteHeader(hdr); err != nil {
				f.Close()
				return err
			}
			_, err = io.CopyN(tw, f, fst.Size)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case unix.S_IFLNK:
			buf := make([]byte, unix.PathMax)
			k, err := unix.Readlinkat(int(dir.Fd()), n, buf)
			if err != nil {
				return &os.PathError{Op: "readlink", Path: name, Err: err}
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, string(buf[:k])
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
			hdr.Typeflag = tar.TypeChar
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				hdr.Typeflag = tar.TypeBlock
			} else if st.Mode&unix.S_IFMT == unix.S_IFIFO {
				hdr.Typeflag = tar.TypeFifo
			}
			hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		}
	}
	return nil
}

// Resources are `container update`'s changes; nil fields stay as they are.
type Resources struct {
	Memory, MemorySwap, MemoryReservation int64
	CPUs                                  float64
	CPUShares                             uint64
	CpusetCpus, CpusetMems                string
	PidsLimit                             int64
	BlkioWeight                           uint16
	Restart                               *RestartPolicy
}

// Reconfigure changes a container's resource limits (live through the
// runtime's update when it runs, and in its config for the runs to come)
// and its restart policy.
func (c *Container) Reconfigure(r Resources, warn func(string)) error {
	o := Options{Memory: r.Memory, MemorySwap: r.MemorySwap, MemoryReservation: r.MemoryReservation, CPUs: r.CPUs,
		CPUShares: r.CPUShares, CpusetCpus: r.CpusetCpus, CpusetMems: r.CpusetMems, PidsLimit: r.PidsLimit, BlkioWeight: r.BlkioWeight}
	s := &specs.Spec{Linux: &specs.Linux{}}
	if err := o.resources(s); err != nil {
		return err
	}
	res := s.Linux.Resources
	if r.Restart != nil {
		if c.Meta.Remove && r.Restart.Name != "no" {
			return errors.New("--restart: the container was created with --rm")
		}
		if err := c.Update(func(m *Meta) { m.Restart = *r.Restart }); err != nil {
			return err
		}
	}
	if res.Memory == nil && res.CPU == nil && res.Pids == nil && res.BlockIO == nil {
		return nil
	}
	cfg, err := bundle.Load(c.Paths.Bundle)
	if err != nil {
		return err
	}
	if cfg.Linux.Resources == nil {
		cfg.Linux.Resources = &specs.LinuxResources{}
	}
	cur := cfg.Linux.Resources
	if res.Memory != nil {
		cur.Memory = res.Memory
	}
	if res.CPU != nil {
		cur.CPU = res.CPU
	}
	if res.Pids != nil {
		cur.Pids = res.Pids
	}
	if res.BlockIO != nil {
		cur.BlockIO = res.BlockIO
	}
	if s, _ := c.Status(); s == StatusRunning || s == StatusPaused {
		if err := c.Runtime(warn).Update(c.Meta.Name, res); err != nil {
			return err
		}
	}
	return bundle.Save(c.Paths.Bundle, cfg)
}
