// The rootfs section of an init plan (internal/runtime/fastinit.go): what
// internal/initproc and internal/linux/rootfs do for a container's init up to
// its process setup, in the same order and with the same error texts where
// the Go path words them itself, for the configurations the runtime sends
// here (no hooks, terminal, user namespace, --no-pivot, LSM labels, sysctls,
// oomScoreAdj, shared root propagation, tmpcopyup or mounts inside /proc).
//
// The defences are the Go path's:
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
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "plan.h"

// Must match internal/runtime/fastinit.go.
#define I_WAIT_PLACED 1u
#define I_PLACED_EARLY 2u
#define I_UNSHARE_CGROUPNS 4u
#define I_NEW_UTS 8u
#define I_NO_KEYRING 16u
#define I_RO_ROOT 32u
#define I_DEVICES 64u

#define M_BIND 0u
#define M_FS 1u
#define M_KERNEL 2u
#define M_CGROUP 3u

#define CG_V1_BINDS 0u
#define CG_V2_NS 1u
#define CG_V2_BIND 2u

#define PATHBUF 8192
#define MAX_MOUNTS 4096

#ifndef KEYCTL_JOIN_SESSION_KEYRING
#define KEYCTL_JOIN_SESSION_KEYRING 1
#endif

static char eb[128];
#define E(err) errtext((err), eb, sizeof(eb))

// fdpath names fd through the caller's own procfs entry.
static const char *fdpath(int fd, char *buf)
{
	snprintf(buf, 64, "/proc/thread-self/fd/%d", fd);
	return buf;
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

// mkdir_all makes dir inside root (pathrs-lite's MkdirAllHandle): from the
// deepest component that resolves in-root, each missing one is made with
// mkdirat and entered with O_NOFOLLOW, so a symlink planted meanwhile (or a
// dangling one already there) fails instead of leading anywhere.
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

// expand_dangling_parent is rootfs.expandDanglingParent: the first component
// of dir that does not resolve, if it is a symlink, replaced by its target.
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

// ensure_target is rootfs.ensureTarget: dest resolved in-root, created (a
// directory, or an empty file) when missing, dangling symlinks followed
// in-root; an O_PATH handle. On failure, why names the step.
static int ensure_target(int root, const char *dest0, int is_file, const char **why)
{
	char dest[PATHBUF], dir[PATHBUF], base[NAME_MAX + 1], next[PATHBUF];
	*why = "create mount target";
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
		int r;
		if (!is_file) {
			r = mkdirat(d, base, 0755);
		} else {
			r = openat(d, base, O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_WRONLY, 0644);
			if (r >= 0)
				r = close(r);
		}
		int err = errno;
		if (r == 0 || err != EEXIST) {
			close(d);
			if (r < 0) {
				errno = err;
				return -1;
			}
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

// remount_bind is rootfs.remountBind: flags applied to a bind mount, keeping
// the locked ones an unprivileged remount may not clear.
static int remount_bind(const char *path, unsigned long flags)
{
	struct statfs st;
	if (statfs(path, &st) == 0)
		flags |= (unsigned long)st.f_flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
	return mount("", path, "", MS_BIND | MS_REMOUNT | flags, NULL);
}

static void wait_placed(int pipe_fd, uint32_t flags)
{
	char b;
	read_full(pipe_fd, &b, 1);
	if (b != 'P')
		fail("unexpected message while waiting for cgroup placement");
	if ((flags & I_UNSHARE_CGROUPNS) && unshare(CLONE_NEWCGROUP) < 0)
		fail("unshare cgroup namespace: %s", E(errno));
}

// The cgroup mount: cgroup2 in a cgroup namespace, a bind of the unified
// cgroup, or (v1 and hybrid hosts) a tmpfs of bind mounts of the
// container's own cgroup in each hierarchy.
static void mount_cgroup(struct reader *r, int root, const char *pfx, const char *dest, unsigned long flags)
{
	char p1[64], p2[64];
	const char *why;
	uint32_t mode = rd32(r);
	char *unified = mode == CG_V2_BIND ? rdstr(r) : NULL;
	uint32_t nh = mode == CG_V1_BINDS ? rd32(r) : 0;
	int t = ensure_target(root, dest, 0, &why);
	if (t < 0)
		fail("%s: %s %s: %s", pfx, why, dest, E(errno));
	int ro = (flags & MS_RDONLY) != 0;
	unsigned long base = flags & ~(unsigned long)(MS_RDONLY | MS_BIND | MS_REC | MS_REMOUNT);
	if (mode == CG_V2_NS) {
		if (mount("cgroup2", fdpath(t, p1), "cgroup2", flags & ~(unsigned long)(MS_BIND | MS_REC), NULL) < 0)
			fail("%s: %s", pfx, E(errno));
		close(t);
		return;
	}
	if (mode == CG_V2_BIND) {
		if (mount(unified, fdpath(t, p1), "", MS_BIND | MS_REC, NULL) < 0)
			fail("%s: %s", pfx, E(errno));
		close(t);
		if (ro) {
			int t2 = in_root(root, dest, O_PATH, 0);
			if (t2 < 0 || remount_bind(fdpath(t2, p2), MS_RDONLY | base) < 0)
				fail("%s: remount %s: %s", pfx, p2, E(errno));
			close(t2);
		}
		return;
	}
	if (mount("tmpfs", fdpath(t, p1), "tmpfs", base, "mode=755") < 0)
		fail("%s: %s", pfx, E(errno));
	close(t);
	int tmp = in_root(root, dest, O_PATH, 0);
	if (tmp < 0)
		fail("%s: open %s: %s", pfx, dest, E(errno));
	for (uint32_t i = 0; i < nh; i++) {
		char *name = rdstr(r), *src = rdstr(r);
		if (mkdirat(tmp, name, 0755) < 0 && errno != EEXIST)
			fail("%s: mkdir %s/%s: %s", pfx, dest, name, E(errno));
		int e = openat(tmp, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (e < 0)
			fail("%s: open %s/%s: %s", pfx, dest, name, E(errno));
		if (mount(src, fdpath(e, p1), "", MS_BIND | MS_REC, NULL) < 0)
			fail("%s: bind cgroup %s/%s: %s", pfx, dest, name, E(errno));
		close(e);
		e = openat(tmp, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); // now the bind mount
		if (e < 0)
			fail("%s: open %s/%s: %s", pfx, dest, name, E(errno));
		if (remount_bind(fdpath(e, p1), base | MS_NOSUID | MS_NODEV | MS_NOEXEC | (ro ? MS_RDONLY : 0)) < 0)
			fail("%s: remount %s: %s", pfx, p1, E(errno));
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
		fail("%s: remount %s: %s", pfx, p2, E(errno));
	close(tmp);
}

// mount_one is rootfs.mountOne for one planned mount.
static void mount_one(struct reader *r, int root)
{
	char p1[64], p2[64];
	const char *why;
	uint32_t kind = rd32(r);
	char *pfx = rdstr(r), *src = rdstr(r), *dest = rdstr(r), *type = rdstr(r), *data = rdstr(r);
	unsigned long flags = (unsigned long)rd64(r);
	uint32_t nprop = rd32(r);
	if (nprop > 64)
		fail("plan: bad propagation list");
	unsigned long prop[64];
	for (uint32_t i = 0; i < nprop; i++)
		prop[i] = (unsigned long)rd64(r);
	uint64_t attr_set = rd64(r), attr_clr = rd64(r);
	if (kind == M_CGROUP) {
		mount_cgroup(r, root, pfx, dest, flags);
		return;
	}
	int is_file = 0;
	if (kind == M_BIND) {
		struct stat st;
		if (stat(src, &st) < 0)
			fail("%s: stat %s: %s", pfx, src, E(errno));
		is_file = !S_ISDIR(st.st_mode);
	}
	int t = ensure_target(root, dest, is_file, &why);
	if (t < 0)
		fail("%s: %s %s: %s", pfx, why, dest, E(errno));
	const char *tp = fdpath(t, p1);
	if (kind == M_BIND) {
		if (mount(src, tp, "", MS_BIND | (flags & MS_REC), NULL) < 0)
			fail("%s: %s", pfx, E(errno));
		// Bind mounts ignore most flags on the first call: remount to apply.
		unsigned long extra = flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT);
		if (extra) {
			int t2 = in_root(root, dest, O_PATH, 0);
			if (t2 < 0)
				fail("%s: open %s: %s", pfx, dest, E(errno));
			if (remount_bind(fdpath(t2, p2), extra) < 0)
				fail("%s: remount %s: %s", pfx, p2, E(errno));
			close(t2);
		}
	} else {
		int d = -1;
		if (kind == M_KERNEL) {
			// Mount on the directory itself, never through a symlink.
			d = in_root(root, dest, O_PATH | O_DIRECTORY, RESOLVE_NO_SYMLINKS);
			if (d < 0 && (errno == ELOOP || errno == ENOTDIR))
				fail("%s: %s must be mounted on ordinary directory", pfx, dest);
			if (d < 0)
				fail("%s: open mount target %s: %s", pfx, dest, E(errno));
			tp = fdpath(d, p1);
		}
		if (mount(src, tp, type, flags & ~(unsigned long)MS_REMOUNT, *data ? data : NULL) < 0)
			fail("%s: %s", pfx, E(errno));
		if (d >= 0)
			close(d);
	}
	close(t);
	if (nprop > 0 || attr_set || attr_clr) {
		int t2 = in_root(root, dest, O_PATH, 0);
		if (t2 < 0)
			fail("%s: open %s: %s", pfx, dest, E(errno));
		for (uint32_t i = 0; i < nprop; i++) {
			if (mount("", fdpath(t2, p2), "", prop[i], NULL) < 0)
				fail("%s: set propagation %s: %s", pfx, dest, E(errno));
		}
		if (attr_set || attr_clr) {
			struct mount_attr a = {.attr_set = attr_set, .attr_clr = attr_clr};
			if (syscall(SYS_mount_setattr, t2, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof(a)) < 0)
				fail("%s: mount_setattr %s: %s", pfx, dest, E(errno));
		}
		close(t2);
	}
}

// create_devices is rootfs.CreateDevices: the nodes (mknod, replacing what
// is there) and the /dev links, with umask 0.
static void create_devices(struct reader *r, int root, int make)
{
	char dir[PATHBUF], base[NAME_MAX + 1];
	uint32_t n = rd32(r);
	if (n > 65536)
		fail("plan: bad device list");
	mode_t old = make ? umask(0) : 0;
	for (uint32_t i = 0; i < n; i++) {
		char *name = rdstr(r), *clean = rdstr(r);
		uint32_t mode = rd32(r);
		uint64_t dev = rd64(r);
		uint32_t uid = rd32(r), gid = rd32(r);
		if (split(clean, dir, base) < 0)
			fail("creating device %s: %s", name, E(errno));
		int parent = mkdir_all(root, dir);
		if (parent < 0)
			fail("creating device %s: %s", name, E(errno));
		(void)unlinkat(parent, base, 0);
		if (mknodat(parent, base, (mode_t)mode, (dev_t)dev) < 0)
			fail("creating device %s: %s", name, E(errno));
		if (fchownat(parent, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
			fail("creating device %s: %s", name, E(errno));
		close(parent);
	}
	uint32_t nl = rd32(r);
	if (nl > 64)
		fail("plan: bad link list");
	int devfd = -1;
	if (make) {
		devfd = in_root(root, "/dev", O_PATH, 0);
		if (devfd < 0)
			fail("open /dev: %s", E(errno));
	}
	for (uint32_t i = 0; i < nl; i++) {
		char *target = rdstr(r), *name = rdstr(r);
		if (!make)
			continue;
		if (strcmp(name, "ptmx") == 0)
			(void)unlinkat(devfd, "ptmx", 0); // must point at the container's devpts
		if (symlinkat(target, devfd, name) < 0 && errno != EEXIST)
			fail("symlink /dev/%s: %s", name, E(errno));
	}
	if (make) {
		close(devfd);
		umask(old);
	}
}

// pivot is rootfs.PivotRoot: pivot_root(".", ".") and the old root detached.
static void pivot(const char *rootfs)
{
	int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (oldroot < 0)
		fail("open /: %s", E(errno));
	int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (newroot < 0)
		fail("open %s: %s", rootfs, E(errno));
	if (fchdir(newroot) < 0)
		fail("chdir %s: %s", rootfs, E(errno));
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		fail("pivot_root %s: %s", rootfs, E(errno));
	if (fchdir(oldroot) < 0)
		fail("%s", E(errno));
	// Keep unmount events of the old root from reaching the host.
	if (mount("", ".", "", MS_SLAVE | MS_REC, NULL) < 0)
		fail("make old root rslave .: %s", E(errno));
	if (umount2(".", MNT_DETACH) < 0)
		fail("unmount old root .: %s", E(errno));
	if (chdir("/") < 0)
		fail("%s", E(errno));
	close(oldroot);
	close(newroot);
}

// readonly_paths is rootfs.ReadonlyPaths (after pivot_root; root is "/").
static void readonly_paths(struct reader *r, int root)
{
	char p1[64], p2[64];
	uint32_t n;
	char **paths = rdstrs(r, &n);
	for (uint32_t i = 0; i < n; i++) {
		int t = in_root(root, paths[i], O_PATH, 0);
		if (t < 0 && errno == ENOENT)
			continue;
		if (t < 0)
			fail("readonly path %s: %s", paths[i], E(errno));
		int rc = mount(fdpath(t, p1), fdpath(t, p2), "", MS_BIND | MS_REC, NULL);
		int err = errno;
		close(t);
		if (rc < 0)
			fail("readonly path %s: %s", paths[i], E(err));
		t = in_root(root, paths[i], O_PATH, 0);
		if (t < 0)
			fail("readonly path %s: %s", paths[i], E(errno));
		if (remount_bind(fdpath(t, p1), MS_RDONLY | MS_REC) < 0)
			fail("readonly path %s: remount %s: %s", paths[i], p1, E(errno));
		close(t);
	}
	free(paths);
}

// mask_paths is rootfs.MaskPaths: files covered by /dev/null (checked to be
// the null device), directories by an empty read-only tmpfs.
static void mask_paths(struct reader *r, int root)
{
	char p1[64], p2[64];
	uint32_t n;
	char **paths = rdstrs(r, &n);
	if (n == 0) {
		free(paths);
		return;
	}
	int null = in_root(root, "/dev/null", O_PATH, 0);
	if (null < 0)
		fail("open /dev/null for masking: %s", E(errno));
	struct stat st;
	if (fstat(null, &st) < 0)
		fail("%s", E(errno));
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 1 || minor(st.st_rdev) != 3)
		fail("/dev/null is not the null device");
	for (uint32_t i = 0; i < n; i++) {
		int t = in_root(root, paths[i], O_PATH, 0);
		if (t < 0 && errno == ENOENT)
			continue;
		if (t < 0)
			fail("masking %s: %s", paths[i], E(errno));
		int rc = fstat(t, &st);
		if (rc == 0) {
			if (S_ISDIR(st.st_mode))
				rc = mount("tmpfs", fdpath(t, p1), "tmpfs", MS_RDONLY, NULL);
			else
				rc = mount(fdpath(null, p2), fdpath(t, p1), "", MS_BIND, NULL);
		}
		int err = errno;
		close(t);
		if (rc < 0)
			fail("masking %s: %s", paths[i], E(err));
	}
	close(null);
	free(paths);
}

void berth_init_rootfs(struct reader *r, int pipe_fd, struct init_wait *w)
{
	uint32_t flags = rd32(r);
	w->fifo_fd = (int)rd32(r);
	char *rootfs = rdstr(r);
	unsigned long prop = (unsigned long)rd64(r);
	char *prop_what = rdstr(r);

	// Our fd table as procfs shows it now: after pivot_root this is still
	// how init reaches exec.fifo.
	w->fd_dir = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (w->fd_dir < 0)
		fail("open /proc/self/fd: %s", E(errno));
	if ((flags & I_WAIT_PLACED) && (flags & I_PLACED_EARLY))
		wait_placed(pipe_fd, flags);

	// PrepareRoot: propagation of /, the rootfs a mount point of its own.
	if (mount("", "/", "", prop, NULL) < 0)
		fail("%s /: %s", prop_what, E(errno));
	if (mount(rootfs, rootfs, "bind", MS_BIND | MS_REC, NULL) < 0)
		fail("bind mount rootfs %s: %s", rootfs, E(errno));
	int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		fail("open %s: %s", rootfs, E(errno));
	uint32_t nm = rd32(r);
	if (nm > MAX_MOUNTS)
		fail("plan: too many mounts");
	for (uint32_t i = 0; i < nm; i++)
		mount_one(r, root);
	create_devices(r, root, (flags & I_DEVICES) != 0);

	char *host = rdstr(r), *domain = rdstr(r);
	if (flags & I_NEW_UTS) {
		if (*host && sethostname(host, strlen(host)) < 0)
			fail("sethostname: %s", E(errno));
		if (*domain && setdomainname(domain, strlen(domain)) < 0)
			fail("setdomainname: %s", E(errno));
	}
	if ((flags & I_WAIT_PLACED) && !(flags & I_PLACED_EARLY))
		wait_placed(pipe_fd, flags);
	char *cwd = rdstr(r);
	if (*cwd) {
		// A cwd the image lacks is created, as runc does.
		int h = in_root(root, cwd, O_PATH, 0);
		if (h < 0 && errno != ENOENT)
			fail("create cwd %s: %s", cwd, E(errno));
		if (h < 0)
			h = mkdir_all(root, cwd);
		if (h < 0)
			fail("create cwd %s: %s", cwd, E(errno));
		close(h);
	}
	close(root);
	pivot(rootfs);

	// setupConsole: init leads a session of its own.
	if (setsid() < 0)
		fail("setsid: %s", E(errno));
	// finalizeRootfs, resolving in the new root.
	root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		fail("open /: %s", E(errno));
	readonly_paths(r, root);
	mask_paths(r, root);
	close(root);
	if ((flags & I_RO_ROOT) && remount_bind("/", MS_RDONLY) < 0)
		fail("remount /: %s", E(errno));
	char *keyring = rdstr(r);
	if (!(flags & I_NO_KEYRING)) {
		// A fresh session keyring keeps the host's keys out of reach; some
		// kernels (or seccomp'd hosts) refuse, which runc ignores too.
		if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, keyring) < 0 && errno != ENOSYS && errno != EACCES && errno != EPERM)
			fail("join session keyring: %s", E(errno));
	}
}
