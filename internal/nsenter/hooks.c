// OCI hooks: the hook's path and args (args[0] is its argv[0]) with only
// its own env, the container state JSON on its stdin, its stdout and
// stderr kept for the error, and its timeout. Failures are worded as Go's
// os/exec words them ("exit status 1", "signal: killed", "fork/exec ...")
// after the prefix the plan gives ("error running prestart hook #0"), which
// is runc's wording; clients and users match it.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "executor.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

// What a hook may print before the rest is dropped.
#define HOOK_OUTPUT_MAX (1 << 20)

struct capture {
	int fd;
	char *buf;
	size_t len;
};

static void capture_read(struct capture *c)
{
	char tmp[65536];
	ssize_t n = read(c->fd, tmp, sizeof(tmp));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close(c->fd);
		c->fd = -1;
		return;
	}
	size_t keep = (size_t)n;
	if (c->len + keep > HOOK_OUTPUT_MAX)
		keep = HOOK_OUTPUT_MAX - c->len;
	if (keep > 0) {
		char *b = realloc(c->buf, c->len + keep + 1);
		if (!b)
			fail("hook output: out of memory");
		c->buf = b;
		memcpy(c->buf + c->len, tmp, keep);
		c->len += keep;
		c->buf[c->len] = 0;
	}
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void make_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC) < 0)
		fail("hook: pipe: %s", errtext(errno));
}

// status_text is Go's ExitError text for a wait status.
static void status_text(int status, char *out, size_t n)
{
	if (WIFEXITED(status)) {
		snprintf(out, n, "exit status %d", WEXITSTATUS(status));
		return;
	}
	char sig[64];
	snprintf(sig, sizeof(sig), "%s", strsignal(WTERMSIG(status)));
	if (sig[0] >= 'A' && sig[0] <= 'Z')
		sig[0] = (char)(sig[0] - 'A' + 'a');
	snprintf(out, n, "signal: %s%s", sig, WCOREDUMP(status) ? " (core dumped)" : "");
}

void step_run_hook(struct reader *r)
{
	uint32_t nargs, nenv;
	char *pfx = rdstr(r), *path = rdstr(r);
	char **args = rdstrs(r, &nargs, 0);
	char **env = rdstrs(r, &nenv, 0);
	if (rdflag(r)) {
		if (!ex.envp)
			fail("plan: a hook with the process env before env");
		free(env);
		env = NULL;
	}
	char **hook_env = env ? env : ex.envp;
	uint32_t timeout = rd32(r);
	char *state = rdstr(r);
	int in[2], out[2], errp[2], ex_err[2];
	// A hook that exits without reading its stdin must not kill us with
	// SIGPIPE; the disposition goes back to the default before anything
	// else execs (an ignored signal would survive execve).
	signal(SIGPIPE, SIG_IGN);
	make_pipe(in);
	make_pipe(out);
	make_pipe(errp);
	make_pipe(ex_err);
	pid_t pid = fork();
	if (pid < 0)
		fail("%s: fork: %s", pfx, errtext(errno));
	if (pid == 0) {
		// Only stdio reaches the hook: nothing the runtime holds. Every
		// end is first moved above stdio, so none is overwritten by (or is
		// already, when we run with stdio closed) the fd it goes to.
		int e = fcntl(ex_err[1], F_DUPFD_CLOEXEC, 3);
		int i0 = fcntl(in[0], F_DUPFD_CLOEXEC, 3);
		int o1 = fcntl(out[1], F_DUPFD_CLOEXEC, 3);
		int e2 = fcntl(errp[1], F_DUPFD_CLOEXEC, 3);
		if (e < 0 || i0 < 0 || o1 < 0 || e2 < 0 || dup2(i0, 0) < 0 || dup2(o1, 1) < 0 || dup2(e2, 2) < 0)
			_exit(127);
		syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		execve(path, args, hook_env);
		int errnum = errno;
		(void)!write(e, &errnum, sizeof(errnum));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(errp[1]);
	close(ex_err[1]);
	// The exec error, or EOF once execve succeeded.
	int errnum = 0;
	ssize_t en;
	do
		en = read(ex_err[0], &errnum, sizeof(errnum));
	while (en < 0 && errno == EINTR);
	close(ex_err[0]);
	if (en == (ssize_t)sizeof(errnum)) {
		close(in[1]);
		waitpid(pid, NULL, 0);
		fail("%s: fork/exec %s: %s, stdout: , stderr: ", pfx, path, errtext(errnum));
	}
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		fail("%s: pidfd_open: %s", pfx, errtext(errno));
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	struct capture co = {out[0], NULL, 0}, ce = {errp[0], NULL, 0};
	size_t slen = strlen(state), sent = 0;
	int inw = in[1];
	long long deadline = timeout ? now_ms() + (long long)timeout * 1000 : 0;
	int exited = 0, status = 0;
	long long drain_until = 0;
	while (!exited || co.fd >= 0 || ce.fd >= 0) {
		struct pollfd p[4];
		int np = 0, ipid = -1, iin = -1, io = -1, ie = -1;
		if (!exited) {
			ipid = np;
			p[np++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
		}
		if (inw >= 0) {
			iin = np;
			p[np++] = (struct pollfd){.fd = inw, .events = POLLOUT};
		}
		if (co.fd >= 0) {
			io = np;
			p[np++] = (struct pollfd){.fd = co.fd, .events = POLLIN};
		}
		if (ce.fd >= 0) {
			ie = np;
			p[np++] = (struct pollfd){.fd = ce.fd, .events = POLLIN};
		}
		int wait = -1;
		long long t = now_ms();
		if (exited) {
			// Go's WaitDelay: output pipes held open by the hook's own
			// children are given up a second after it exited.
			if (t >= drain_until)
				break;
			wait = (int)(drain_until - t);
		} else if (deadline) {
			if (t >= deadline) {
				kill(pid, SIGKILL);
				waitpid(pid, NULL, 0);
				fail("%s: timeout after %u seconds", pfx, timeout);
			}
			wait = (int)(deadline - t);
		}
		int rc = poll(p, (nfds_t)np, wait);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			fail("%s: poll: %s", pfx, errtext(errno));
		if (iin >= 0 && p[iin].revents) {
			ssize_t w = write(inw, state + sent, slen - sent);
			if (w > 0)
				sent += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || sent == slen) {
				close(inw); // EPIPE: the hook does not read its stdin
				inw = -1;
			}
		}
		if (io >= 0 && p[io].revents)
			capture_read(&co);
		if (ie >= 0 && p[ie].revents)
			capture_read(&ce);
		if (ipid >= 0 && p[ipid].revents) {
			if (waitpid(pid, &status, 0) < 0)
				fail("%s: wait: %s", pfx, errtext(errno));
			exited = 1;
			drain_until = now_ms() + 1000;
			if (inw >= 0) {
				close(inw);
				inw = -1;
			}
		}
	}
	close(pidfd);
	if (inw >= 0)
		close(inw);
	if (co.fd >= 0)
		close(co.fd);
	if (ce.fd >= 0)
		close(ce.fd);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char st[128];
		status_text(status, st, sizeof(st));
		fail("%s: %s, stdout: %s, stderr: %s", pfx, st, co.buf ? co.buf : "", ce.buf ? ce.buf : "");
	}
	free(co.buf);
	free(ce.buf);
	free(args);
	free(env);
	signal(SIGPIPE, SIG_DFL);
}
