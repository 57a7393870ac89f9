package bundle

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// User is an image's Config.User resolved against the rootfs.
type User struct {
	UID, GID       uint32
	AdditionalGids []uint32
	Home           string // "" when the user has no passwd entry
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// maxDBSize bounds /etc/passwd and /etc/group reads: an image can make them
// huge (or a fifo, or /dev/zero through a symlink).
const maxDBSize = 8 << 20

// readInRoot reads a regular file of the rootfs with every path component,
// symlinks included, resolved inside the rootfs. Nothing from the rootfs is
// executed or loaded (no NSS modules: CVE-2019-14271).
func readInRoot(rootfs, name string) ([]byte, error) {
	root, err := os.OpenFile(rootfs, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	fd, err := unix.Openat2(int(root.Fd()), strings.TrimPrefix(name, "/"), &how)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s in the rootfs is not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxDBSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDBSize {
		return nil, fmt.Errorf("%s in the rootfs is larger than %d bytes", name, maxDBSize)
	}
	return b, nil
}

func parsePasswd(b []byte) []passwdEntry {
	var out []passwdEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), maxDBSize)
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) < 4 || f[0] == "" || strings.HasPrefix(f[0], "#") {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		e := passwdEntry{name: f[0], uid: uint32(uid), gid: uint32(gid)}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
	}
	return out
}

func parseGroup(b []byte) []groupEntry {
	var out []groupEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), maxDBSize)
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) < 3 || f[0] == "" || strings.HasPrefix(f[0], "#") {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		e := groupEntry{name: f[0], gid: uint32(gid)}
		if len(f) > 3 && f[3] != "" {
			for _, m := range strings.Split(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					e.members = append(e.members, m)
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// ResolveUser resolves an image's "user[:group]" (names or numbers) with the
// rootfs' /etc/passwd and /etc/group, following the rules runc and umoci
// use: a numeric uid needs no passwd entry, a name must have one; without a
// group the passwd entry's gid is used (0 if none), and the supplementary
// groups are those listing the user by name.
func ResolveUser(rootfs, spec string) (User, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if spec == "" {
		userPart = "0"
	}
	pwBytes, err := readInRoot(rootfs, "/etc/passwd")
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return User{}, fmt.Errorf("reading /etc/passwd: %w", err)
	}
	users := parsePasswd(pwBytes)
	var u User
	var pw *passwdEntry
	if n, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		u.UID = uint32(n)
		for i := range users {
			if users[i].uid == u.UID {
				pw = &users[i]
				break
			}
		}
	} else {
		for i := range users {
			if users[i].name == userPart {
				pw = &users[i]
				break
			}
		}
		if pw == nil {
			return User{}, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userPart)
		}
		u.UID = pw.uid
	}
	if pw != nil {
		u.GID, u.Home = pw.gid, pw.home
	}
	needGroups := hasGroup && groupPart != "" || pw != nil
	if !needGroups {
		return u, nil
	}
	grBytes, err := readInRoot(rootfs, "/etc/group")
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return User{}, fmt.Errorf("reading /etc/group: %w", err)
	}
	groups := parseGroup(grBytes)
	if hasGroup && groupPart != "" {
		if n, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			u.GID = uint32(n)
		} else {
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					u.GID, found = g.gid, true
					break
				}
			}
			if !found {
				return User{}, fmt.Errorf("unable to find group %s: no matching entries in group file", groupPart)
			}
		}
		return u, nil // an explicit group replaces the supplementary ones
	}
	seen := map[uint32]bool{u.GID: true}
	for _, g := range groups {
		for _, m := range g.members {
			if m == pw.name && !seen[g.gid] {
				seen[g.gid] = true
				u.AdditionalGids = append(u.AdditionalGids, g.gid)
			}
		}
	}
	return u, nil
}
