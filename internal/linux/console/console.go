// Package console allocates a container's pty and passes its master over a
// console socket the way runc does: one sendmsg whose payload is the master's
// name and whose ancillary data is one SCM_RIGHTS message with one fd.
package console

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// MasterName is the payload runc sends with the master fd.
const MasterName = "/dev/pts/ptmx"

// OpenPty opens a new pty from ptmx (the container's /dev/pts/ptmx) and its
// slave. The slave is opened through TIOCGPTPEER, from the master itself,
// so a container cannot swap the /dev/pts/N path under us.
func OpenPty(ptmx string) (master, slave *os.File, err error) {
	mfd, err := unix.Open(ptmx, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &os.PathError{Op: "open", Path: ptmx, Err: err}
	}
	master = os.NewFile(uintptr(mfd), MasterName)
	// The path is the container's: make sure it really was a pty
	// multiplexer (char 5:2), not a symlinked or planted file (CVE-2025-52565
	// replaced /dev/pts entries to get an arbitrary file used as the console).
	var st unix.Stat_t
	if err := unix.Fstat(mfd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 5 || unix.Minor(st.Rdev) != 2 {
		master.Close()
		return nil, nil, fmt.Errorf("%s is not a pty multiplexer", ptmx)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("open pty slave: %w", errno)
	}
	n, err := unix.IoctlGetInt(mfd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		unix.Close(int(sfd))
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	return master, os.NewFile(sfd, fmt.Sprintf("/dev/pts/%d", n)), nil
}

// SetSize sets a terminal's window size.
func SetSize(f *os.File, rows, cols uint16) error {
	return unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
}

// SendMaster sends master over the connected unix socket sock.
func SendMaster(sock *os.File, master *os.File) error {
	rights := unix.UnixRights(int(master.Fd()))
	return unix.Sendmsg(int(sock.Fd()), []byte(master.Name()), rights, nil, 0)
}

// RecvMaster receives exactly one fd sent by SendMaster; anything else is an
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
