// The plan reader and dispatcher (see executor.h and
// internal/linux/plan/wire.go for the format), the reports to the runtime,
// and the steps that are one syscall each.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "executor.h"

#ifndef KEYCTL_JOIN_SESSION_KEYRING
#define KEYCTL_JOIN_SESSION_KEYRING 1
#endif

struct executor ex = {.pipe = -1, .root = -1, .fd_dir = -1, .procfs = -1};

const char *errtext(int err)
{
	static char buf[128];
	snprintf(buf, sizeof(buf), "%s", strerror(err));
	if (buf[0] >= 'A' && buf[0] <= 'Z')
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

void send_json(const char *head, const char *msg, const char *tail)
{
	char out[8192];
	size_t o = strlen(head);
	if (ex.pipe < 0)
		return;
	memcpy(out, head, o);
	for (const unsigned char *p = (const unsigned char *)msg; *p && o < sizeof(out) - 64; p++) {
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
	for (size_t done = 0; done < o;) {
		ssize_t n = write(ex.pipe, out + done, o - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		done += (size_t)n;
	}
}

__attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...)
{
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ex.pipe < 0) {
		// After Ready the runtime may be gone: stderr and the exit status,
		// the message alone, as runc's init prints it then.
		fprintf(stderr, "%s\n", msg);
		_exit(255);
	}
	send_json("{\"type\":\"error\",\"error\":\"", msg, "\"}\n");
	_exit(1);
}

__attribute__((format(printf, 1, 2))) void warn(const char *fmt, ...)
{
	char msg[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	send_json("{\"type\":\"log\",\"level\":\"warning\",\"msg\":\"", msg, "\"}\n");
}

static void read_full(int fd, char *buf, size_t n)
{
	while (n > 0) {
		ssize_t k = read(fd, buf, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			_exit(1); // the runtime went away: nobody to tell
		buf += k;
		n -= (size_t)k;
	}
}

// placed_early: CTL_PLACED came while a mount source was awaited.
static int placed_early;

void recv_ctl(char want, const char *unexpected)
{
	char b;
	if (want == CTL_PLACED && placed_early) {
		placed_early = 0;
		return;
	}
	read_full(ex.pipe, &b, 1);
	if (b != want)
		fail("%s", unexpected);
}

int ask_mount_source(uint32_t index, const char *pfx)
{
	char num[16];
	snprintf(num, sizeof(num), "%u", index);
	send_json("{\"type\":\"mountSource\",\"data\":{\"mount\":", num, "}}\n");
	for (;;) {
		char b;
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} u;
		struct iovec iov = {.iov_base = &b, .iov_len = 1};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
		ssize_t n = recvmsg(ex.pipe, &m, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(1); // the runtime went away (or failed the request itself)
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		int fd = -1;
		if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
		if (b == CTL_PLACED && fd < 0 && !placed_early) {
			placed_early = 1;
			continue;
		}
		if (b != CTL_MOUNT_SOURCE || fd < 0)
			fail("%s: unexpected message while waiting for the mount source", pfx);
		return fd;
	}
}

uint32_t rd32(struct reader *r)
{
	uint32_t v;
	if (r->end - r->p < 4)
		fail("plan: step %s: truncated", r->step);
	memcpy(&v, r->p, 4);
	r->p += 4;
	return v;
}

uint64_t rd64(struct reader *r)
{
	uint64_t v;
	if (r->end - r->p < 8)
		fail("plan: step %s: truncated", r->step);
	memcpy(&v, r->p, 8);
	r->p += 8;
	return v;
}

int rdflag(struct reader *r)
{
	uint32_t v = rd32(r);
	if (v > 1)
		fail("plan: step %s: bad flag %u", r->step, v);
	return (int)v;
}

char *rdstr(struct reader *r)
{
	uint32_t n = rd32(r);
	char *s = r->p;
	if ((uint64_t)(r->end - r->p) < (uint64_t)n + 1 || s[n] != 0 || memchr(s, 0, n) != NULL)
		fail("plan: step %s: bad string", r->step);
	r->p += n + 1;
	return s;
}

char **rdstrs(struct reader *r, uint32_t *count, uint32_t extra)
{
	uint32_t n = rd32(r);
	// Every string takes at least 5 bytes: a list longer than what is
	// left cannot be real (and must not size an allocation).
	if (n > (uint32_t)(r->end - r->p) / 5)
		fail("plan: step %s: bad list", r->step);
	char **v = calloc((size_t)n + extra + 1, sizeof(char *));
	if (!v)
		fail("plan: out of memory");
	for (uint32_t i = 0; i < n; i++)
		v[i] = rdstr(r);
	*count = n;
	return v;
}

const void *rdbytes(struct reader *r, uint32_t *len)
{
	uint32_t n = rd32(r);
	const void *p = r->p;
	if ((uint64_t)(r->end - r->p) < n)
		fail("plan: step %s: truncated", r->step);
	r->p += n;
	*len = n;
	return p;
}

static void step_wait_placed(struct reader *r)
{
	uint32_t unshare_flags = rd32(r);
	char *unshare_err = rdstr(r), *unexpected = rdstr(r);
	recv_ctl(CTL_PLACED, unexpected);
	if (unshare_flags && unshare((int)unshare_flags) < 0)
		fail("%s: %s", unshare_err, errtext(errno));
}

static void step_set_name(struct reader *r, int domain)
{
	char *name = rdstr(r), *err = rdstr(r);
	int rc = domain ? setdomainname(name, strlen(name)) : sethostname(name, strlen(name));
	if (rc < 0)
		fail("%s: %s", err, errtext(errno));
}

static void step_hooks_sync(void)
{
	send_json("{\"type\":\"hooks\"", "", "}\n");
	recv_ctl(CTL_RESUME, "unexpected message while waiting for hooks");
}

static void step_setsid(struct reader *r)
{
	int ignore = rdflag(r);
	if (setsid() < 0 && !ignore)
		fail("setsid: %s", errtext(errno));
}

static void step_join_keyring(struct reader *r)
{
	char *name = rdstr(r);
	// A fresh session keyring keeps the host's keys out of reach. Some
	// kernels (or seccomp'd hosts) refuse; runc ignores that too.
	if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name) < 0 && errno != ENOSYS && errno != EACCES && errno != EPERM)
		fail("join session keyring: %s", errtext(errno));
}

static void step_setres(struct reader *r, int gid)
{
	uint32_t id = rd32(r);
	char *err = rdstr(r);
	long rc = gid ? syscall(SYS_setresgid, id, id, id) : syscall(SYS_setresuid, id, id, id);
	if (rc < 0)
		fail("%s: %s", err, errtext(errno));
}

static void step_chdir(struct reader *r)
{
	char *dir = rdstr(r), *err = rdstr(r);
	if (chdir(dir) < 0)
		fail("%s: %s", err, errtext(errno));
}

static void step_prctl(int option, unsigned long arg, const char *what)
{
	if (prctl(option, arg, 0, 0, 0) < 0)
		fail("%s: %s", what, errtext(errno));
}

static void step_ready(void)
{
	send_json("{\"type\":\"ready\"", "", "}\n");
	close(ex.pipe);
	ex.pipe = -1;
}

static void run_step(uint32_t op, struct reader *r)
{
	switch (op) {
	case OP_FD_DIR:
		// After pivot_root this is still how init reaches exec.fifo.
		ex.fd_dir = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (ex.fd_dir < 0)
			fail("open /proc/self/fd: %s", errtext(errno));
		return;
	case OP_WAIT_PLACED: step_wait_placed(r); return;
	case OP_HOST_MOUNT: step_host_mount(r); return;
	case OP_OPEN_ROOT: step_open_root(r); return;
	case OP_MOUNT: step_mount(r); return;
	case OP_MOUNT_CGROUP: step_mount_cgroup(r); return;
	case OP_DEVICES: step_devices(r); return;
	case OP_SETHOSTNAME: step_set_name(r, 0); return;
	case OP_SETDOMAINNAME: step_set_name(r, 1); return;
	case OP_HOOKS_SYNC: step_hooks_sync(); return;
	case OP_RUN_HOOK: step_run_hook(r); return;
	case OP_MKDIR_IN_ROOT: step_mkdir_in_root(r); return;
	case OP_PIVOT_ROOT: step_pivot_root(r); return;
	case OP_MOVE_ROOT: step_move_root(r); return;
	case OP_CHROOT: step_chroot(r); return;
	case OP_SETSID: step_setsid(r); return;
	case OP_CONSOLE: step_console(r); return;
	case OP_SYSCTL: step_sysctl(r); return;
	case OP_READONLY_PATH: step_readonly_path(r); return;
	case OP_MASK_PATHS: step_mask_paths(r); return;
	case OP_REMOUNT_READONLY: step_remount_readonly(r); return;
	case OP_PROC_WRITE: step_proc_write(r); return;
	case OP_JOIN_KEYRING: step_join_keyring(r); return;
	case OP_ENV: step_env(r); return;
	case OP_LOOKUP: step_lookup(r); return;
	case OP_CLOEXEC_FROM: step_cloexec_from(r); return;
	case OP_FIX_STDIO: step_fix_stdio(r); return;
	case OP_NON_DUMPABLE: step_prctl(PR_SET_DUMPABLE, 0, "set non-dumpable"); return;
	case OP_CHECK_CWD: step_check_cwd(r); return;
	case OP_SECCOMP: step_seccomp(r); return;
	case OP_DROP_BOUNDING: step_drop_bounding(r); return;
	case OP_KEEP_CAPS: {
		int on = rdflag(r);
		step_prctl(PR_SET_KEEPCAPS, (unsigned long)on, on ? "set keepcaps" : "clear keepcaps");
		return;
	}
	case OP_RLIMITS: step_rlimits(r); return;
	case OP_SETGROUPS: step_setgroups(r); return;
	case OP_SETRESGID: step_setres(r, 1); return;
	case OP_SETRESUID: step_setres(r, 0); return;
	case OP_UMASK: umask((mode_t)rd32(r)); return;
	case OP_CHDIR: step_chdir(r); return;
	case OP_CAPSET: step_capset(r); return;
	case OP_NO_NEW_PRIVS: step_prctl(PR_SET_NO_NEW_PRIVS, 1, "set no_new_privs"); return;
	case OP_READY: step_ready(); return;
	case OP_WAIT_START: step_wait_start(r); return;
	case OP_EXEC: step_exec();
	case OP_EXIT: _exit(0);
	case OP_AFFINITY: step_affinity(r); return;
	case OP_SCHEDULER: step_scheduler(r); return;
	case OP_IO_PRIORITY: step_io_priority(r); return;
	case OP_PERSONALITY: step_personality(r); return;
	case OP_MEMORY_POLICY: step_memory_policy(r); return;
	case OP_READONLY_TREE: step_readonly_tree(r); return;
	}
	fail("plan: unknown step %u", op);
}

// berth_exec_plan reads the plan the runtime writes on the init pipe and
// carries it out; it never returns.
__attribute__((noreturn)) void berth_exec_plan(int fd)
{
	uint32_t len;
	ex.pipe = fd;
	read_full(fd, (char *)&len, 4);
	if (len > PLAN_MAX_SIZE)
		fail("plan: too large (%u bytes)", len);
	char *buf = malloc((size_t)len + 1);
	if (!buf)
		fail("plan: out of memory");
	read_full(fd, buf, len);
	struct reader r = {buf, buf + len, "header"};
	uint32_t magic = rd32(&r);
	if (magic != PLAN_MAGIC)
		fail("plan: bad magic %#x", magic);
	uint32_t version = rd32(&r);
	if (version != PLAN_VERSION)
		fail("plan: version %u, this executor runs version %u", version, PLAN_VERSION);
	while (r.p < r.end) {
		r.step = "header";
		uint32_t op = rd32(&r);
		r.step = op_name(op);
		uint32_t n = rd32(&r);
		if ((uint64_t)(r.end - r.p) < n)
			fail("plan: step %s: truncated", r.step);
		struct reader s = {r.p, r.p + n, r.step};
		run_step(op, &s);
		if (s.p != s.end)
			fail("plan: step %s: %zu bytes left over", s.step, (size_t)(s.end - s.p));
		r.p += n;
	}
	fail("plan: ended without exec");
}
