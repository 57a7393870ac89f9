package runtime

import (
	"errors"
	"io"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"berth/internal/linux/console"
	"berth/internal/state"
)

// RunOptions are run's flags.
type RunOptions struct {
	CreateOptions
	Detach      bool
	Keep        bool
	NoSubreaper bool
	// Started, if set, is called once the container process runs.
	Started func()
}

// Run creates and starts a container. Detached, it returns once the process
// runs. In the foreground it is the container's subreaper, forwards signals,
// relays the terminal, waits, destroys the container (unless Keep) and
// returns the exit status (128+signal when killed).
func (r *Runtime) Run(id string, o RunOptions) (int, error) {
	if o.Detach {
		cr, err := r.create(id, o.CreateOptions)
		if err != nil {
			return 1, err
		}
		defer cr.c.Release()
		cr.proc.Cmd.Process.Release()
		if err := r.startLocked(cr.c, r.phases()); err != nil {
			return 1, err
		}
		return 0, nil
	}
	if !o.NoSubreaper {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return 1, os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err)
		}
	}
	rl := startRelay(128)
	stopped := (<-chan struct{})(nil)
	defer func() {
		if stopped == nil {
			stopped = rl.stop()
		}
		<-stopped
	}()
	sigc := rl.c

	var consoleParent *os.File
	if o.ConsoleSocket == "" {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 1, os.NewSyscallError("socketpair", err)
		}
		consoleParent = os.NewFile(uintptr(fds[0]), "console-parent")
		defer consoleParent.Close()
		child := os.NewFile(uintptr(fds[1]), "console-child")
		defer child.Close()
		o.consoleConn = child
	}
	cr, err := r.create(id, o.CreateOptions)
	if err != nil {
		return 1, err
	}
	c := cr.c
	pid := cr.proc.Pid
	var restore func()
	var master *os.File
	if c.Config.Process.Terminal && consoleParent != nil {
		master, err = console.RecvMaster(consoleParent)
		if err != nil {
			c.Release()
			r.teardown(id)
			return 1, err
		}
		defer master.Close()
		restore = relayTerminal(master, o.Stdin, o.Stdout, o.KeepONLCR)
	}
	ph := r.phases()
	rl.wait() // every signal from here on reaches the container
	if err := r.startLocked(c, ph); err != nil {
		c.Release()
		r.teardown(id)
		return 1, err
	}
	c.Release()
	if o.Started != nil {
		o.Started()
	}

	status := -1
	for status < 0 {
		sig := <-sigc
		switch sig {
		case unix.SIGCHLD:
			status = reap(pid)
		case unix.SIGWINCH:
			if master != nil {
				resize(master, o.Stdin)
			}
		case unix.SIGURG:
			// Go's preemption signal; never forwarded.
		default:
			_ = unix.Kill(pid, sig.(unix.Signal))
		}
	}
	ph.done("process ran")
	stopped = rl.stop() // meanwhile, on the other CPU
	if restore != nil {
		restore()
	}
	if !o.Keep {
		if err := r.teardown(id); err != nil {
			return status, err
		}
		ph.done("teardown")
	}
	return status, nil
}

// startLocked is Start on a container whose lock the caller holds.
func (r *Runtime) startLocked(c *Container, ph *phase) error {
	if err := c.release(); err != nil {
		return err
	}
	ph.done("process released")
	if h := c.Config.Hooks; h != nil && len(h.Poststart) > 0 {
		if err := r.runHooks("poststart", h.Poststart, c.OCIState(state.Running)); err != nil {
			// As runc's main branch: a failed poststart hook kills the
			// container, and start fails with the hook's error.
			if kerr := c.signal(unix.SIGKILL, false); kerr != nil && !errors.Is(kerr, state.ErrNotRunning) {
				r.warn("kill after failed poststart: %v", kerr)
			}
			c.waitStopped(10 * time.Second)
			return err
		}
		ph.done("poststart hooks")
	}
	return nil
}

// teardown kills what is left of a container and destroys it.
func (r *Runtime) teardown(id string) error {
	c, err := r.Load(id)
	if err != nil {
		if errors.Is(err, state.ErrNotExist) {
			return nil
		}
		return err
	}
	defer c.Release()
	if c.Status().Alive() {
		_ = c.kill()
	}
	return r.destroy(c, r.phases())
}

// reap collects every exited child (we may be a subreaper for orphans) and
// returns init's status once it is among them, else -1.
func reap(initPid int) int {
	status := -1
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return status
		}
		if pid == initPid {
			switch {
			case ws.Exited():
				status = ws.ExitStatus()
			case ws.Signaled():
				status = 128 + int(ws.Signal())
			default:
				status = 255
			}
		}
	}
}

// relayTerminal copies between the caller's stdio (in and out: the
// create options', our own by default) and the pty master, putting in in
// raw mode while it lasts when it is a terminal; the returned func waits
// for the output to drain and restores the terminal. Unless keepONLCR, the
// pty stops turning "\n" into "\r\n" (runc's foreground terminal).
func relayTerminal(master, in, out *os.File, keepONLCR bool) func() {
	if !keepONLCR {
		// As runc: the container's newlines reach the caller as "\n", not
		// the "\r\n" a pty makes of them.
		if t, err := unix.IoctlGetTermios(int(master.Fd()), unix.TCGETS); err == nil {
			t.Oflag &^= unix.ONLCR
			_ = unix.IoctlSetTermios(int(master.Fd()), unix.TCSETS, t)
		}
	}
	if in == nil {
		in = os.Stdin
	}
	if out == nil {
		out = os.Stdout
	}
	var oldState *term.State
	if term.IsTerminal(int(in.Fd())) {
		if st, err := term.MakeRaw(int(in.Fd())); err == nil {
			oldState = st
		}
		resize(master, in)
	}
	go io.Copy(master, in)
	done := make(chan struct{})
	go func() {
		io.Copy(out, master)
		close(done)
	}()
	return func() {
		<-done
		if oldState != nil {
			term.Restore(int(in.Fd()), oldState)
		}
	}
}

// resize gives the pty master the window size of the terminal in (our
// stdin by default).
func resize(master, in *os.File) {
	if in == nil {
		in = os.Stdin
	}
	if ws, err := unix.IoctlGetWinsize(int(in.Fd()), unix.TIOCGWINSZ); err == nil {
		_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// relay is the signal subscription of a foreground run or exec. Turning
// each of ~60 signals on (and off again) costs the Go runtime a round trip
// to its signal-mask thread, 1-1.5 ms in all here, so both happen in a
// goroutine, alongside create and teardown, and wait() makes sure the
// subscription is complete before the container process is let go.
type relay struct {
	c     chan os.Signal
	ready chan struct{}
}

func startRelay(buf int) *relay {
	rl := &relay{c: make(chan os.Signal, buf), ready: make(chan struct{})}
	go func() {
		signal.Notify(rl.c, forwardedSignals...)
		close(rl.ready)
	}()
	return rl
}

func (rl *relay) wait() { <-rl.ready }

// stop unsubscribes in the background; the channel closes when done.
func (rl *relay) stop() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		<-rl.ready
		signal.Stop(rl.c)
		close(done)
	}()
	return done
}

// forwardedSignals are the signals a foreground run or exec relays to the
// container process (runc relays all it can catch), plus SIGCHLD and
// SIGWINCH it handles itself. SIGURG is left out: it is the Go runtime's
// preemption signal, sent to this process itself many times a second while
// it works, and a Notify for it wakes the signal goroutine each time (runc
// receives and drops it). 32 and 33 belong to glibc's threads.
var forwardedSignals = func() []os.Signal {
	var out []os.Signal
	for s := unix.Signal(1); s <= 64; s++ {
		if s != unix.SIGKILL && s != unix.SIGSTOP && s != unix.SIGURG && s != 32 && s != 33 {
			out = append(out, s)
		}
	}
	return out
}()
