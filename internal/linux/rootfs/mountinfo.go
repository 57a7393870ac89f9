package rootfs

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// MountInfo is one line of /proc/self/mountinfo.
type MountInfo struct {
	Root, Point, FSType, Source string
	// Optional are the optional fields ("shared:1 master:2").
	Optional string
}

// ReadMountinfo reads the calling process's mount table.
func ReadMountinfo() ([]MountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []MountInfo
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		if m, ok := ParseMountinfoLine(s.Text()); ok {
			out = append(out, m)
		}
	}
	return out, s.Err()
}

// ParseMountinfoLine parses one mountinfo line; ok is false for a line
// without the fields every mount has.
func ParseMountinfoLine(line string) (MountInfo, bool) {
	fields := strings.Fields(line)
	sep := -1
	for i, f := range fields {
		if f == "-" {
			sep = i
			break
		}
	}
	if sep < 6 || len(fields) < sep+3 {
		return MountInfo{}, false
	}
	return MountInfo{
		Root: UnescapeMountinfo(fields[3]), Point: UnescapeMountinfo(fields[4]),
		Optional: strings.Join(fields[6:sep], " "),
		FSType:   fields[sep+1], Source: UnescapeMountinfo(fields[sep+2]),
	}, true
}

// UnescapeMountinfo undoes mountinfo's octal escapes (\040 for a space, ...);
// a backslash not followed by three octal digits stays as it is.
func UnescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountPointOf returns the mount point holding path: the longest mount
// point that is path or one of its parents.
func MountPointOf(path string, mounts []MountInfo) string {
	best := ""
	for _, m := range mounts {
		if (path == m.Point || strings.HasPrefix(path, strings.TrimSuffix(m.Point, "/")+"/")) && len(m.Point) >= len(best) {
			best = m.Point
		}
	}
	return best
}

// HostProcSys lists the full procfs and sysfs mounts outside rootfs,
// deepest (last mounted) first: what --no-pivot must hide before its
// chroot. Those mounts stay in the container's mount namespace under the
// moved root, and the kernel allows a new procfs (or sysfs) mount in a user
// namespace whenever a fully visible one exists in the mount namespace
// (mount_too_revealing), so container code could `unshare -mrpf` and mount
// a bare, unmasked /proc (/proc/kcore, sysrq-trigger and all) in spite of
// maskedPaths (runc's no_pivot.bats regression test).
func HostProcSys(rootfs string, mounts []MountInfo) []string {
	var out []string
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		if m.Root != "/" || (m.FSType != "proc" && m.FSType != "sysfs") {
			continue
		}
		if m.Point == rootfs || strings.HasPrefix(m.Point, rootfs+"/") {
			continue
		}
		out = append(out, m.Point)
	}
	return out
}
