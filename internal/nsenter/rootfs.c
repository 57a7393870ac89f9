// The mount-namespace steps of an init plan: mounts, the cgroup view,
// /dev, the cwd, pivot_root (or --no-pivot's move, or a chroot), read-only
// and masked paths, the read-only root.
//
// The defences:
//   - every path the bundle controls is resolved inside the rootfs with
//     openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) and acted on through
//     /proc/thread-self/fd/N, never through the string again (CVE-2021-30465
//     and relatives); missing mount targets are created one component at a
//     time with mkdirat + openat(O_NOFOLLOW) from the deepest existing one;
//     a dangling symlink target is followed in-root (CVE-2019-18837);
//   - procfs and sysfs go on an ordinary directory only, reached without any
//     symlink (CVE-2019-19921, CVE-2023-27561);
//   - /dev/null must be the null device before it covers masked files
//     (CVE-2025-31133);
//   - pivot_root(".", ".") and a detached old root; the runtime binary this
//     process runs is the sealed read-only one (CVE-2019-5736);
//   - cgroup v1 hierarchies are bind mounts of the container's own cgroup
//     directories only, read-only where asked (CVE-2022-0492).
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "executor.h"

#define PATHBUF 8192

// fdpath names fd through the caller's own procfs entry.
static const char *fdpath(int fd, char *buf)
{
	snprintf(buf, 64, "/proc/thread-self/fd/%d", fd);
	return buf;
}

static int need_root(void)
{
	if (ex.root < 0)
		fail("plan: a rootfs step before open-root");
	return ex.root;
}

// clean_abs is filepath.Clean("/" + in): no empty, "." or ".." parts.
static int clean_abs(const char *in, char *out)
{
	size_t o = 1;
	out[0] = '/';
	for (const char *p = in; *p;) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *e = strchrnul(p, '/');
		size_t l = (size_t)(e - p);
		if (l == 1 && p[0] == '.') {
		} else if (l == 2 && p[0] == '.' && p[1] == '.') {
			char *last = memrchr(out, '/', o);
			o = last && last > out ? (size_t)(last - out) : 1;
		} else {
			if (o + l + 2 >= PATHBUF) {
				errno = ENAMETOOLONG;
				return -1;
			}
			if (o > 1)
				out[o++] = '/';
			memcpy(out + o, p, l);
			o += l;
		}
		p = e;
	}
	out[o] = 0;
	return 0;
}

// join_abs is filepath.Join(a, b) for an absolute a.
static int join_abs(const char *a, const char *b, char *out)
{
	char tmp[PATHBUF * 2];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/%s", a, b) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return clean_abs(tmp, out);
}

// in_root opens path inside root; the kernel keeps every step (symlinks and
// ".." included) inside it.
static int in_root(int root, const char *path, int flags, uint64_t resolve)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | resolve,
	};
	for (int i = 0; i < 128; i++) {
		int fd = (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
		if (fd >= 0 || errno != EAGAIN)
			return fd;
	}
	return -1; // EAGAIN: a rename race that would not stop
}

// mkdir_all makes dir inside root: from the deepest component that
// resolves in-root, each missing one is made with mkdirat and entered with
// O_NOFOLLOW, so a symlink planted meanwhile (or a dangling one already
// there) fails instead of leading anywhere. Returns an O_PATH handle.
static int mkdir_all(int root, const char *dir)
{
	char c[PATHBUF], pre[PATHBUF];
	if (clean_abs(dir, c) < 0)
		return -1;
	int parent = in_root(root, c, O_PATH | O_DIRECTORY, 0);
	if (parent >= 0 || errno != ENOENT)
		return parent;
	size_t cut = strlen(c);
	for (;;) {
		while (cut > 0 && c[cut - 1] != '/')
			cut--;
		size_t plen = cut > 1 ? cut - 1 : 1;
		memcpy(pre, c, plen);
		pre[plen] = 0;
		parent = in_root(root, pre, O_PATH | O_DIRECTORY, 0);
		if (parent >= 0)
			break;
		if (errno != ENOENT || plen == 1)
			return -1;
		cut = plen;
	}
	for (const char *p = c + cut; *p;) {
		const char *e = strchrnul(p, '/');
		char name[NAME_MAX + 1];
		size_t l = (size_t)(e - p);
		if (l > NAME_MAX) {
			close(parent);
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(name, p, l);
		name[l] = 0;
		if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST) {
			int err = errno;
			close(parent);
			errno = err;
			return -1;
		}
		int next = openat(parent, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int err = errno;
		close(parent);
		if (next < 0) {
			errno = err;
			return -1;
		}
		parent = next;
		p = *e ? e + 1 : e;
	}
	return parent;
}

static int split(const char *clean, char *dir, char *base)
{
	const char *slash = strrchr(clean, '/');
	size_t dl = (size_t)(slash - clean) + 1;
	memcpy(dir, clean, dl);
	dir[dl] = 0;
	if (strlen(slash + 1) > NAME_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(base, slash + 1);
	return 0;
}

// expand_dangling_parent: the first component of dir that does not
// resolve, if it is a symlink, replaced by its target (read through the
// in-root handle of its parent). The result is resolved in-root again by
// the caller, so the worst a racer can achieve is a directory elsewhere
// inside the rootfs.
static int expand_dangling_parent(int root, const char *dir, char *out)
{
	char c[PATHBUF], prefix[PATHBUF], next[PATHBUF], link[PATHBUF];
	if (clean_abs(dir, c) < 0)
		return 0;
	strcpy(prefix, "/");
	for (const char *p = c + 1; *p;) {
		const char *e = strchrnul(p, '/');
		char name[NAME_MAX + 1];
		size_t l = (size_t)(e - p);
		if (l > NAME_MAX)
			return 0;
		memcpy(name, p, l);
		name[l] = 0;
		if (join_abs(prefix, name, next) < 0)
			return 0;
		int h = in_root(root, next, O_PATH, 0);
		if (h >= 0) {
			close(h);
			strcpy(prefix, next);
			p = *e ? e + 1 : e;
			continue;
		}
		int ph = in_root(root, prefix, O_PATH, 0);
		if (ph < 0)
			return 0;
		ssize_t n = readlinkat(ph, name, link, sizeof(link) - 1);
		close(ph);
		if (n < 0)
			return 0;
		link[n] = 0;
		char target[PATHBUF];
		if (link[0] != '/') {
			if (join_abs(prefix, link, target) < 0)
				return 0;
		} else if (clean_abs(link, target) < 0) {
			return 0;
		}
		return join_abs(target, *e ? e + 1 : "", out) == 0;
	}
	return 0;
}

// ensure_target resolves dest in-root, creating it (a directory, or an
// empty file) when missing, dangling symlinks followed in-root (an image's
// /etc/resolv.conf -> /run/resolv.conf gets its target inside the rootfs,
// never beside the symlink's host-side meaning); an O_PATH handle.
static int ensure_target(int root, const char *dest0, int is_file, int *created)
{
	char dest[PATHBUF], dir[PATHBUF], base[NAME_MAX + 1], next[PATHBUF];
	if (created)
		*created = 0;
	if (clean_abs(dest0, dest) < 0)
		return -1;
	for (int hops = 0;; hops++) {
		int h = in_root(root, dest, O_PATH, 0);
		if (h >= 0)
			return h;
		if (hops >= 40) {
			errno = ELOOP;
			return -1;
		}
		if (split(dest, dir, base) < 0)
			return -1;
		int d = mkdir_all(root, dir);
		if (d < 0) {
			int err = errno;
			if (expand_dangling_parent(root, dir, next) && join_abs(next, base, dest) == 0)
				continue;
			errno = err;
			return -1;
		}
		int rc = is_file ? mknodat(d, base, S_IFREG | 0644, 0) : mkdirat(d, base, 0755);
		int err = errno;
		if (rc == 0 || err != EEXIST) {
			close(d);
			if (rc < 0) {
				errno = err;
				return -1;
			}
			if (created)
				*created = 1;
			return in_root(root, dest, O_PATH, 0);
		}
		// Something is there but does not resolve: a dangling symlink.
		char link[PATHBUF];
		ssize_t n = readlinkat(d, base, link, sizeof(link) - 1);
		close(d);
		if (n < 0) {
			errno = err;
			return -1;
		}
		link[n] = 0;
		if (link[0] != '/') {
			if (join_abs(dir, link, dest) < 0)
				return -1;
		} else if (clean_abs(link, dest) < 0) {
			return -1;
		}
	}
}

// remount_bind applies flags to a bind mount, keeping the locked flags
// (nodev, nosuid, noexec, atime) that an unprivileged remount may not clear.
static int remount_bind(const char *path, unsigned long flags)
{
	struct statfs st;
	if (statfs(path, &st) == 0)
		flags |= (unsigned long)st.f_flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
	return mount("", path, "", MS_BIND | MS_REMOUNT | flags, NULL);
}

// reopen resolves dest in-root again: after a mount, the earlier handle
// names the covered directory, not the new mount.
static int reopen(const char *pfx, const char *dest)
{
	int t = in_root(need_root(), dest, O_PATH, 0);
	if (t < 0)
		fail("%s: open %s: %s", pfx, dest, errtext(errno));
	return t;
}

static const char *nz(const char *s) { return *s ? s : NULL; }

void step_host_mount(struct reader *r)
{
	char *src = rdstr(r), *target = rdstr(r), *fstype = rdstr(r);
	unsigned long flags = (unsigned long)rd64(r);
	char *data = rdstr(r), *err = rdstr(r);
	if (mount(src, target, fstype, flags, nz(data)) < 0)
		fail("%s: %s", err, errtext(errno));
}

void step_open_root(struct reader *r)
{
	char *path = rdstr(r);
	if (ex.root >= 0)
		close(ex.root);
	ex.root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (ex.root < 0)
		fail("open %s: %s", path, errtext(errno));
}

static void copy_tree(int src, int dst, int depth, const char *pfx);

// mount_tmpcopyup is a tmpfs with runc's "tmpcopyup": it starts with a copy
// of what the image has at the destination (podman adds it to every tmpfs,
// and to /run, /tmp and /var/tmp under --read-only). The directory is held
// open before the tmpfs covers it, so the copy reads the covered contents
// through that fd; every entry is opened relative to its parent with
// O_NOFOLLOW, so nothing outside the rootfs is read or written.
static void mount_tmpcopyup(const char *pfx, int target, const char *dest, unsigned long flags, const char *data)
{
	char p1[64];
	int old = openat(target, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (old < 0)
		fail("%s: tmpcopyup: %s is not a directory: %s", pfx, dest, errtext(errno));
	unsigned long f = flags & ~(unsigned long)(MS_REMOUNT | MS_RDONLY);
	if (mount("tmpfs", fdpath(target, p1), "tmpfs", f, nz(data)) < 0)
		fail("%s: %s", pfx, errtext(errno));
	int nt = reopen(pfx, dest);
	int dst = openat(nt, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dst < 0)
		fail("%s: open %s: %s", pfx, dest, errtext(errno));
	copy_tree(old, dst, 0, pfx);
	struct stat st;
	if (fstat(old, &st) == 0) {
		if (!strstr(data, "mode="))
			(void)fchmod(dst, st.st_mode & 07777);
		(void)fchown(dst, st.st_uid, st.st_gid);
	}
	if ((flags & MS_RDONLY) && mount("", fdpath(nt, p1), "", MS_REMOUNT | MS_RDONLY | f, nz(data)) < 0)
		fail("%s: remount read-only %s: %s", pfx, dest, errtext(errno));
	close(dst);
	close(nt);
	close(old);
}

static void copy_entry(int src, int dst, const char *name, int depth, const char *pfx)
{
	struct stat st;
	if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
	mode_t perm = st.st_mode & 07777;
	switch (st.st_mode & S_IFMT) {
	case S_IFDIR: {
		if (mkdirat(dst, name, 0700) < 0 && errno != EEXIST)
			fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
		int s = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int t = s < 0 ? -1 : openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (t < 0)
			fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
		copy_tree(s, t, depth + 1, pfx);
		if (fchmod(t, perm) < 0)
			fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
		close(s);
		close(t);
		break;
	}
	case S_IFREG: {
		int s = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		int t = s < 0 ? -1 : openat(dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (t < 0)
			fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
		char buf[65536];
		for (;;) {
			ssize_t n = read(s, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
			if (n == 0)
				break;
			for (ssize_t w = 0; w < n;) {
				ssize_t k = write(t, buf + w, (size_t)(n - w));
				if (k < 0 && errno == EINTR)
					continue;
				if (k < 0)
					fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
				w += k;
			}
		}
		if (fchmod(t, perm) < 0)
			fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
		close(s);
		close(t);
		break;
	}
	case S_IFLNK: {
		char link[PATHBUF];
		ssize_t n = readlinkat(src, name, link, sizeof(link) - 1);
		if (n < 0)
			fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
		link[n] = 0;
		if (symlinkat(link, dst, name) < 0)
			fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
		break;
	}
	case S_IFCHR:
	case S_IFBLK:
	case S_IFIFO:
		if (mknodat(dst, name, st.st_mode, st.st_rdev) < 0)
			fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
		break;
	default:
		return; // sockets are not copied
	}
	if (fchownat(dst, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
		fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
	struct timespec ts[2] = {st.st_atim, st.st_mtim};
	if (utimensat(dst, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
		fail("%s: tmpcopyup %s: %s", pfx, name, errtext(errno));
}

// copy_tree copies the contents of directory src into directory dst:
// directories, regular files, symlinks, device nodes and fifos, with modes,
// owners and times.
static void copy_tree(int src, int dst, int depth, const char *pfx)
{
	if (depth > 128)
		fail("%s: tmpcopyup: directories nested too deep", pfx);
	int d = openat(src, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = d < 0 ? NULL : fdopendir(d);
	if (!dir)
		fail("%s: tmpcopyup: %s", pfx, errtext(errno));
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		copy_entry(src, dst, e->d_name, depth, pfx);
	}
	closedir(dir);
}

void step_mount(struct reader *r)
{
	char p1[64], p2[64];
	uint32_t kind = rd32(r), mflags = rd32(r);
	char *pfx = rdstr(r), *src = rdstr(r), *dest = rdstr(r), *type = rdstr(r), *data = rdstr(r);
	unsigned long flags = (unsigned long)rd64(r);
	uint32_t nprop = rd32(r);
	if (nprop > 64)
		fail("plan: step %s: bad propagation list", r->step);
	unsigned long prop[64];
	for (uint32_t i = 0; i < nprop; i++)
		prop[i] = (unsigned long)rd64(r);
	uint64_t attr_set = rd64(r), attr_clr = rd64(r);
	uint32_t index = rd32(r);
	int root = need_root();

	int is_file = 0, mfd = -1;
	if (kind == MOUNT_BIND || kind == MOUNT_ATTACH) {
		struct stat st;
		int rc = -1;
		if (kind == MOUNT_BIND)
			rc = stat(src, &st);
		if (rc < 0 && (kind == MOUNT_ATTACH || (mflags & MOUNTF_ASK_SOURCE))) {
			// The runtime opens it, from this mount namespace, with the
			// host's privileges (an idmapped mount; a source this user
			// namespace's root cannot reach).
			mfd = ask_mount_source(index, pfx);
			rc = fstat(mfd, &st);
		}
		if (rc < 0)
			fail("%s: stat %s: %s", pfx, src, errtext(errno));
		is_file = !S_ISDIR(st.st_mode);
	}
	int created;
	int t = ensure_target(root, dest, is_file, &created);
	if (t < 0)
		fail("%s: create mount target %s: %s", pfx, dest, errtext(errno));
	const char *tp = fdpath(t, p1);
	char moded[4096];
	if ((mflags & MOUNTF_INHERIT_MODE) && !created) {
		// The directory the tmpfs covers keeps its mode (runc).
		struct stat st;
		if (fstat(t, &st) == 0 && S_ISDIR(st.st_mode)) {
			if ((size_t)snprintf(moded, sizeof(moded), "%s%smode=%o", data, *data ? "," : "", st.st_mode & 07777) >= sizeof(moded))
				fail("%s: mount data too long", pfx);
			data = moded;
		}
	}
	switch (kind) {
	case MOUNT_ATTACH:
	case MOUNT_BIND: {
		if (kind == MOUNT_ATTACH) {
			// The detached (idmapped) mount the runtime made; then the
			// flags a bind takes only on a remount.
			if (syscall(SYS_move_mount, mfd, "", t, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
				fail("%s: move_mount: %s", pfx, errtext(errno));
		} else if (mount(mfd >= 0 ? fdpath(mfd, p2) : src, tp, "", MS_BIND | (flags & MS_REC), NULL) < 0) {
			fail("%s: %s", pfx, errtext(errno));
		}
		if (mfd >= 0)
			close(mfd);
		// Bind mounts ignore most flags on the first call: remount to apply.
		unsigned long extra = flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT);
		if (extra) {
			int t2 = reopen(pfx, dest);
			if (remount_bind(fdpath(t2, p2), extra) < 0)
				fail("%s: remount %s: %s", pfx, p2, errtext(errno));
			close(t2);
		}
		break;
	}
	case MOUNT_TMPCOPYUP:
		mount_tmpcopyup(pfx, t, dest, flags, data);
		break;
	case MOUNT_KERNEL:
	case MOUNT_FS: {
		int d = -1;
		if (kind == MOUNT_KERNEL) {
			// Mount on the directory itself, never through a symlink.
			d = in_root(root, dest, O_PATH | O_DIRECTORY, RESOLVE_NO_SYMLINKS);
			if (d < 0 && (errno == ELOOP || errno == ENOTDIR))
				fail("%s: %s must be mounted on ordinary directory", pfx, dest);
			if (d < 0)
				fail("%s: open mount target %s: %s", pfx, dest, errtext(errno));
			tp = fdpath(d, p1);
		}
		if (mount(src, tp, type, flags & ~(unsigned long)MS_REMOUNT, nz(data)) < 0) {
			if (!(errno == EPERM && (mflags & MOUNTF_MQUEUE_USERNS)))
				fail("%s: %s", pfx, errtext(errno));
			// No ipc namespace of our own: bind the host's instead, like runc.
			if (mount("/dev/mqueue", tp, "", MS_BIND | MS_REC, NULL) < 0)
				fail("%s: %s", pfx, errtext(errno));
		}
		if (d >= 0)
			close(d);
		break;
	}
	default:
		fail("plan: step %s: unknown mount kind %u", r->step, kind);
	}
	close(t);
	if (nprop > 0 || attr_set || attr_clr) {
		int t2 = reopen(pfx, dest);
		for (uint32_t i = 0; i < nprop; i++) {
			if (mount("", fdpath(t2, p2), "", prop[i], NULL) < 0)
				fail("%s: set propagation %s: %s", pfx, dest, errtext(errno));
		}
		if (attr_set || attr_clr) {
			struct mount_attr a = {.attr_set = attr_set, .attr_clr = attr_clr};
			if (syscall(SYS_mount_setattr, t2, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof(a)) < 0)
				fail("%s: mount_setattr %s: %s", pfx, dest, errtext(errno));
		}
		close(t2);
	}
}

void step_mount_cgroup(struct reader *r)
{
	char p1[64], p2[64];
	char *pfx = rdstr(r), *dest = rdstr(r);
	unsigned long flags = (unsigned long)rd64(r);
	uint32_t mode = rd32(r);
	char *unified = mode == CGROUP_V2_BIND ? rdstr(r) : NULL;
	uint32_t nh = mode == CGROUP_V1_BINDS ? rd32(r) : 0;
	int root = need_root();
	if (mode > CGROUP_V2_BIND)
		fail("plan: step %s: unknown cgroup mode %u", r->step, mode);
	int t = ensure_target(root, dest, 0, NULL);
	if (t < 0)
		fail("%s: create mount target %s: %s", pfx, dest, errtext(errno));
	int ro = (flags & MS_RDONLY) != 0;
	unsigned long base = flags & ~(unsigned long)(MS_RDONLY | MS_BIND | MS_REC | MS_REMOUNT);
	if (mode == CGROUP_V2_NS) {
		if (mount("cgroup2", fdpath(t, p1), "cgroup2", flags & ~(unsigned long)(MS_BIND | MS_REC), NULL) < 0)
			fail("%s: %s", pfx, errtext(errno));
		close(t);
		return;
	}
	if (mode == CGROUP_V2_BIND) {
		if (mount(unified, fdpath(t, p1), "", MS_BIND | MS_REC, NULL) < 0)
			fail("%s: %s", pfx, errtext(errno));
		close(t);
		if (ro) {
			int t2 = reopen(pfx, dest);
			if (remount_bind(fdpath(t2, p2), MS_RDONLY | base) < 0)
				fail("%s: remount %s: %s", pfx, p2, errtext(errno));
			close(t2);
		}
		return;
	}
	if (mount("tmpfs", fdpath(t, p1), "tmpfs", base, "mode=755") < 0)
		fail("%s: %s", pfx, errtext(errno));
	close(t);
	// The tmpfs was mounted just now, by us: its one-level entries are
	// ours, made and opened relative to it (O_NOFOLLOW all the same).
	int tmp = reopen(pfx, dest);
	for (uint32_t i = 0; i < nh; i++) {
		char *name = rdstr(r), *src = rdstr(r);
		if (strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || !*name)
			fail("plan: step %s: bad hierarchy name", r->step);
		if (mkdirat(tmp, name, 0755) < 0 && errno != EEXIST)
			fail("%s: mkdir %s/%s: %s", pfx, dest, name, errtext(errno));
		int e = openat(tmp, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (e < 0)
			fail("%s: open %s/%s: %s", pfx, dest, name, errtext(errno));
		if (mount(src, fdpath(e, p1), "", MS_BIND | MS_REC, NULL) < 0)
			fail("%s: bind cgroup %s/%s: %s", pfx, dest, name, errtext(errno));
		close(e);
		e = openat(tmp, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); // now the bind mount
		if (e < 0)
			fail("%s: open %s/%s: %s", pfx, dest, name, errtext(errno));
		if (remount_bind(fdpath(e, p1), base | MS_NOSUID | MS_NODEV | MS_NOEXEC | (ro ? MS_RDONLY : 0)) < 0)
			fail("%s: remount %s: %s", pfx, p1, errtext(errno));
		close(e);
		if (strchr(name, ',')) {
			// cpu -> cpu,cpuacct style aliases, as on the host.
			char alias[NAME_MAX + 1];
			for (const char *p = name; *p;) {
				const char *c = strchrnul(p, ',');
				size_t l = (size_t)(c - p);
				if (l > 0 && l <= NAME_MAX) {
					memcpy(alias, p, l);
					alias[l] = 0;
					(void)symlinkat(name, tmp, alias);
				}
				p = *c ? c + 1 : c;
			}
		}
	}
	if (ro && remount_bind(fdpath(tmp, p2), MS_RDONLY | base) < 0)
		fail("%s: remount %s: %s", pfx, p2, errtext(errno));
	close(tmp);
}

// step_devices makes the nodes (mknod, replacing what is there; in a user
// namespace, where mknod is not permitted, a bind mount of the host's node
// over an empty file) and the /dev links, with umask 0.
void step_devices(struct reader *r)
{
	char dir[PATHBUF], base[NAME_MAX + 1], p1[64];
	int bind = rdflag(r);
	uint32_t n = rd32(r);
	int root = need_root();
	if (n > 65536)
		fail("plan: step %s: bad device list", r->step);
	mode_t old = umask(0);
	for (uint32_t i = 0; i < n; i++) {
		char *pfx = rdstr(r), *clean = rdstr(r);
		uint32_t mode = rd32(r);
		uint64_t dev = rd64(r);
		uint32_t uid = rd32(r), gid = rd32(r);
		if (clean[0] != '/' || split(clean, dir, base) < 0 || !*base)
			fail("%s: bad device path", pfx);
		int parent = mkdir_all(root, dir);
		if (parent < 0)
			fail("%s: %s", pfx, errtext(errno));
		if (bind) {
			if (mknodat(parent, base, S_IFREG | 0644, 0) < 0 && errno != EEXIST)
				fail("%s: %s", pfx, errtext(errno));
			int t = in_root(root, clean, O_PATH, 0);
			if (t < 0 || mount(clean, fdpath(t, p1), "", MS_BIND, NULL) < 0)
				fail("%s: %s", pfx, errtext(errno));
			close(t);
		} else {
			(void)unlinkat(parent, base, 0);
			if (mknodat(parent, base, (mode_t)mode, (dev_t)dev) < 0)
				fail("%s: %s", pfx, errtext(errno));
			if (fchownat(parent, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
				fail("%s: %s", pfx, errtext(errno));
		}
		close(parent);
	}
	uint32_t nl = rd32(r);
	if (nl > 64)
		fail("plan: step %s: bad link list", r->step);
	int devfd = in_root(root, "/dev", O_PATH, 0);
	if (devfd < 0)
		fail("open /dev: %s", errtext(errno));
	for (uint32_t i = 0; i < nl; i++) {
		char *target = rdstr(r), *name = rdstr(r);
		if (strchr(name, '/'))
			fail("plan: step %s: bad link name", r->step);
		if (strcmp(name, "ptmx") == 0)
			(void)unlinkat(devfd, "ptmx", 0); // must point at the container's devpts
		if (symlinkat(target, devfd, name) < 0 && errno != EEXIST)
			fail("symlink /dev/%s: %s", name, errtext(errno));
	}
	close(devfd);
	umask(old);
}

void step_mkdir_in_root(struct reader *r)
{
	char *path = rdstr(r), *err = rdstr(r);
	int root = need_root();
	int h = in_root(root, path, O_PATH, 0);
	if (h < 0 && errno != ENOENT)
		fail("%s: %s", err, errtext(errno));
	if (h < 0)
		h = mkdir_all(root, path);
	if (h < 0)
		fail("%s: %s", err, errtext(errno));
	close(h);
}

static void close_root(void)
{
	if (ex.root >= 0)
		close(ex.root);
	ex.root = -1;
}

// step_pivot_root: pivot_root(".", ".") needs no directory inside the
// rootfs for the old root; the old root is made rslave (its unmount must
// not reach the host) and detached.
void step_pivot_root(struct reader *r)
{
	char *rootfs = rdstr(r);
	close_root();
	int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (oldroot < 0)
		fail("open /: %s", errtext(errno));
	int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (newroot < 0)
		fail("open %s: %s", rootfs, errtext(errno));
	if (fchdir(newroot) < 0)
		fail("chdir %s: %s", rootfs, errtext(errno));
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail("pivot_root %s: %s", rootfs, errtext(errno));
	if (fchdir(oldroot) < 0)
		fail("chdir to the old root: %s", errtext(errno));
	if (mount("", ".", "", MS_SLAVE | MS_REC, NULL) < 0)
		fail("make old root rslave .: %s", errtext(errno));
	if (umount2(".", MNT_DETACH) < 0)
		fail("unmount old root .: %s", errtext(errno));
	if (chdir("/") < 0)
		fail("chdir /: %s", errtext(errno));
	close(oldroot);
	close(newroot);
}

// step_move_root is --no-pivot: the full procfs and sysfs mounts outside
// the rootfs are detached (or covered by an empty tmpfs where the unmount
// is refused; see rootfs.HostProcSys for why), then the rootfs is moved
// over / and chrooted into. Weaker than pivot_root (the old root stays
// reachable to a process with CAP_SYS_CHROOT), which is why runc warns
// about it, and so does the runtime.
void step_move_root(struct reader *r)
{
	uint32_t n;
	char *rootfs = rdstr(r);
	char **detach = rdstrs(r, &n, 0);
	close_root();
	for (uint32_t i = 0; i < n; i++) {
		const char *p = detach[i];
		if (mount("", p, "", MS_SLAVE | MS_REC, NULL) < 0 && errno != ENOENT)
			fail("make host mount rslave %s: %s", p, errtext(errno));
		if (umount2(p, MNT_DETACH) == 0 || errno == ENOENT)
			continue;
		if (errno != EINVAL && errno != EPERM)
			fail("detach host mount %s: %s", p, errtext(errno));
		if (mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL) < 0)
			fail("cover host mount %s: %s", p, errtext(errno));
	}
	free(detach);
	if (chdir(rootfs) < 0)
		fail("chdir %s: %s", rootfs, errtext(errno));
	if (mount(rootfs, "/", "", MS_MOVE, NULL) < 0)
		fail("move rootfs %s: %s", rootfs, errtext(errno));
	if (chroot(".") < 0)
		fail("chroot %s: %s", rootfs, errtext(errno));
	if (chdir("/") < 0)
		fail("chdir /: %s", errtext(errno));
}

void step_chroot(struct reader *r)
{
	char *rootfs = rdstr(r);
	close_root();
	if (chroot(rootfs) < 0)
		fail("chroot %s: %s", rootfs, errtext(errno));
	if (chdir("/") < 0)
		fail("chdir /: %s", errtext(errno));
}

// The steps after pivot_root resolve in the new root.
static int new_root(void)
{
	int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		fail("open /: %s", errtext(errno));
	return root;
}

void step_readonly_path(struct reader *r)
{
	char p1[64], p2[64];
	char *path = rdstr(r);
	int root = new_root();
	int t = in_root(root, path, O_PATH, 0);
	if (t < 0 && errno == ENOENT) {
		close(root);
		return;
	}
	if (t < 0)
		fail("readonly path %s: %s", path, errtext(errno));
	int rc = mount(fdpath(t, p1), fdpath(t, p2), "", MS_BIND | MS_REC, NULL);
	int err = errno;
	close(t);
	if (rc < 0)
		fail("readonly path %s: %s", path, errtext(err));
	t = in_root(root, path, O_PATH, 0);
	if (t < 0)
		fail("readonly path %s: %s", path, errtext(errno));
	if (remount_bind(fdpath(t, p1), MS_RDONLY | MS_REC) < 0)
		fail("readonly path %s: remount %s: %s", path, p1, errtext(errno));
	close(t);
	close(root);
}

// step_mask_paths covers files with /dev/null (checked to be the null
// device) and directories with an empty read-only tmpfs; missing paths are
// skipped.
void step_mask_paths(struct reader *r)
{
	char p1[64], p2[64];
	uint32_t n;
	char **paths = rdstrs(r, &n, 0);
	char *data = rdstr(r);
	int root = new_root();
	int null = in_root(root, "/dev/null", O_PATH, 0);
	if (null < 0)
		fail("open /dev/null for masking: %s", errtext(errno));
	struct stat st;
	if (fstat(null, &st) < 0)
		fail("stat /dev/null: %s", errtext(errno));
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 1 || minor(st.st_rdev) != 3)
		fail("/dev/null is not the null device");
	// Every masked directory shares one empty read-only tmpfs (runc): the
	// first gets it, the others a bind of it.
	int shared = -1;
	for (uint32_t i = 0; i < n; i++) {
		int t = in_root(root, paths[i], O_PATH, 0);
		if (t < 0 && errno == ENOENT)
			continue;
		if (t < 0)
			fail("masking %s: %s", paths[i], errtext(errno));
		int rc = fstat(t, &st);
		if (rc == 0 && S_ISDIR(st.st_mode) && shared >= 0) {
			rc = mount(fdpath(shared, p2), fdpath(t, p1), "", MS_BIND, NULL);
		} else if (rc == 0 && S_ISDIR(st.st_mode)) {
			rc = mount("tmpfs", fdpath(t, p1), "tmpfs", MS_RDONLY, nz(data));
			if (rc == 0 && (shared = in_root(root, paths[i], O_PATH | O_DIRECTORY, 0)) < 0)
				rc = -1;
		} else if (rc == 0) {
			rc = mount(fdpath(null, p2), fdpath(t, p1), "", MS_BIND, NULL);
		}
		int err = errno;
		close(t);
		if (rc < 0)
			fail("masking %s: %s", paths[i], errtext(err));
	}
	if (shared >= 0)
		close(shared);
	close(null);
	close(root);
	free(paths);
}

void step_remount_readonly(struct reader *r)
{
	char *path = rdstr(r);
	if (remount_bind(path, MS_RDONLY) < 0)
		fail("remount %s: %s", path, errtext(errno));
}

void step_readonly_tree(struct reader *r)
{
	char *path = rdstr(r);
	int t = in_root(need_root(), path, O_PATH | O_DIRECTORY, 0);
	if (t < 0 && errno == ENOENT)
		return;
	if (t < 0)
		fail("read-only %s: %s", path, errtext(errno));
	struct mount_attr a = {.attr_set = MOUNT_ATTR_RDONLY};
	if (syscall(SYS_mount_setattr, t, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof(a)) < 0)
		fail("read-only %s: mount_setattr: %s", path, errtext(errno));
	close(t);
}
