// The process section of a plan: the environment, the executable lookup,
// fds and stdio, the drop to the container's credentials, seccomp, the
// wait on exec.fifo and execve. The order is the plan's (see
// internal/linux/plan/process.go for why it is that order).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "executor.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// What the container's /etc/passwd may weigh (containerd caps it at 10 MiB).
#define MAX_PASSWD (10 << 20)

// home_of looks uid up in the container's /etc/passwd. The file is the
// image's: opened non-blocking and read only if it is a regular file, at
// most MAX_PASSWD bytes, so a FIFO cannot hang init and a huge file cannot
// exhaust its memory (CVE-2026-47262's class).
static char *home_of(uint32_t uid)
{
	static char home[4096];
	int fd = open("/etc/passwd", O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return NULL;
	}
	size_t cap = st.st_size > 0 && st.st_size < MAX_PASSWD ? (size_t)st.st_size + 1 : MAX_PASSWD + 1;
	char *b = malloc(cap);
	size_t len = 0;
	if (!b) {
		close(fd);
		return NULL;
	}
	while (len < cap - 1) {
		ssize_t k = read(fd, b + len, cap - 1 - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	close(fd);
	b[len] = 0;
	char want[16];
	snprintf(want, sizeof(want), "%u", uid);
	char *res = NULL;
	for (char *line = b; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		char *f[7] = {0};
		int nf = 0;
		char *q = line;
		f[nf++] = q;
		while (nf < 7 && (q = strchr(q, ':')) != NULL) {
			*q++ = 0;
			f[nf++] = q;
		}
		if (nf >= 6 && strcmp(f[2], want) == 0) {
			snprintf(home, sizeof(home), "%s", f[5]);
			res = home;
			break;
		}
		line = nl ? nl + 1 : NULL;
	}
	free(b);
	return res;
}

void step_env(struct reader *r)
{
	ex.envp = rdstrs(r, &ex.nenv, 1); // room for HOME
	int fill = rdflag(r);
	uint32_t uid = rd32(r);
	if (fill) {
		static char homeenv[4200];
		char *h = home_of(uid);
		snprintf(homeenv, sizeof(homeenv), "HOME=%s", h && *h ? h : "/");
		ex.envp[ex.nenv++] = homeenv;
	}
}

// check_exec is exec.LookPath's check: stat (following links), not a
// directory, executable by us.
static int check_exec(const char *p, const char **why)
{
	struct stat st;
	if (stat(p, &st) < 0)
		return errno;
	if (S_ISDIR(st.st_mode)) {
		*why = "is a directory";
		return -1;
	}
	if (access(p, X_OK) < 0)
		return errno;
	return 0;
}

// step_lookup resolves args[0] with exec.LookPath's rules and exact
// wording: clients map "executable file not found" and "no such file or
// directory" to 127, "permission denied" (a path given with a slash that
// is not executable) to 126.
void step_lookup(struct reader *r)
{
	uint32_t nargs;
	ex.argv = rdstrs(r, &nargs, 0);
	char *cwd = rdstr(r), *nameq = rdstr(r);
	if (!ex.envp)
		fail("plan: lookup before env");
	if (nargs == 0 || !ex.argv[0][0])
		fail("args must not be empty");
	const char *name = ex.argv[0], *why = NULL;
	if (strchr(name, '/')) {
		static char full[8192];
		const char *p = name;
		if (name[0] != '/' && cwd[0]) {
			if ((size_t)snprintf(full, sizeof(full), "%s/%s", cwd, name) >= sizeof(full))
				fail("exec: %s: %s", nameq, errtext(ENAMETOOLONG));
			p = full;
		}
		int e = check_exec(p, &why);
		if (e > 0)
			fail("exec: %s: %s", nameq, errtext(e));
		if (e < 0)
			fail("exec: %s: %s", nameq, why);
		ex.path = name;
		return;
	}
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (char **e = ex.envp; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	// exec.LookPath's search (which runc uses): a candidate that is not
	// executable is skipped, as a missing one is.
	for (const char *d = path;;) {
		const char *c = strchr(d, ':');
		size_t dl = c ? (size_t)(c - d) : strlen(d);
		static char cand[8192];
		int n;
		if (dl == 0 || (dl == 1 && d[0] == '.'))
			n = snprintf(cand, sizeof(cand), "%s", name);
		else
			n = snprintf(cand, sizeof(cand), "%.*s/%s", (int)dl, d, name);
		why = NULL;
		// A candidate too long to hold is one that cannot exist.
		int e = (size_t)n >= sizeof(cand) ? ENAMETOOLONG : check_exec(cand, &why);
		if (e == 0) {
			ex.path = cand;
			return;
		}
		if (!c)
			break;
		d = c + 1;
	}
	fail("exec: %s: executable file not found in $PATH", nameq);
}

void step_cloexec_from(struct reader *r)
{
	uint32_t from = rd32(r);
	if (syscall(SYS_close_range, from, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		fail("close_range: %s", errtext(errno));
}

// step_fix_stdio chowns stdio to the container user, so a non-root
// process can reopen /proc/self/fd/N; the null device and refusals are
// left alone (runc). The null device is recognised by the fd's own type
// and number, never by comparing with the container's /dev/null: a
// container whose /dev/null is a plain file (a /dev bind mount,
// CVE-2026-88265 / runc #3674) made the host's /dev/null, passed as stdin,
// look foreign, and it was chowned to the container user on the host.
void step_fix_stdio(struct reader *r)
{
	uint32_t uid = rd32(r), gid = rd32(r);
	for (int fd = 0; fd <= 2; fd++) {
		struct stat st;
		if (fstat(fd, &st) < 0)
			continue;
		if ((S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3) || st.st_uid == uid)
			continue;
		if (fchown(fd, uid, gid) < 0) {
			if (errno == EPERM || errno == EROFS || errno == EINVAL)
				continue;
			fail("chown stdio fd %d: %s", fd, errtext(errno));
		}
	}
}

void step_check_cwd(struct reader *r)
{
	char *cwd = rdstr(r), *err = rdstr(r);
	if (chdir(cwd) == 0) {
		char wd[8192];
		if (!getcwd(wd, sizeof(wd)) || wd[0] != '/')
			fail("%s", err);
	}
}

void step_seccomp(struct reader *r)
{
	uint32_t flags = rd32(r);
	int listener = rdflag(r);
	char *eacces = rdstr(r), *esrch = rdstr(r), *einval = rdstr(r), *other = rdstr(r);
	uint32_t len;
	const void *code = rdbytes(r, &len);
	if (len == 0 || len % 8 != 0 || len / 8 > BPF_MAXINSNS)
		fail("plan: step %s: bad seccomp program", r->step);
	struct sock_filter *insns = malloc(len);
	if (!insns)
		fail("plan: out of memory");
	memcpy(insns, code, len);
	struct sock_fprog prog = {.len = (unsigned short)(len / 8), .filter = insns};
	long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
	if (fd < 0) {
		int e = errno;
		if (e == EACCES)
			fail("%s", eacces);
		if (e == ESRCH)
			fail("%s", esrch);
		if (e == EINVAL)
			fail("%s", einval);
		fail("%s: %s", other, errtext(e));
	}
	free(insns);
	if (!listener) {
		if (fd > 0)
			fail("seccomp: loading filter: thread %ld could not be synchronised (it has a diverging filter)", fd);
		return;
	}
	// The listener goes to the runtime, which takes a copy with
	// pidfd_getfd and hands it to the agent, then lets us go on.
	char msg[64];
	snprintf(msg, sizeof(msg), "%ld", fd);
	send_json("{\"type\":\"seccomp\",\"data\":{\"fd\":", msg, "}}\n");
	recv_ctl(CTL_SECCOMP_DONE, "seccomp: unexpected message while waiting for the runtime to take the listener");
	close((int)fd);
}

void step_drop_bounding(struct reader *r)
{
	uint32_t n = rd32(r);
	if (n > 64)
		fail("plan: step %s: bad capability list", r->step);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t cap = rd32(r);
		char *name = rdstr(r);
		// EINVAL: a capability this kernel does not know.
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			fail("drop bounding capability %s: %s", name, errtext(errno));
	}
}

void step_rlimits(struct reader *r)
{
	uint32_t n = rd32(r);
	if (n > 64)
		fail("plan: step %s: bad rlimit list", r->step);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t res = rd32(r);
		struct rlimit rl;
		rl.rlim_cur = rd64(r);
		rl.rlim_max = rd64(r);
		char *err = rdstr(r);
		if (prlimit(0, (__rlimit_resource_t)res, &rl, NULL) < 0)
			fail("%s: %s", err, errtext(errno));
	}
}

static int setgroups_denied(void)
{
	char b[16] = {0};
	int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, b, sizeof(b) - 1);
	close(fd);
	return n >= 4 && strncmp(b, "deny", 4) == 0;
}

void step_setgroups(struct reader *r)
{
	int skip = rdflag(r);
	uint32_t n = rd32(r);
	if (n > 65536 || n > (uint32_t)(r->end - r->p) / 4)
		fail("plan: step %s: bad group list", r->step);
	gid_t *gids = calloc((size_t)n + 1, sizeof(gid_t));
	if (!gids)
		fail("plan: out of memory");
	for (uint32_t i = 0; i < n; i++)
		gids[i] = rd32(r);
	if (skip && n == 0 && setgroups_denied())
		return;
	if (syscall(SYS_setgroups, (size_t)n, gids) < 0)
		fail("setgroups: %s", errtext(errno));
	free(gids);
}

// step_capset sets effective, permitted and inheritable exactly as
// configured (so a capability the config did not ask for is never
// inheritable), then raises the ambient ones (runc ignores failures there).
void step_capset(struct reader *r)
{
	uint64_t eff = rd64(r), perm = rd64(r), inh = rd64(r), amb = rd64(r);
	uint32_t last = rd32(r);
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	for (int i = 0; i < 2; i++) {
		data[i].effective = (uint32_t)(eff >> (32 * i));
		data[i].permitted = (uint32_t)(perm >> (32 * i));
		data[i].inheritable = (uint32_t)(inh >> (32 * i));
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		fail("capset: %s", errtext(errno));
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		fail("clear ambient capabilities: %s", errtext(errno));
	for (uint32_t c = 0; c <= last && c < 64; c++) {
		if (amb & (1ULL << c))
			(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
	}
}

// step_wait_start blocks opening exec.fifo for writing (through our own fd
// directory, opened before pivot_root, so no path into the host's state
// dir is ever visible: CVE-2016-9962) until `start` opens it for reading,
// and tells it we are about to exec.
void step_wait_start(struct reader *r)
{
	char name[16];
	int fifo = (int)rd32(r);
	if (ex.fd_dir < 0)
		fail("plan: wait-start without fd-dir");
	snprintf(name, sizeof(name), "%d", fifo);
	int fd = openat(ex.fd_dir, name, O_WRONLY | O_CLOEXEC);
	int e = errno;
	close(ex.fd_dir);
	ex.fd_dir = -1;
	if (fd < 0)
		fail("open exec fifo: %s", errtext(e));
	if (write(fd, "0", 1) != 1)
		fail("write exec fifo: %s", errtext(errno));
	close(fifo);
	close(fd);
}

__attribute__((noreturn)) void step_exec(void)
{
	if (!ex.path)
		fail("plan: exec before lookup");
	execve(ex.path, ex.argv, ex.envp);
	fail("exec %s: %s", ex.path, errtext(errno));
}

// A CPU or node mask on the wire: u64 words.
static const uint64_t *rdmask(struct reader *r, uint32_t *nwords)
{
	uint32_t len;
	const void *p = rdbytes(r, &len);
	if (len % 8 != 0 || len > 8 * 1024)
		fail("plan: step %s: bad mask", r->step);
	*nwords = len / 8;
	return p;
}

void step_affinity(struct reader *r)
{
	uint32_t n;
	const uint64_t *mask = rdmask(r, &n);
	int warn_only = rdflag(r);
	char *err = rdstr(r);
	uint64_t buf[1024];
	memcpy(buf, mask, n * 8);
	if (syscall(SYS_sched_setaffinity, 0, (size_t)n * 8, buf) < 0) {
		if (!warn_only)
			fail("%s: %s", err, errtext(errno));
		warn("%s: %s", err, errtext(errno));
	}
}

// struct sched_attr of sched_setattr(2), version 0 (48 bytes).
struct sched_attr0 {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};

void step_scheduler(struct reader *r)
{
	struct sched_attr0 a = {.size = sizeof(a)};
	a.policy = rd32(r);
	a.flags = rd64(r);
	a.nice = (int32_t)rd32(r);
	a.priority = rd32(r);
	a.runtime = rd64(r);
	a.deadline = rd64(r);
	a.period = rd64(r);
	char *cpuset = rdstr(r);
	if (syscall(SYS_sched_setattr, 0, &a, 0) < 0) {
		if (errno == EPERM && *cpuset)
			fail("%s", cpuset);
		fail("error setting scheduler: %s", errtext(errno));
	}
}

void step_io_priority(struct reader *r)
{
	uint32_t v = rd32(r);
	if (syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS, as runc */, 0, v) < 0)
		fail("failed to set io priority: %s", errtext(errno));
}

void step_personality(struct reader *r)
{
	uint32_t persona = rd32(r);
	if (personality(persona) < 0)
		fail("set_personality: %s", errtext(errno));
}

void step_memory_policy(struct reader *r)
{
	uint32_t mode = rd32(r), n;
	const uint64_t *mask = rdmask(r, &n);
	uint64_t buf[1024];
	memcpy(buf, mask, n * 8);
	// maxnode counts one more than the highest bit the kernel reads.
	if (syscall(SYS_set_mempolicy, (int)mode, n ? buf : NULL, n ? (unsigned long)n * 64 + 1 : 0) < 0)
		fail("set_mempolicy: %s", errtext(errno));
}
