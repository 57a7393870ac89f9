// See execplan.c.
#ifndef BERTH_EXECPLAN_H
#define BERTH_EXECPLAN_H
__attribute__((noreturn)) void berth_exec_plan(int fd);
#endif
