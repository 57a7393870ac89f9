package seccomp

// int80 makes a 32-bit (ia32) system call from a 64-bit process, which the
// kernel reports to seccomp as AUDIT_ARCH_I386. Only the tests use it, to
// check the x86 vs x86_64 architecture dispatch on a real kernel; the
// linker drops it from binaries that do not.
func int80(trap, a1, a2, a3 uintptr) (r uintptr)
