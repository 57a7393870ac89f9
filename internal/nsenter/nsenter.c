// Joins namespaces that Go cannot join once its runtime has started threads.
//
// setns(2) into a user namespace requires a single-threaded caller, and into a
// mount namespace a caller that does not share its fs_struct (every Go thread
// does). This constructor runs in `berth init` before the Go runtime starts, so
// the process is still single-threaded. The parent passes open namespace fds
// and what to unshare afterwards through the environment:
//
//   _BERTH_CGROUP="fd:controller,..."       cgroup v1 "tasks" files: "0" is
//                                           written to each first, moving this
//                                           (single-threaded) process without
//                                           the kernel's global threadgroup
//                                           lock and its RCU grace period
//                                           (see internal/linux/cgroups/join.go)
//   _BERTH_SETNS="fd:nstype,fd:nstype,..."  joined in order (cgroup, then user)
//   _BERTH_UNSHARE="flags"                  unshare(2) after joining (new
//                                           namespaces owned by a joined userns,
//                                           and always a new time namespace)
//   _BERTH_TIMENS="monotonic S N\nboottime S N"  offsets for that time namespace
//   _BERTH_MAPS=1                           first, wait for the runtime to
//                                           write the id maps (CTL_MAPPED)
//                                           and run again (see wait_maps)
//   _BERTH_FORK=1                           after the joins, fork: the child
//                                           goes on, in the pid namespace
//                                           joined (a rootless runtime's
//                                           joins, all made here)
//   _BERTH_INITPIPE="fd"                    the init pipe: the plan comes
//                                           on it, failures are reported on
//                                           it; this process is set up by
//                                           the executor (plan.c) and never
//                                           starts Go
//
// Namespaces that any thread may join (net, ipc, uts, pid) are joined by the
// parent on a locked OS thread before the clone instead; see internal/spawn.
// The cgroup namespace is joined here so that the parent stays in its own
// while clone3 places the child into a v2 cgroup (CLONE_INTO_CGROUP checks
// the caller's cgroup namespace on hosts mounted with nsdelegate).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor.h"

__attribute__((noreturn)) void berth_exec_plan(int fd);

static void berth_fail(const char *what, int err)
{
	const char *p = getenv("_BERTH_INITPIPE");
	ex.pipe = p ? atoi(p) : -1;
	fail("%s: %s", what, strerror(err));
}

static const char *berth_nsname(int t)
{
	switch (t) {
	case CLONE_NEWUSER: return "user";
	case CLONE_NEWNS: return "mnt";
	case CLONE_NEWTIME: return "time";
	case CLONE_NEWNET: return "net";
	case CLONE_NEWIPC: return "ipc";
	case CLONE_NEWUTS: return "uts";
	case CLONE_NEWPID: return "pid";
	case CLONE_NEWCGROUP: return "cgroup";
	}
	return "unknown";
}

// wait_maps is for a child in a new user namespace whose maps the runtime
// writes with newuidmap/newgidmap: it waits for them, then runs itself
// again, now the namespace's root, so the execve grants it the
// capabilities there that the first one, unmapped, lost.
static void wait_maps(char **argv)
{
	const char *p = getenv("_BERTH_INITPIPE");
	char b;
	ssize_t n;
	if (!p)
		berth_fail("_BERTH_MAPS without an init pipe", EINVAL);
	do
		n = read(atoi(p), &b, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(1); // the runtime went away
	if (b != CTL_MAPPED)
		berth_fail("unexpected message while waiting for the id maps", EPROTO);
	unsetenv("_BERTH_MAPS");
	execv("/proc/self/exe", argv);
	berth_fail("run again as the user namespace's root", errno);
}

__attribute__((constructor)) static void berth_nsenter(int argc, char **argv, char **envp)
{
	(void)argc;
	(void)envp;
	if (getenv("_BERTH_MAPS"))
		wait_maps(argv);
	const char *s = getenv("_BERTH_SETNS");
	const char *u = getenv("_BERTH_UNSHARE");
	const char *t = getenv("_BERTH_TIMENS");
	const char *g = getenv("_BERTH_CGROUP");
	char what[96];

	if (g && *g) {
		while (*g) {
			char *end;
			size_t n;
			long fd = strtol(g, &end, 10);
			if (*end != ':')
				berth_fail("malformed _BERTH_CGROUP", EINVAL);
			g = end + 1;
			n = strcspn(g, ",");
			if (write((int)fd, "0", 1) != 1) {
				snprintf(what, sizeof(what), "join %.*s cgroup", (int)(n < 40 ? n : 40), g);
				berth_fail(what, errno);
			}
			close((int)fd);
			g += n;
			if (*g == ',')
				g++;
		}
	}
	if (s && *s) {
		while (*s) {
			char *end;
			long fd = strtol(s, &end, 10);
			long t;
			if (*end != ':')
				berth_fail("malformed _BERTH_SETNS", EINVAL);
			t = strtol(end + 1, &end, 10);
			if (setns((int)fd, (int)t) < 0) {
				snprintf(what, sizeof(what), "setns %s", berth_nsname((int)t));
				berth_fail(what, errno);
			}
			close((int)fd);
			if (t == CLONE_NEWUSER) {
				// Become the namespace's root, as a process created in it would be.
				if (setresgid(0, 0, 0) < 0)
					berth_fail("setresgid in joined user namespace", errno);
				if (setresuid(0, 0, 0) < 0)
					berth_fail("setresuid in joined user namespace", errno);
			}
			if (*end == ',')
				end++;
			s = end;
		}
	}
	if (u && *u) {
		if (unshare(atoi(u)) < 0)
			berth_fail("unshare", errno);
	}
	if (t && *t) {
		// A new time namespace takes its offsets before any process is in
		// it; this process enters it at execve (time_for_children).
		int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
		size_t n = strlen(t);
		if (fd < 0)
			berth_fail("open /proc/self/timens_offsets", errno);
		if (write(fd, t, n) != (ssize_t)n)
			berth_fail("write timens_offsets", errno);
		close(fd);
	}
	const char *p = getenv("_BERTH_INITPIPE");
	if (p && getenv("_BERTH_FORK")) {
		// A pid namespace joined here takes effect for children only:
		// the process goes on as its child; this one reports that pid
		// and leaves (the runtime reaps it, and adopts the child as a
		// subreaper).
		pid_t child = fork();
		if (child < 0)
			berth_fail("fork into the pid namespace", errno);
		if (child > 0) {
			char num[32];
			ex.pipe = atoi(p);
			snprintf(num, sizeof(num), "%d", (int)child);
			send_json("{\"type\":\"pid\",\"data\":{\"pid\":", num, "}}\n");
			_exit(0);
		}
	}
	if (p)
		berth_exec_plan(atoi(p)); // an init or exec process: finished here
	unsetenv("_BERTH_CGROUP");
	unsetenv("_BERTH_SETNS");
	unsetenv("_BERTH_UNSHARE");
	unsetenv("_BERTH_TIMENS");
}
