package oneshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/image/layercache"
	"berth/internal/network"
	"berth/internal/runtime"
	"berth/internal/state"
)

// attacher adapts internal/network to the runtime's NetworkAttacher.
type attacher struct {
	c *Container
}

func (a *attacher) dns() network.DNSConfig {
	m := a.c.Meta
	return network.DNSConfig{Hostname: m.Config.Hostname, Nameservers: m.DNS, Search: m.DNSSearch, Options: m.DNSOptions, ExtraHosts: m.ExtraHosts}
}

func (a *attacher) Attach(ctx context.Context, id, netns, rootfs string) error {
	m := a.c.Meta
	if m.Network == network.DefaultNetwork {
		if _, err := network.EnsureNetwork(ctx, m.Network); err != nil {
			return err
		}
	}
	ports, err := parsePorts(m.Ports)
	if err != nil {
		return err
	}
	opts := network.AttachOptions{Container: id, Ports: ports, Rootfs: rootfs, DNS: a.dns(), IP: m.IP, MAC: m.MAC}
	if opts.IP == "" {
		opts.IP = m.State.IP
	}
	ep, err := network.Attach(ctx, m.Network, netns, opts)
	if err != nil && m.IP == "" && opts.IP != "" {
		// The address it had is taken now: any address will do.
		opts.IP = ""
		ep, err = network.Attach(ctx, m.Network, netns, opts)
	}
	if err != nil {
		return err
	}
	ip := ep.IPv4.Addr().String()
	return a.c.Update(func(m *Meta) { m.State.IP = ip })
}

func (a *attacher) Detach(ctx context.Context, id string) error {
	return network.Detach(ctx, a.c.Meta.Network, "", network.AttachOptions{Container: id})
}

// Runtime returns the runtime for the container, wired to its network.
func (c *Container) Runtime(warn func(string)) *runtime.Runtime {
	rt := &runtime.Runtime{Root: c.Meta.Root, Warn: warn}
	if c.Meta.Network != "" {
		rt.Network = &attacher{c: c}
	}
	return rt
}

// IO is the stdio of a foreground run. A nil Stdout (the detached monitor)
// sends the output to the log only; otherwise it goes to both.
type IO struct {
	Stdin, Stdout, Stderr *os.File
}

// ExitCode turns a failure to start the container process into docker's
// exit status: 127 when the command does not exist, 126 when it cannot be
// run, 125 for every other error of berth's own.
func ExitCode(err error) int {
	msg := err.Error()
	if i := strings.Index(msg, `exec: "`); i >= 0 {
		rest := msg[i:]
		switch {
		case strings.Contains(rest, "executable file not found"), strings.Contains(rest, "no such file or directory"):
			return 127
		case strings.Contains(rest, "permission denied"), strings.Contains(rest, "exec format error"), strings.Contains(rest, "is a directory"):
			return 126
		}
	}
	return 125
}

// Run runs the container until it exits for good: it records each start
// and exit, applies the restart policy (with docker's back-off: 100 ms,
// doubling, at most a minute, reset after ten seconds of running), keeps
// the log, and removes the container afterwards when it was created with
// --rm. started, if set, is called once, when the process first runs. A
// failure to start returns the error with its exit code (ExitCode).
func (c *Container) Run(stdio IO, started func(), warn func(string)) (int, error) {
	self, selfStart := os.Getpid(), uint64(0)
	if st, _, err := state.ProcStart(self); err == nil {
		selfStart = st
	}
	if err := c.Update(func(m *Meta) {
		m.State.RunnerPid, m.State.RunnerStart = self, selfStart
		m.State.ManualStop, m.State.Restarting = false, false
	}); err != nil {
		return 125, err
	}
	logs, err := openLog(c.Paths.Log, stdio)
	if err != nil {
		return 125, err
	}
	code, runErr := c.loop(stdio, logs, started, warn)
	logs.close()
	if c.Meta.Remove {
		if err := c.Remove(RemoveOptions{Force: true, Volumes: true, self: true, Warn: warn}); err != nil && !errors.Is(err, ErrNoSuchContainer) {
			runErr = errors.Join(runErr, err)
		}
		return code, runErr
	}
	if err := c.Update(func(m *Meta) { m.State.RunnerPid, m.State.RunnerStart, m.State.Restarting = 0, 0, false }); err != nil && !errors.Is(err, ErrNoSuchContainer) {
		warn(err.Error())
	}
	return code, runErr
}

func (c *Container) loop(stdio IO, logs *logSink, started func(), warn func(string)) (int, error) {
	backoff := 100 * time.Millisecond
	first := true
	for {
		if err := c.ensureMounted(); err != nil {
			return 125, err
		}
		rt := c.Runtime(warn)
		var startedAt time.Time
		code, err := rt.Run(c.Meta.Name, runtime.RunOptions{
			CreateOptions: runtime.CreateOptions{Bundle: c.Paths.Bundle, Stdin: stdio.Stdin, Stdout: logs.stdout, Stderr: logs.stderr, KeepONLCR: true},
			Started: func() {
				startedAt = time.Now().UTC()
				if err := c.Update(func(m *Meta) {
					m.State.StartedAt, m.State.Restarting, m.State.Error = startedAt, false, ""
				}); err != nil {
					warn(err.Error())
				}
				if first && started != nil {
					started()
				}
				first = false
			},
		})
		if err != nil && startedAt.IsZero() {
			code = ExitCode(err)
		}
		ran := time.Since(startedAt)
		var st RunState
		uerr := c.Update(func(m *Meta) {
			m.State.FinishedAt, m.State.ExitCode = time.Now().UTC(), code
			if err != nil {
				m.State.Error = err.Error()
			}
			st = m.State
		})
		if uerr != nil {
			// Removed under us (rm -f): nothing to restart.
			return code, err
		}
		c.writeExit(code)
		if err != nil {
			return code, err // a container that cannot start is not restarted
		}
		if !shouldRestart(c.Meta.Restart, st, code) {
			return code, nil
		}
		if ran >= 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		if err := c.Update(func(m *Meta) { m.State.Restarting = true; m.State.RestartCount++ }); err != nil {
			return code, nil
		}
		if !c.sleepUnlessStopped(backoff) {
			return code, nil
		}
		if backoff *= 2; backoff > time.Minute {
			backoff = time.Minute
		}
	}
}

func shouldRestart(p RestartPolicy, st RunState, code int) bool {
	if st.ManualStop {
		return false
	}
	switch p.Name {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		return code != 0 && (p.MaxRetries == 0 || st.RestartCount < p.MaxRetries)
	}
	return false
}

// sleepUnlessStopped waits d, or less if the container is stopped or
// removed meanwhile (false then).
func (c *Container) sleepUnlessStopped(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		m, err := readMeta(c.Paths)
		if err != nil || m.State.ManualStop {
			return false
		}
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		time.Sleep(min(left, 50*time.Millisecond))
	}
}

// writeExit keeps the last exit status in the exit file, written in place
// so `wait` can read it through a descriptor it opened even after --rm
// removed the container.
func (c *Container) writeExit(code int) {
	f, err := os.OpenFile(c.Paths.Exit, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	f.WriteAt([]byte(fmt.Sprintf("%-12d\n", code)), 0)
}

// ensureMounted mounts the overlay rootfs again if it went away (a
// reboot between runs).
func (c *Container) ensureMounted() error {
	if !layercache.IsOverlayBundle(c.Paths.Bundle) {
		return nil
	}
	return layercache.Remount(c.Paths.Bundle)
}

// Stop stops the container: its stop signal, then SIGKILL after timeout.
// The restart policy does not apply to this exit. It returns once the
// container and its runner are gone.
func (c *Container) Stop(timeout time.Duration, warn func(string)) error {
	if err := c.Update(func(m *Meta) { m.State.ManualStop = true }); err != nil {
		return err
	}
	sig, err := runtime.ParseSignal(c.Meta.Config.StopSignal)
	if err != nil {
		sig = unix.SIGTERM
	}
	rt := c.Runtime(warn)
	if err := rt.Kill(c.Meta.Name, sig, false); err == nil {
		if !c.waitExited(timeout) {
			if err := rt.Kill(c.Meta.Name, unix.SIGKILL, true); err != nil && !errors.Is(err, state.ErrNotExist) && !errors.Is(err, state.ErrNotRunning) {
				return err
			}
			c.waitExited(10 * time.Second)
		}
	} else if !errors.Is(err, state.ErrNotExist) && !errors.Is(err, state.ErrNotRunning) {
		return err
	}
	return c.settle(warn)
}

// Kill sends sig to the container's process. SIGKILL or the stop signal
// count as a stop (docker's rule): the restart policy does not apply.
func (c *Container) Kill(sig unix.Signal, warn func(string)) error {
	if !c.Running() {
		return fmt.Errorf("container %s is not running", c.Meta.Name)
	}
	stopSig, _ := runtime.ParseSignal(c.Meta.Config.StopSignal)
	if sig == unix.SIGKILL || sig == stopSig {
		if err := c.Update(func(m *Meta) { m.State.ManualStop = true }); err != nil {
			return err
		}
	}
	err := c.Runtime(warn).Kill(c.Meta.Name, sig, false)
	if errors.Is(err, state.ErrNotRunning) || errors.Is(err, state.ErrNotExist) {
		return fmt.Errorf("container %s is not running", c.Meta.Name)
	}
	return err
}

func (c *Container) waitExited(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if st, err := state.LoadView(c.Meta.Root, c.Meta.Name); err != nil || st.Status() == state.Stopped {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settle waits for the runner to finish with an exited container; with no
// runner left (it was killed), it destroys what the runtime still holds.
func (c *Container) settle(warn func(string)) error {
	if c.waitRunner(15 * time.Second) {
		if st, err := state.LoadView(c.Meta.Root, c.Meta.Name); err == nil && st.Status() == state.Stopped {
			return c.teardown(warn)
		}
		return nil
	}
	return fmt.Errorf("container %s: its runner (pid %d) did not finish", c.Meta.Name, c.Meta.State.RunnerPid)
}

// teardown removes the runtime state and the network endpoint.
func (c *Container) teardown(warn func(string)) error {
	rt := c.Runtime(warn)
	var errs []error
	if err := rt.Delete(c.Meta.Name, true); err != nil && !errors.Is(err, state.ErrNotExist) {
		errs = append(errs, err)
	}
	if rt.Network != nil {
		// Detach again: a container whose state was lost still has its lease.
		if err := rt.Network.Detach(context.Background(), c.Meta.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RemoveOptions are rm's flags.
type RemoveOptions struct {
	Force   bool // kill a running container first
	Volumes bool // remove its anonymous volumes too
	Warn    func(string)
	self    bool // called by the runner itself (--rm)
}

// Remove deletes the container and everything it holds: the process (with
// Force), the runtime state, the network endpoint, the overlay bundle, its
// files, and with Volumes its anonymous volumes. Named volumes stay.
func (c *Container) Remove(o RemoveOptions) error {
	warn := o.Warn
	if warn == nil {
		warn = func(string) {}
	}
	if !o.self {
		if s, _ := c.Status(); (c.Running() || s == StatusRestarting) && !o.Force {
			return fmt.Errorf("container %s is %s: stop it first or use --force", c.Meta.Name, s)
		}
		if err := c.Update(func(m *Meta) { m.State.ManualStop = true }); err != nil {
			if errors.Is(err, ErrNoSuchContainer) {
				return nil
			}
			return err
		}
		if c.Running() {
			if err := c.Runtime(warn).Kill(c.Meta.Name, unix.SIGKILL, true); err != nil && !errors.Is(err, state.ErrNotExist) && !errors.Is(err, state.ErrNotRunning) {
				return err
			}
		}
		if !c.waitRunner(15 * time.Second) {
			return fmt.Errorf("container %s: its runner (pid %d) did not finish", c.Meta.Name, c.Meta.State.RunnerPid)
		}
		if c.Meta.Remove {
			if _, err := os.Stat(c.Paths.Meta); errors.Is(err, os.ErrNotExist) {
				return nil // the runner removed it (--rm)
			}
		}
	}
	var errs []error
	if err := c.teardown(warn); err != nil {
		errs = append(errs, err)
	}
	if err := removeFiles(c.Paths); err != nil {
		errs = append(errs, err)
	}
	if o.Volumes {
		for _, v := range c.Meta.Volumes {
			if !v.Anonymous {
				continue
			}
			if err := RemoveVolume(c.Home, c.Meta.VolumeDir, v.Name); err != nil && !errors.Is(err, ErrNoSuchVolume) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeFiles unmounts the bundle and removes the container's directory,
// its record last: a removal that fails or is killed half-way leaves the
// record, through which rm finds (and finishes) the container again.
func removeFiles(p Paths) error {
	if layercache.IsOverlayBundle(p.Bundle) {
		if err := layercache.RemoveBundle(p.Bundle); err != nil {
			return err // nothing is removed through a bundle still mounted
		}
	}
	var errs []error
	ents, err := os.ReadDir(p.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range ents {
		if e.Name() == filepath.Base(p.Meta) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(p.Dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return os.RemoveAll(p.Dir)
}

// Start prepares a stopped container for a new run by its runner: it
// clears the record of the last stop. The caller then starts the runner.
func (c *Container) Start() error {
	if c.RunnerAlive() || c.Running() {
		return fmt.Errorf("container %s is already running", c.Meta.Name)
	}
	// Whatever the last run left in the runtime (a runner that was killed).
	if err := c.teardown(nil); err != nil {
		return err
	}
	return c.Update(func(m *Meta) { m.State.ManualStop, m.State.Restarting, m.State.Error = false, false, "" })
}

// Wait blocks until the container's current run ends (at once if it is not
// running) and returns its exit status; a container removed meanwhile
// (--rm) reports the status its runner wrote last.
func (c *Container) Wait(ctx context.Context) (int, error) {
	exit, err := os.Open(c.Paths.Exit)
	if err != nil {
		return 0, err
	}
	defer exit.Close()
	finished := c.Meta.State.FinishedAt
	if s, _ := c.Status(); !c.RunnerAlive() && (s == StatusExited || s == StatusCreated) {
		return c.Meta.State.ExitCode, nil
	}
	for {
		// The runner records the exit after the runtime's teardown: the
		// run ends when FinishedAt changes, not when the process is gone.
		if !c.RunnerAlive() && !c.Running() {
			return c.Meta.State.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if err := c.Reload(); err != nil {
			b := make([]byte, 12)
			n, _ := exit.ReadAt(b, 0)
			var code int
			if _, err := fmt.Sscan(strings.TrimSpace(string(b[:n])), &code); err != nil {
				return 0, fmt.Errorf("container %s was removed before it exited", c.Meta.Name)
			}
			return code, nil
		}
		if !c.Meta.State.FinishedAt.Equal(finished) {
			return c.Meta.State.ExitCode, nil
		}
	}
}

// logSink is where a runner's container output goes: the write ends the
// container gets (stdout, stderr), and the copiers into the log and, in
// the foreground, the caller's stdio.
type logSink struct {
	stdout, stderr *os.File
	wg             sync.WaitGroup
	closers        []io.Closer
	log            *os.File
}

// openLog opens the container log and the pipes into it (with a terminal
// the runtime relays the pty into the stdout pipe).
func openLog(path string, stdio IO) (*logSink, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	ls := &logSink{log: f}
	w := newLogWriter(f)
	pipe := func(stream string, to *os.File) (*os.File, error) {
		r, wr, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		ls.wg.Add(1)
		go func() {
			defer ls.wg.Done()
			defer r.Close()
			dst := w.stream(stream)
			if to != nil {
				dst = io.MultiWriter(dst, to)
			}
			io.Copy(dst, r)
		}()
		return wr, nil
	}
	if ls.stdout, err = pipe("stdout", stdio.Stdout); err != nil {
		f.Close()
		return nil, err
	}
	if ls.stderr, err = pipe("stderr", stdio.Stderr); err != nil {
		ls.stdout.Close()
		f.Close()
		return nil, err
	}
	return ls, nil
}

// close ends the pipes and waits (briefly: a process that escaped the
// container's teardown may hold a write end) for the log to be complete.
func (ls *logSink) close() {
	ls.stdout.Close()
	if ls.stderr != nil {
		ls.stderr.Close()
	}
	done := make(chan struct{})
	go func() { ls.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	for _, c := range ls.closers {
		c.Close()
	}
	ls.log.Close()
}

// hostPath maps a path in a stopped container to where it lies on the host:
// inside a volume or bind mount, or else in the rootfs.
func (c *Container) hostPath(p string) (root, rel string) {
	p = filepath.Clean("/" + p)
	best, bestLen := "", -1
	type mnt struct{ src, dst string }
	var ms []mnt
	for _, v := range c.Meta.Volumes {
		_, data, _ := volumePaths(c.Meta.VolumeDir, v.Name)
		ms = append(ms, mnt{data, v.Destination})
	}
	for _, b := range c.Meta.Binds {
		ms = append(ms, mnt{b.Source, b.Destination})
	}
	for _, m := range ms {
		if (p == m.dst || strings.HasPrefix(p, m.dst+"/")) && len(m.dst) > bestLen {
			best, bestLen = m.src, len(m.dst)
			rel = strings.TrimPrefix(p, m.dst)
		}
	}
	if best != "" {
		return best, "/" + strings.TrimPrefix(rel, "/")
	}
	return filepath.Join(c.Paths.Bundle, "rootfs"), p
}
