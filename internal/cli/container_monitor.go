// The monitor of a detached container (conmon's job): a background berth
// that keeps the log and carries out the restart policy.

package cli

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli"

	"berth/internal/oneshot"
)

// startMonitor runs the container under a background berth process (the
// monitor: conmon's job), and returns once the container runs (printing
// its id when printID) or failed to start (with docker's exit code).
func startMonitor(ct *oneshot.Container, printID bool) error {
	mlog, err := os.OpenFile(ct.Paths.MonitorLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return withCode(125, err)
	}
	defer mlog.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return withCode(125, err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return withCode(125, err)
	}
	defer r.Close()
	exe, err := os.Executable()
	if err != nil {
		return withCode(125, err)
	}
	cmd := exec.Command(exe, "--root", ct.Meta.Root, "container", "x-monitor", "--home", ct.Home, ct.Meta.Name)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, mlog
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return withCode(125, err)
	}
	w.Close()
	cmd.Process.Release()
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line != "started" {
		code, msg := 125, line
		if rest, ok := strings.CutPrefix(line, "error "); ok {
			cs, m, _ := strings.Cut(rest, " ")
			if n, err := strconv.Atoi(cs); err == nil {
				code, msg = n, m
			}
		}
		if msg == "" {
			b, _ := os.ReadFile(ct.Paths.MonitorLog)
			msg = strings.TrimSpace(string(b))
		}
		return withCode(code, fmt.Errorf("container %s did not start: %s", ct.Meta.Name, msg))
	}
	if printID {
		fmt.Println(ct.Meta.ID)
	}
	return nil
}

// containerMonitor is the background process of a detached container: its
// runner (see oneshot.Container.Run).
func containerMonitor(c *cli.Context) error {
	notify := os.NewFile(3, "started")
	ct, err := oneshot.Load(c.String("home"), c.Args().First())
	if err != nil {
		fmt.Fprintf(notify, "error 125 %s\n", oneLine(err.Error()))
		return err
	}
	signal.Ignore(syscall.SIGHUP)
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	notified := false
	code, err := ct.Run(oneshot.IO{Stdin: stdin}, func() {
		notified = true
		fmt.Fprintln(notify, "started")
		notify.Close()
	}, warnf)
	if !notified {
		msg := fmt.Sprintf("exited with status %d before it ran", code)
		if err != nil {
			msg = err.Error()
		}
		fmt.Fprintf(notify, "error %d %s\n", code, oneLine(msg))
		notify.Close()
	}
	return err
}
