package oneshot

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// Reap is --init: berth, bind-mounted at /dev/init and started as the
// container's pid 1 ("/dev/init -- CMD ARGS"), runs CMD as its child,
// forwards every signal it gets to it, reaps every orphan the container
// leaves (the zombies a shell-less image would pile up), and returns CMD's
// exit status (128+signal when a signal ended it), as tini and catatonit
// do. A command that cannot be found returns 127, one that cannot be run
// 126, with the reason in err.
func Reap(args []string) (int, error) {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		return 125, errors.New("usage: /dev/init -- COMMAND [ARG...]")
	}
	sigc := make(chan os.Signal, 128)
	var sigs []os.Signal
	for s := unix.Signal(1); s <= 64; s++ {
		// Not SIGURG, the Go runtime's preemption signal (it would crowd
		// the channel); 32 and 33 belong to glibc's threads.
		if s != unix.SIGKILL && s != unix.SIGSTOP && s != unix.SIGURG && s != 32 && s != 33 {
			sigs = append(sigs, s)
		}
	}
	signal.Notify(sigc, sigs...)
	path, err := exec.LookPath(args[0])
	if err != nil {
		return 127, fmt.Errorf("exec %s: %w", args[0], err)
	}
	cmd := exec.Command(path, args[1:]...)
	cmd.Args[0] = args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if term.IsTerminal(0) {
		// The command gets the terminal's foreground, so a shell's job
		// control and ^C work as without --init.
		cmd.SysProcAttr.Foreground, cmd.SysProcAttr.Ctty = true, 0
	}
	if err := cmd.Start(); err != nil {
		code := 126
		if errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		return code, fmt.Errorf("exec %s: %w", args[0], err)
	}
	child := cmd.Process.Pid
	// A SIGCHLD lost to a full channel must not leave zombies (or miss the
	// child's exit): reap on a timer too.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case sig := <-sigc:
			s := sig.(syscall.Signal)
			if s == unix.SIGPIPE {
				continue // our own broken pipes
			}
			if s != unix.SIGCHLD {
				_ = unix.Kill(child, s)
				continue
			}
		case <-tick.C:
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err != nil || pid <= 0 {
				break
			}
			if pid == child {
				if ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return ws.ExitStatus(), nil
			}
		}
	}
}
