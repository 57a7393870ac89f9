// See execplan.c.
#ifndef BERTH_EXECPLAN_H
#define BERTH_EXECPLAN_H
__attribute__((noreturn)) void berth_exec_plan(int fd);
// berth_send_error reports msg on the init pipe as an ipc error message.
void berth_send_error(int fd, const char *msg);
#endif
