// The plans the runtime writes on the init pipe (see execplan.c, initplan.c
// and internal/runtime/fastexec.go, fastinit.go).
#ifndef BERTH_PLAN_H
#define BERTH_PLAN_H
#include <stddef.h>
#include <stdint.h>

// berth_run_plan reads a plan from fd and runs it; it never returns.
__attribute__((noreturn)) void berth_run_plan(int fd);
// berth_send_error reports msg on the init pipe as an ipc error message.
void berth_send_error(int fd, const char *msg);

// A cursor over the plan: native-endian u32/u64 fields, strings as a u32
// length, the bytes and a NUL (used in place). A short or malformed plan
// fails the process.
struct reader {
	char *p, *end;
};
uint32_t rd32(struct reader *r);
uint64_t rd64(struct reader *r);
char *rdstr(struct reader *r);
// rdstrs returns a NULL-terminated list with room for one more entry.
char **rdstrs(struct reader *r, uint32_t *count);
void read_full(int fd, char *buf, size_t n);

// fail reports the message on the init pipe and exits 1.
__attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...);
// errtext is Go's wording of an errno: strerror with a lower-case start.
const char *errtext(int err, char *buf, size_t n);

// What init keeps for its wait on exec.fifo after the rootfs section.
struct init_wait {
	int fd_dir;  // /proc/self/fd, opened before pivot_root
	int fifo_fd; // the O_PATH handle of exec.fifo
};
// berth_init_rootfs runs the rootfs section of an init plan (initplan.c).
void berth_init_rootfs(struct reader *r, int pipe_fd, struct init_wait *w);
#endif
