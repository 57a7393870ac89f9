// Package console receives a container's pty master from a console socket
// the way runc's clients do: one message whose payload is the master's name
// and whose ancillary data is one SCM_RIGHTS message with one fd (the
// executor opens the pty and sends it: internal/nsenter/console.c).
package console

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// MasterName is the payload runc sends with the master fd.
const MasterName = "/dev/pts/ptmx"

// RecvMaster receives exactly one fd sent over sock; anything else is an
// error, as containerd's receiver treats it.
func RecvMaster(sock *os.File) (*os.File, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receive console master: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("console socket: want 1 control message, got %d", len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, err
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, errors.New("console socket: want exactly 1 fd")
	}
	return os.NewFile(uintptr(fds[0]), string(buf[:n])), nil
}
