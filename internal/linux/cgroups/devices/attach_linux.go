package devices

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bpfProgLoadAttr is the BPF_PROG_LOAD part of union bpf_attr (the fields up
// to kern_version; the kernel zero-fills what we leave out).
type bpfProgLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	progFlags   uint32
}

// bpfAttachAttr is the BPF_PROG_ATTACH / BPF_PROG_DETACH part.
type bpfAttachAttr struct {
	targetFd    uint32
	attachBpfFd uint32
	attachType  uint32
	attachFlags uint32
	replaceFd   uint32
}

// bpfQueryAttr is the BPF_PROG_QUERY part.
type bpfQueryAttr struct {
	targetFd    uint32
	attachType  uint32
	queryFlags  uint32
	attachFlags uint32
	progIDs     uint64
	progCnt     uint32
	_           uint32
}

type bpfGetFDAttr struct {
	id        uint32
	nextID    uint32
	openFlags uint32
}

func bpf(cmd int, attr unsafe.Pointer, size uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// Load loads p as a cgroup device program and returns its fd. The verifier's
// log is part of the error when the kernel rejects the program.
func Load(p []Insn) (*os.File, error) {
	code := Encode(p)
	license := []byte("Apache-2.0\x00")
	logBuf := make([]byte, 64*1024)
	attr := bpfProgLoadAttr{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(len(p)),
		insns:    uint64(uintptr(unsafe.Pointer(&code[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
		logLevel: 1,
		logSize:  uint32(len(logBuf)),
		logBuf:   uint64(uintptr(unsafe.Pointer(&logBuf[0]))),
	}
	// The verifier gives up with EAGAIN when a signal is pending (Go's
	// preemption signal, on a slow machine): try again, as libbpf does.
	var fd uintptr
	var err error
	for try := 0; try < 5; try++ {
		if fd, err = bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); !errors.Is(err, unix.EAGAIN) {
			break
		}
	}
	runtime.KeepAlive(code)
	runtime.KeepAlive(license)
	if err != nil {
		msg := string(logBuf[:clen(logBuf)])
		return nil, fmt.Errorf("load device filter: %w: %s", &os.SyscallError{Syscall: "bpf(BPF_PROG_LOAD)", Err: err}, msg)
	}
	return os.NewFile(fd, "bpf-device-filter"), nil
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// Attach installs p on the cgroup v2 directory dir and then detaches the
// device programs that were there before, so there is never a moment with no
// filter (new first, old after; BPF_F_ALLOW_MULTI makes both legal at once,
// and with several programs the kernel allows only what every one allows).
func Attach(dir string, p []Insn) error {
	prog, err := Load(p)
	if err != nil {
		return err
	}
	defer prog.Close()
	cg, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("attach device filter: %w", err)
	}
	defer cg.Close()
	old, err := query(int(cg.Fd()))
	if err != nil {
		return err
	}
	attr := bpfAttachAttr{
		targetFd:    uint32(cg.Fd()),
		attachBpfFd: uint32(prog.Fd()),
		attachType:  unix.BPF_CGROUP_DEVICE,
		attachFlags: unix.BPF_F_ALLOW_MULTI,
	}
	if _, err := bpf(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return fmt.Errorf("attach device filter to %s: %w", dir, &os.SyscallError{Syscall: "bpf(BPF_PROG_ATTACH)", Err: err})
	}
	var errs []error
	for _, id := range old {
		if err := detach(int(cg.Fd()), id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Attached returns the ids of the device programs attached directly to dir.
func Attached(dir string) ([]uint32, error) {
	cg, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer cg.Close()
	return query(int(cg.Fd()))
}

func query(cgfd int) ([]uint32, error) {
	ids := make([]uint32, 64)
	attr := bpfQueryAttr{
		targetFd:   uint32(cgfd),
		attachType: unix.BPF_CGROUP_DEVICE,
		progIDs:    uint64(uintptr(unsafe.Pointer(&ids[0]))),
		progCnt:    uint32(len(ids)),
	}
	if _, err := bpf(unix.BPF_PROG_QUERY, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return nil, fmt.Errorf("query device filters: %w", &os.SyscallError{Syscall: "bpf(BPF_PROG_QUERY)", Err: err})
	}
	runtime.KeepAlive(ids)
	return ids[:attr.progCnt], nil
}

func detach(cgfd int, id uint32) error {
	ga := bpfGetFDAttr{id: id}
	fd, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&ga), unsafe.Sizeof(ga))
	if err != nil {
		return fmt.Errorf("detach old device filter %d: %w", id, &os.SyscallError{Syscall: "bpf(BPF_PROG_GET_FD_BY_ID)", Err: err})
	}
	defer unix.Close(int(fd))
	attr := bpfAttachAttr{targetFd: uint32(cgfd), attachBpfFd: uint32(fd), attachType: unix.BPF_CGROUP_DEVICE}
	if _, err := bpf(unix.BPF_PROG_DETACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
		return fmt.Errorf("detach old device filter %d: %w", id, &os.SyscallError{Syscall: "bpf(BPF_PROG_DETACH)", Err: err})
	}
	return nil
}
