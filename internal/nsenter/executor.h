// The plan executor: carries out, step by step, the plan the runtime
// compiled for a container's init or an exec process
// (internal/linux/plan). The steps are split by concern: plan.c reads the
// plan and dispatches, rootfs.c does the mount-namespace steps, procfs.c
// the writes through a private procfs, console.c the terminal, hooks.c the
// OCI hooks, process.c the process section and execve.
#ifndef BERTH_EXECUTOR_H
#define BERTH_EXECUTOR_H
#include <stddef.h>
#include <stdint.h>

#include "plan_gen.h"

// A cursor over one step's payload: native-endian u32/u64 fields, strings
// as a u32 length, the bytes and a NUL (used in place). Reading past the
// payload, or a malformed string or list, fails the plan.
struct reader {
	char *p, *end;
	const char *step; // its name, for errors
};
uint32_t rd32(struct reader *r);
uint64_t rd64(struct reader *r);
int rdflag(struct reader *r);
char *rdstr(struct reader *r);
// rdstrs returns a NULL-terminated list with room for `extra` more entries.
char **rdstrs(struct reader *r, uint32_t *count, uint32_t extra);
const void *rdbytes(struct reader *r, uint32_t *len);

// What the steps share.
struct executor {
	int pipe;      // the init pipe; -1 once Ready was sent
	int root;      // the in-root anchor (OpOpenRoot), -1 without one
	int fd_dir;    // /proc/self/fd, for the exec.fifo wait
	int procfs;    // the private procfs root, -1 until first used
	char **argv;   // OpLookup
	char **envp;   // OpEnv
	uint32_t nenv;
	const char *path; // the resolved executable
};
extern struct executor ex;

// fail reports the message and exits: on the init pipe (exit status 1)
// before Ready, on stderr (255) after it.
__attribute__((noreturn, format(printf, 1, 2))) void fail(const char *fmt, ...);
// warn sends a warning the runtime logs.
__attribute__((format(printf, 1, 2))) void warn(const char *fmt, ...);
// send_json writes head, msg JSON-escaped, and tail on the init pipe.
void send_json(const char *head, const char *msg, const char *tail);
// recv_ctl reads one control byte from the parent and fails with
// `unexpected` if it is not want. A closed pipe exits quietly: the runtime
// is gone, nobody is left to tell.
void recv_ctl(char want, const char *unexpected);
// ask_mount_source asks the runtime for the source of the config's mount
// index (ipc.MountSource) and returns the fd it sends (an open_tree mount
// or an O_PATH file); a CTL_PLACED that comes first is kept for recv_ctl.
int ask_mount_source(uint32_t index, const char *pfx);
// errtext is Go's wording of an errno: strerror with a lower-case start.
const char *errtext(int err);

// The steps, by file.
void step_host_mount(struct reader *r);
void step_open_root(struct reader *r);
void step_mount(struct reader *r);
void step_mount_cgroup(struct reader *r);
void step_devices(struct reader *r);
void step_mkdir_in_root(struct reader *r);
void step_pivot_root(struct reader *r);
void step_move_root(struct reader *r);
void step_chroot(struct reader *r);
void step_readonly_path(struct reader *r);
void step_mask_paths(struct reader *r);
void step_remount_readonly(struct reader *r);
void step_readonly_tree(struct reader *r);

void step_sysctl(struct reader *r);
void step_proc_write(struct reader *r);

void step_console(struct reader *r);

void step_run_hook(struct reader *r);

void step_env(struct reader *r);
void step_lookup(struct reader *r);
void step_cloexec_from(struct reader *r);
void step_fix_stdio(struct reader *r);
void step_check_cwd(struct reader *r);
void step_seccomp(struct reader *r);
void step_drop_bounding(struct reader *r);
void step_rlimits(struct reader *r);
void step_setgroups(struct reader *r);
void step_capset(struct reader *r);
void step_wait_start(struct reader *r);
void step_affinity(struct reader *r);
void step_scheduler(struct reader *r);
void step_io_priority(struct reader *r);
void step_personality(struct reader *r);
void step_memory_policy(struct reader *r);
__attribute__((noreturn)) void step_exec(void);
#endif
