// Writes through a private procfs: linux.sysctl, oom_score_adj and the LSM
// exec labels.
//
// CVE-2025-52881: resolving /proc/sys/... or /proc/self/attr/... through
// the container's own /proc followed whatever the container had arranged
// there (symlinks in a tmpfs, bind mounts of other procfs files), so a
// write meant for kernel.shm_rmid_forced could land in /proc/sysrq-trigger
// or core_pattern, and a label write could land nowhere while the runtime
// believed the process confined. So the writes go through a procfs of our
// own: a fresh instance (fsopen) or, where that is refused, a detached
// clone of /proc's top mount only (no mounts on top of it), verified to be
// a procfs root; every lookup below it refuses symlinks, magic links and
// mount crossings.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "executor.h"

#ifndef FSCONFIG_CMD_CREATE
#define FSCONFIG_CMD_CREATE 6
#endif
#ifndef PROC_ROOT_INO
#define PROC_ROOT_INO 1
#endif

static int is_proc_root(int fd)
{
	struct statfs sfs;
	struct stat st;
	return fstatfs(fd, &sfs) == 0 && sfs.f_type == PROC_SUPER_MAGIC && fstat(fd, &st) == 0 && st.st_ino == PROC_ROOT_INO;
}

static int private_procfs(void)
{
	if (ex.procfs >= 0)
		return ex.procfs;
	int mfd = -1;
	int fs = (int)syscall(SYS_fsopen, "proc", FSOPEN_CLOEXEC);
	if (fs >= 0) {
		if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
			mfd = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
		close(fs);
	}
	if (mfd < 0)
		mfd = (int)syscall(SYS_open_tree, AT_FDCWD, "/proc", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
	if (mfd < 0)
		return -1;
	if (!is_proc_root(mfd)) {
		close(mfd);
		errno = EXDEV;
		return -1;
	}
	ex.procfs = mfd;
	return mfd;
}

// proc_open opens path below the private procfs root for writing, and
// checks that what it got is on procfs.
static int proc_open(const char *path)
{
	int root = private_procfs();
	if (root < 0)
		return -1;
	struct open_how how = {
		.flags = O_WRONLY | O_TRUNC | O_NOCTTY | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
	};
	int fd = (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
	if (fd < 0)
		return -1;
	struct statfs sfs;
	if (fstatfs(fd, &sfs) < 0 || sfs.f_type != PROC_SUPER_MAGIC) {
		close(fd);
		errno = EXDEV;
		return -1;
	}
	return fd;
}

static int write_all(int fd, const char *data)
{
	size_t n = strlen(data);
	ssize_t w = write(fd, data, n);
	if (w < 0)
		return -1;
	if ((size_t)w != n) {
		errno = EIO;
		return -1;
	}
	return 0;
}

void step_sysctl(struct reader *r)
{
	char *key = rdstr(r), *path = rdstr(r), *value = rdstr(r);
	if (private_procfs() < 0)
		fail("open procfs for sysctls: %s", errtext(errno));
	int fd = proc_open(path);
	if (fd < 0)
		fail("sysctl %s: %s", key, errtext(errno));
	if (write_all(fd, value) < 0)
		fail("sysctl %s: %s", key, errtext(errno));
	close(fd);
}

// step_proc_write writes a file of this thread's procfs directory, found
// through the private procfs's own thread-self link (so the pid is the one
// this procfs instance knows).
void step_proc_write(struct reader *r)
{
	char *sub = rdstr(r), *data = rdstr(r);
	int warn_only = rdflag(r);
	char *err = rdstr(r);
	char self[64], path[4096];
	int fd = -1;
	int root = private_procfs();
	if (root >= 0) {
		ssize_t n = readlinkat(root, "thread-self", self, sizeof(self) - 1);
		if (n > 0) {
			self[n] = 0;
			if ((size_t)snprintf(path, sizeof(path), "%s/%s", self, sub) < sizeof(path))
				fd = proc_open(path);
			else
				errno = ENAMETOOLONG;
		} else if (n == 0) {
			errno = EIO;
		}
	}
	if (fd < 0 || write_all(fd, data) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		if (!warn_only)
			fail("%s: %s", err, errtext(e));
		warn("%s: %s", err, errtext(e));
		return;
	}
	close(fd);
}
