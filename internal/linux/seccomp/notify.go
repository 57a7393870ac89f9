package seccomp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// NewProcessState builds what runc sends to a seccomp agent: the container
// state, the pid of the process the filter was loaded in, the profile's
// listenerMetadata, and fds ["seccompFd"] naming the one SCM_RIGHTS fd.
func NewProcessState(state specs.State, pid int, metadata string) *specs.ContainerProcessState {
	return &specs.ContainerProcessState{
		Version:  specs.Version,
		Fds:      []string{specs.SeccompFdName},
		Pid:      pid,
		Metadata: metadata,
		State:    state,
	}
}

// SendListener connects to the agent's AF_UNIX stream socket at
// listenerPath and sends, in one sendmsg, the JSON of ps as data and
// listenerFd as SCM_RIGHTS (runtime-spec: one state per connection, fds only
// in the first message, the connection is not reused). ps.Fds must name the
// fds in order. An agent that is absent or does not accept within timeout is
// an error, as the spec requires; timeout 0 means 10 seconds.
func SendListener(listenerPath string, ps *specs.ContainerProcessState, listenerFd int, timeout time.Duration) error {
	if listenerPath == "" {
		return errors.New("seccomp: empty listenerPath")
	}
	if ps == nil || len(ps.Fds) != 1 {
		return errors.New("seccomp: process state must name exactly one fd")
	}
	if listenerFd < 0 {
		return fmt.Errorf("seccomp: invalid listener fd %d", listenerFd)
	}
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	data, err := json.Marshal(ps)
	if err != nil {
		return fmt.Errorf("seccomp: encoding process state: %w", err)
	}
	conn, err := net.DialTimeout("unix", listenerPath, timeout)
	if err != nil {
		return fmt.Errorf("seccomp: connecting to listenerPath: %w", err)
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("seccomp: listenerPath %s is not a unix socket", listenerPath)
	}
	if err := uc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	n, oobn, err := uc.WriteMsgUnix(data, unix.UnixRights(listenerFd), nil)
	if err != nil {
		return fmt.Errorf("seccomp: sending listener fd to %s: %w", listenerPath, err)
	}
	if n != len(data) || oobn == 0 {
		return fmt.Errorf("seccomp: short write to %s (%d of %d bytes)", listenerPath, n, len(data))
	}
	return nil
}

// ReceiveListener is the agent side of SendListener, for tests and small
// agents: it reads one message from conn and returns the process state and
// the received fd (close it when done).
func ReceiveListener(conn *net.UnixConn) (*specs.ContainerProcessState, int, error) {
	buf := make([]byte, 1<<20)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, -1, fmt.Errorf("seccomp: receiving from runtime: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, -1, fmt.Errorf("seccomp: parsing control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, got...)
		}
	}
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	var ps specs.ContainerProcessState
	if err := json.Unmarshal(buf[:n], &ps); err != nil {
		closeAll()
		return nil, -1, fmt.Errorf("seccomp: decoding process state: %w", err)
	}
	if len(fds) != 1 || len(ps.Fds) != 1 || ps.Fds[0] != specs.SeccompFdName {
		closeAll()
		return nil, -1, fmt.Errorf("seccomp: expected one %q fd, got %d fds named %v", specs.SeccompFdName, len(fds), ps.Fds)
	}
	return &ps, fds[0], nil
}

// Notif is struct seccomp_notif: one syscall waiting for the agent.
type Notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  SeccompData
}

// SeccompData is struct seccomp_data.
type SeccompData struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

// NotifResp is struct seccomp_notif_resp.
type NotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// NotifRecv blocks until a notification arrives on the listener fd.
func NotifRecv(fd int) (*Notif, error) {
	var n Notif
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&n)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return nil, fmt.Errorf("seccomp: SECCOMP_IOCTL_NOTIF_RECV: %w", errno)
		}
		return &n, nil
	}
}

// NotifRespond answers a notification: the syscall returns val, or fails
// with errno when errno is non-zero (a negative errno, as the kernel wants,
// is also accepted). flags may be SECCOMP_USER_NOTIF_FLAG_CONTINUE.
func NotifRespond(fd int, id uint64, val int64, errno int32, flags uint32) error {
	if errno > 0 {
		errno = -errno
	}
	r := NotifResp{ID: id, Val: val, Error: errno, Flags: flags}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&r)))
	if e != 0 {
		return fmt.Errorf("seccomp: SECCOMP_IOCTL_NOTIF_SEND: %w", e)
	}
	return nil
}

// TakeListener duplicates fd number fd of process pid into the caller
// (pidfd_getfd, Linux 5.6; close-on-exec). It is runc's way to get the
// listener out of init: init only write(2)s the number after Load and
// waits, so the only syscall it needs unnotified is write (the default of
// WithNotifyForbidden). The caller needs ptrace-attach rights over pid.
func TakeListener(pid, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("seccomp: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	got, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("seccomp: pidfd_getfd %d of pid %d: %w", fd, pid, err)
	}
	return got, nil
}
