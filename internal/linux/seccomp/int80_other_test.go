//go:build !amd64

package seccomp

// int80 exists only on amd64; the kernel tests that use it skip elsewhere.
func int80(trap, a1, a2, a3 uintptr) uintptr { panic("int $0x80 needs amd64") }
