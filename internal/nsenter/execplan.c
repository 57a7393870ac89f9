// The fast path of `berth exec`: an exec process whose setup is nothing but
// syscalls (no terminal, no LSM label, no seccomp listener) is finished here,
// in the constructor, from a plan the runtime encoded (internal/runtime/
// fastexec.go), and execs the container's program without ever starting the
// Go runtime (which costs this process more than everything else it does).
//
// It does what internal/initproc does for an exec process, in the same order
// and with the same error texts: HOME from the container's /etc/passwd, the
// PATH lookup, close-on-exec for every inherited fd, stdio ownership, the
// cwd check (CVE-2024-21626), non-dumpable until execve (CVE-2016-9962), the
// bounding set, rlimits, groups and ids with keepcaps, umask, capabilities,
// no_new_privs and the seccomp filter (before the capability drop without
// no_new_privs, right before execve with it). Failures before "ready" are
// reported on the init pipe as the Go side would; later ones on stderr with
// exit status 255.
//
// The same process section ends an init plan (internal/runtime/fastinit.go):
// after the rootfs section (initplan.c) it runs with umask 022 by default,
// and between Ready and execve init waits on exec.fifo for `start`, as
// initproc's waitStart does.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "plan.h"

#define PLAN_MAGIC 0x42585031u	    /* "1PXB": an exec process, version 1 */
#define INIT_PLAN_MAGIC 0x42585032u /* "2PXB": a container's init, version 1 */
#define F_NNP 1u
#define F_USERNS 2u
#define F_UMASK 4u
#define F_SECCOMP 8u
#define F_SECCOMP_LATE 16u

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static int plan_fd = -1;

// Go's error texts are strerror's with a lower-case first letter.
const char *errtext(int err, char *buf, size_t n)
{
	snprintf(buf, n, "%s", strerror(err));
	if (buf[0] >= 'A' && buf[0] <= 'Z')
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

static void send_json(int fd, const char *head, const char *msg, const char *tail)
{
	char out[4096];
	size_t o = 0;
	size_t hl = strlen(head);
	memcpy(out, head, hl);
	o = hl;
	for (const unsigned char *p = (const unsigned char *)msg; *p && o < sizeof(out) - 16; p++) {
		if (*p == '"' || *p == '\\') {
			out[o++] = '\\';
			out[o++] = (char)*p;
		} else if (*p < 0x20) {
			o += (size_t)snprintf(out + o, 8, "\\u%04x", *p);
		} else {
			out[o++] = (char)*p;
		}
	}
	size_t tl = strlen(tail);
	memcpy(out + o, tail, tl);
	o += tl;
	(void)!write(fd, out, o);
}

void berth_send_error(int fd, const char *msg)
{
	send_json(fd, "{\"type\":\"error\",\"error\":\"", msg, "\"}\n");
}

__attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	berth_send_error(plan_fd, msg);
	_exit(1);
}

// The plan: little-endian (native) u32/u64 fields and u32-length strings,
// each followed by a NUL so they are used in place.
uint32_t rd32(struct reader *r)
{
	uint32_t v;
	if (r->end - r->p < 4)
		fail("plan: truncated");
	memcpy(&v, r->p, 4);
	r->p += 4;
	return v;
}

uint64_t rd64(struct reader *r)
{
	uint64_t v;
	if (r->end - r->p < 8)
		fail("plan: truncated");
	memcpy(&v, r->p, 8);
	r->p += 8;
	return v;
}

char *rdstr(struct reader *r)
{
	uint32_t n = rd32(r);
	char *s = r->p;
	if ((uint64_t)(r->end - r->p) < (uint64_t)n + 1 || s[n] != 0)
		fail("plan: bad string");
	r->p += n + 1;
	return s;
}

char **rdstrs(struct reader *r, uint32_t *count)
{
	uint32_t n = rd32(r);
	if (n > (uint32_t)(r->end - r->p) / 5)
		fail("plan: bad list");
	char **v = calloc((size_t)n + 2, sizeof(char *)); /* room for HOME */
	if (!v)
		fail("plan: out of memory");
	for (uint32_t i = 0; i < n; i++)
		v[i] = rdstr(r);
	*count = n;
	return v;
}

void read_full(int fd, char *buf, size_t n)
{
	while (n > 0) {
		ssize_t k = read(fd, buf, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			_exit(1); /* the runtime went away: nobody to tell */
		buf += k;
		n -= (size_t)k;
	}
}

// homeOf reads the container's /etc/passwd as initproc does: non-blocking,
// a regular file only, at most 10 MiB.
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
	size_t cap = st.st_size > 0 && st.st_size < (10 << 20) ? (size_t)st.st_size + 1 : (10 << 20) + 1;
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

// check_exec is initproc's checkExec: stat (following links), not a
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

// look_path is initproc's lookPath, with its exact messages.
static const char *look_path(const char *name, const char *nameq, const char *cwd, char **env)
{
	char eb[128];
	const char *why = NULL;
	if (strchr(name, '/')) {
		char full[8192];
		const char *p = name;
		if (name[0] != '/' && cwd[0]) {
			if ((size_t)snprintf(full, sizeof(full), "%s/%s", cwd, name) >= sizeof(full))
				fail("exec: %s: %s", nameq, errtext(ENAMETOOLONG, eb, sizeof(eb)));
			p = full;
		}
		int e = check_exec(p, &why);
		if (e > 0)
			fail("exec: %s: %s", nameq, errtext(e, eb, sizeof(eb)));
		if (e < 0)
			fail("exec: %s: %s", nameq, why);
		return name;
	}
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (char **e = env; *e; e++)
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	int perm = 0;
	for (const char *d = path; *path;) {
		const char *c = strchr(d, ':');
		size_t dl = c ? (size_t)(c - d) : strlen(d);
		static char cand[8192];
		int n;
		if (dl == 0 || (dl == 1 && d[0] == '.'))
			n = snprintf(cand, sizeof(cand), "%s", name);
		else
			n = snprintf(cand, sizeof(cand), "%.*s/%s", (int)dl, d, name);
		why = NULL;
		/* a candidate too long to hold is one that cannot exist */
		int e = (size_t)n >= sizeof(cand) ? ENAMETOOLONG : check_exec(cand, &why);
		if (e == 0)
			return cand;
		if (e == EACCES)
			perm = 1;
		if (!c)
			break;
		d = c + 1;
	}
	if (perm)
		fail("exec: %s: %s", nameq, errtext(EACCES, eb, sizeof(eb)));
	fail("exec: %s: executable file not found in $PATH", nameq);
}

// fix_stdio is initproc's fixStdioOwner.
static void fix_stdio(uint32_t uid, uint32_t gid)
{
	char eb[128];
	for (int fd = 0; fd <= 2; fd++) {
		struct stat st;
		if (fstat(fd, &st) < 0)
			continue;
		if ((S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3) || st.st_uid == uid)
			continue;
		if (fchown(fd, uid, gid) < 0) {
			if (errno == EPERM || errno == EROFS || errno == EINVAL)
				continue;
			fail("chown stdio fd %d: %s", fd, errtext(errno, eb, sizeof(eb)));
		}
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

static int load_seccomp(uint32_t flags, struct sock_filter *insns, uint32_t n, char *msg, size_t msgn)
{
	char eb[128];
	struct sock_fprog prog = {.len = (unsigned short)n, .filter = insns};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) == 0)
		return 0;
	int e = errno;
	const char *hint = e == EACCES ? " (set no_new_privs or keep CAP_SYS_ADMIN)"
			   : e == ESRCH	 ? " (another thread could not be synchronised)"
					 : "";
	snprintf(msg, msgn, "seccomp: loading filter: %s%s", errtext(e, eb, sizeof(eb)), hint);
	return -1;
}

static void wait_start(const struct init_wait *w);

// run_process is the process section: initproc's run() from the
// environment on, then finalize(), Ready, for init the wait on exec.fifo,
// and execve. init is NULL for an exec process.
__attribute__((noreturn)) static void run_process(struct reader *rp, int fd, const struct init_wait *init)
{
	char eb[128], msg[512];
	struct reader r = *rp;
	uint32_t flags = rd32(&r);
	uint32_t uid = rd32(&r), gid = rd32(&r), umask_v = rd32(&r);
	uint32_t ngids = rd32(&r);
	if (ngids > 65536)
		fail("exec plan: too many groups");
	gid_t *gids = calloc((size_t)ngids + 1, sizeof(gid_t));
	for (uint32_t i = 0; i < ngids; i++)
		gids[i] = rd32(&r);
	uint64_t eff = rd64(&r), perm = rd64(&r), inh = rd64(&r), amb = rd64(&r);
	uint32_t last_cap = rd32(&r);
	uint32_t ndrop = rd32(&r);
	if (ndrop > 64)
		fail("exec plan: bad capability list");
	uint32_t drop[64];
	char *dropname[64];
	for (uint32_t i = 0; i < ndrop; i++) {
		drop[i] = rd32(&r);
		dropname[i] = rdstr(&r);
	}
	uint32_t nrl = rd32(&r);
	if (nrl > 64)
		fail("exec plan: bad rlimit list");
	uint32_t rltype[64];
	struct rlimit rl[64];
	for (uint32_t i = 0; i < nrl; i++) {
		rltype[i] = rd32(&r);
		rl[i].rlim_cur = rd64(&r);
		rl[i].rlim_max = rd64(&r);
	}
	uint32_t close_from = rd32(&r);
	char *cwd = rdstr(&r), *cwdq = rdstr(&r);
	char *nameq = rdstr(&r);
	uint32_t nargs, nenv;
	char **args = rdstrs(&r, &nargs);
	char **env = rdstrs(&r, &nenv);
	uint32_t sflags = rd32(&r), ninsn = rd32(&r);
	if (ninsn > 65535 || (uint64_t)(r.end - r.p) != (uint64_t)ninsn * 8)
		fail("exec plan: bad seccomp program");
	struct sock_filter *insns = (struct sock_filter *)r.p;
	if (nargs == 0)
		fail("args must not be empty");

	// run(): env, PATH lookup, fds, stdio.
	int has_home = 0;
	for (uint32_t i = 0; i < nenv; i++)
		if (strncmp(env[i], "HOME=", 5) == 0)
			has_home = 1;
	if (!has_home) {
		static char homeenv[4200];
		char *h = home_of(uid);
		snprintf(homeenv, sizeof(homeenv), "HOME=%s", h && *h ? h : "/");
		env[nenv++] = homeenv;
	}
	const char *path = look_path(args[0], nameq, cwd, env);
	if (syscall(SYS_close_range, close_from, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		fail("close_range: %s", errtext(errno, eb, sizeof(eb)));
	fix_stdio(uid, gid);

	// finalize().
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail("set non-dumpable: %s", errtext(errno, eb, sizeof(eb)));
	if (chdir(cwd) == 0) {
		char wd[8192];
		if (!getcwd(wd, sizeof(wd)) || wd[0] != '/')
			fail("current working directory is outside of container mount namespace root -- possible container breakout detected");
	}
	int seccomp_pending = (flags & F_SECCOMP) != 0;
	if (seccomp_pending && !(flags & F_SECCOMP_LATE) && !(flags & F_NNP)) {
		if (load_seccomp(sflags, insns, ninsn, msg, sizeof(msg)) < 0)
			fail("%s", msg);
		seccomp_pending = 0;
	}
	for (uint32_t i = 0; i < ndrop; i++) {
		if (prctl(PR_CAPBSET_DROP, drop[i], 0, 0, 0) < 0 && errno != EINVAL)
			fail("drop bounding capability %s: %s", dropname[i], errtext(errno, eb, sizeof(eb)));
	}
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		fail("set keepcaps: %s", errtext(errno, eb, sizeof(eb)));
	for (uint32_t i = 0; i < nrl; i++) {
		if (prlimit(0, (__rlimit_resource_t)rltype[i], &rl[i], NULL) < 0)
			fail("error setting rlimit type %u: %s", rltype[i], errtext(errno, eb, sizeof(eb)));
	}
	if (!((flags & F_USERNS) && ngids == 0 && setgroups_denied())) {
		if (syscall(SYS_setgroups, (size_t)ngids, gids) < 0)
			fail("setgroups: %s", errtext(errno, eb, sizeof(eb)));
	}
	if (syscall(SYS_setresgid, gid, gid, gid) < 0)
		fail("setgid %u: %s", gid, errtext(errno, eb, sizeof(eb)));
	if (syscall(SYS_setresuid, uid, uid, uid) < 0)
		fail("setuid %u: %s", uid, errtext(errno, eb, sizeof(eb)));
	if (flags & F_UMASK)
		umask((mode_t)umask_v);
	if (chdir(cwd) < 0)
		fail("chdir to cwd (%s) set in config.json failed: %s", cwdq, errtext(errno, eb, sizeof(eb)));
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	for (int i = 0; i < 2; i++) {
		data[i].effective = (uint32_t)(eff >> (32 * i));
		data[i].permitted = (uint32_t)(perm >> (32 * i));
		data[i].inheritable = (uint32_t)(inh >> (32 * i));
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		fail("capset: %s", errtext(errno, eb, sizeof(eb)));
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		fail("clear ambient capabilities: %s", errtext(errno, eb, sizeof(eb)));
	for (uint32_t c = 0; c <= last_cap && c < 64; c++) {
		if (amb & (1ULL << c))
			(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0);
	}
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		fail("clear keepcaps: %s", errtext(errno, eb, sizeof(eb)));
	if ((flags & F_NNP) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail("set no_new_privs: %s", errtext(errno, eb, sizeof(eb)));

	// Ready; from here the runtime may be gone.
	send_json(fd, "{\"type\":\"ready\",\"data\":{", "", "}}\n");
	close(fd);
	if (init)
		wait_start(init);
	if (seccomp_pending && load_seccomp(sflags, insns, ninsn, msg, sizeof(msg)) < 0) {
		fprintf(stderr, "berth init: %s\n", msg);
		_exit(255);
	}
	execve(path, args, env);
	fprintf(stderr, "berth init: exec %s: %s\n", path, errtext(errno, eb, sizeof(eb)));
	_exit(255);
}

// wait_start is initproc's waitStart: block opening exec.fifo for writing
// (through our own fd directory, opened before pivot_root) until `start`
// opens it for reading, and tell it we are about to exec.
static void wait_start(const struct init_wait *w)
{
	char eb[128], name[16];
	snprintf(name, sizeof(name), "%d", w->fifo_fd);
	int fd = openat(w->fd_dir, name, O_WRONLY | O_CLOEXEC);
	int e = errno;
	close(w->fd_dir);
	if (fd < 0) {
		fprintf(stderr, "berth init: open exec fifo: %s\n", errtext(e, eb, sizeof(eb)));
		_exit(255);
	}
	if (write(fd, "0", 1) != 1) {
		fprintf(stderr, "berth init: write exec fifo: %s\n", errtext(errno, eb, sizeof(eb)));
		_exit(255);
	}
	close(w->fifo_fd);
	close(fd);
}

// berth_run_plan reads the plan the runtime wrote on the init pipe and runs
// it: an exec process, or a container's init (the rootfs section first,
// initplan.c).
__attribute__((noreturn)) void berth_run_plan(int fd)
{
	plan_fd = fd;
	uint32_t len;
	read_full(fd, (char *)&len, 4);
	if (len > (64u << 20))
		fail("plan: too large");
	char *buf = malloc((size_t)len + 1);
	if (!buf)
		fail("plan: out of memory");
	read_full(fd, buf, len);
	struct reader r = {buf, buf + len};
	uint32_t magic = rd32(&r);
	if (magic == PLAN_MAGIC)
		run_process(&r, fd, NULL);
	if (magic != INIT_PLAN_MAGIC)
		fail("plan: wrong version");
	struct init_wait w;
	berth_init_rootfs(&r, fd, &w);
	run_process(&r, fd, &w);
}
