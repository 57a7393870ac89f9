package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"berth/internal/oneshot"
	"berth/internal/state"
)

const envMonitor = "_BERTH_MONITOR"

func init() {
	homeFlag := cli.StringFlag{Name: "home", Value: oneshot.DefaultHome, EnvVar: "BERTH_CONTAINERS", Usage: "where containers keep their bundle, log and record"}
	register(cli.Command{
		Name:  "container",
		Usage: "run images as containers in one command (pull, bundle, network, run, clean up), like podman run",
		Description: `The one-shot path from an image reference to a running, networked container.
It does not change what "berth run -b BUNDLE ID" (runc's run) means.

Examples:
   # berth container run --rm -it alpine sh
   # berth container run -d --name web -p 8080:80 nginx
   # berth container logs web
   # berth container rm -f web`,
		Subcommands: []cli.Command{
			{
				Name:      "run",
				Usage:     "run a command in a new container from an image",
				ArgsUsage: "IMAGE [COMMAND [ARG...]]",
				Description: `Pulls IMAGE into berth's store if it is missing, makes an overlay bundle from the
layer cache, applies docker's default capabilities and seccomp profile, attaches
the default bridge network ("berth", with NAT and DNS) and runs the container.
Flags go before IMAGE; everything after it is the command.

Examples:
   # berth container run --rm -it alpine sh
   # berth container run -d --name web -p 8080:80 --memory 256m nginx
   # berth container run --rm --network none -v /srv/data:/data:ro busybox ls /data`,
				SkipArgReorder: true,
				// podman users type -it and -dit; runc's commands keep
				// urfave's default (no combined short flags), as runc does.
				UseShortOptionHandling: true,
				Flags: []cli.Flag{
					homeFlag,
					cli.StringFlag{Name: "name", Usage: "container name (default: generated)"},
					cli.BoolFlag{Name: "tty, t", Usage: "allocate a pseudo-terminal"},
					cli.BoolFlag{Name: "interactive, i", Usage: "keep stdin open"},
					cli.BoolFlag{Name: "detach, d", Usage: "run in the background; output goes to the container's log"},
					cli.BoolFlag{Name: "rm", Usage: "remove the container and everything it holds when it exits"},
					cli.StringSliceFlag{Name: "env, e", Usage: "set an environment variable K=V (repeatable)"},
					cli.StringSliceFlag{Name: "volume, v", Usage: "bind mount /host:/container[:ro] (repeatable)"},
					cli.StringSliceFlag{Name: "publish, p", Usage: "publish a port [hostIP:]hostPort:containerPort[/tcp|udp] (repeatable)"},
					cli.StringFlag{Name: "workdir, w", Usage: "working directory inside the container"},
					cli.StringFlag{Name: "user, u", Usage: "UID[:GID] to run as"},
					cli.StringFlag{Name: "entrypoint", Usage: "override the image's entrypoint"},
					cli.StringFlag{Name: "network", Value: "berth", Usage: "network name, none (loopback only) or host"},
					cli.StringFlag{Name: "hostname", Usage: "container hostname (default: its name)"},
					cli.BoolFlag{Name: "read-only", Usage: "mount the root filesystem read-only"},
					cli.StringSliceFlag{Name: "cap-add", Usage: "add a capability (repeatable)"},
					cli.StringSliceFlag{Name: "cap-drop", Usage: "drop a capability, or ALL (repeatable)"},
					cli.StringFlag{Name: "memory, m", Usage: "memory limit, e.g. 256m or 1g"},
					cli.Int64Flag{Name: "pids-limit", Usage: "maximum number of processes"},
					cli.StringFlag{Name: "pull", Value: "missing", Usage: "pull the image: missing, always or never"},
					cli.BoolTFlag{Name: "tls-verify", Usage: "require HTTPS and verified certificates from the registry (--tls-verify=false for a local plain-HTTP registry)"},
				},
				Action: containerRun,
			},
			{
				Name:  "ls",
				Usage: "list containers made by `berth container run`",
				Flags: []cli.Flag{homeFlag, cli.BoolFlag{Name: "quiet, q", Usage: "names only"}},
				Action: func(c *cli.Context) error {
					list, err := oneshot.List(c.String("home"))
					if err != nil {
						return err
					}
					if c.Bool("quiet") {
						for _, m := range list {
							fmt.Println(m.Name)
						}
						return nil
					}
					w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
					fmt.Fprintln(w, "NAME\tIMAGE\tSTATUS\tCREATED\tNETWORK\tPORTS")
					for _, m := range list {
						st := "stopped"
						if s, err := state.LoadView(m.Root, m.Name); err == nil {
							st = string(s.Status())
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Image, st, m.Created.Format(time.RFC3339), m.Network, strings.Join(m.Ports, ","))
					}
					return w.Flush()
				},
			},
			{
				Name:      "logs",
				Usage:     "print a detached container's output",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{homeFlag, cli.BoolFlag{Name: "follow, f", Usage: "keep printing new output until the container stops"}},
				Action: func(c *cli.Context) error {
					if err := checkArgs(c, 1, exactArgs); err != nil {
						return err
					}
					p, err := oneshot.Load(c.String("home"), c.Args().First())
					if err != nil {
						return err
					}
					return printLog(p, c.Bool("follow"))
				},
			},
			{
				Name:      "stop",
				Usage:     "stop a container: SIGTERM, then SIGKILL after --time seconds",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{homeFlag, cli.IntFlag{Name: "time, t", Value: 10, Usage: "seconds to wait before SIGKILL"}},
				Action: func(c *cli.Context) error {
					if err := checkArgs(c, 1, exactArgs); err != nil {
						return err
					}
					p, err := oneshot.Load(c.String("home"), c.Args().First())
					if err != nil {
						return err
					}
					rt := p.Runtime(func(s string) { log.Warnf("%s", s) })
					if err := rt.Kill(p.Meta.Name, unix.SIGTERM, false); err != nil {
						if errors.Is(err, state.ErrNotRunning) || errors.Is(err, state.ErrNotExist) {
							return nil
						}
						return err
					}
					deadline := time.Now().Add(time.Duration(c.Int("time")) * time.Second)
					for time.Now().Before(deadline) {
						if s, err := state.LoadView(p.Meta.Root, p.Meta.Name); err != nil || s.Status() == state.Stopped {
							return nil
						}
						time.Sleep(50 * time.Millisecond)
					}
					if err := rt.Kill(p.Meta.Name, unix.SIGKILL, true); err != nil && !errors.Is(err, state.ErrNotExist) {
						return err
					}
					return nil
				},
			},
			{
				Name:      "rm",
				Usage:     "remove containers and everything they hold (bundle, network endpoint, log)",
				ArgsUsage: "NAME...",
				Flags:     []cli.Flag{homeFlag, cli.BoolFlag{Name: "force, f", Usage: "kill a running container first"}},
				Action: func(c *cli.Context) error {
					if err := checkArgs(c, 1, minArgs); err != nil {
						return err
					}
					var errs []error
					for _, name := range c.Args() {
						p, err := oneshot.Load(c.String("home"), name)
						if err != nil {
							errs = append(errs, err)
							continue
						}
						if s, err := state.LoadView(p.Meta.Root, name); err == nil && s.Status() != state.Stopped && !c.Bool("force") {
							errs = append(errs, fmt.Errorf("container %s is %s: stop it first or use --force", name, s.Status()))
							continue
						}
						if err := oneshot.Remove(c.String("home"), name, nil, func(s string) { log.Warnf("%s", s) }); err != nil {
							errs = append(errs, err)
						}
					}
					return errors.Join(errs...)
				},
			},
			{Name: "x-monitor", Hidden: true, Action: containerMonitor},
		},
	})
}

func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	switch strings.ToLower(s[len(s)-1:]) {
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 256m)", s)
	}
	return n * mult, nil
}

func containerOptions(c *cli.Context) (oneshot.Options, error) {
	if c.NArg() < 1 {
		return oneshot.Options{}, errors.New("container run: an IMAGE is required")
	}
	mem, err := parseSize(c.String("memory"))
	if err != nil {
		return oneshot.Options{}, fmt.Errorf("--memory: %w", err)
	}
	o := oneshot.Options{
		Image: c.Args().First(), Name: c.String("name"), Cmd: c.Args().Tail(), Env: c.StringSlice("env"),
		Volumes: c.StringSlice("volume"), Publish: c.StringSlice("publish"), Workdir: c.String("workdir"),
		User: c.String("user"), Network: c.String("network"), Hostname: c.String("hostname"),
		ReadOnly: c.Bool("read-only"), CapAdd: c.StringSlice("cap-add"), CapDrop: c.StringSlice("cap-drop"),
		Memory: mem, PidsLimit: c.Int64("pids-limit"), TTY: c.Bool("tty"), Remove: c.Bool("rm"),
		Pull: c.String("pull"), TLSVerify: c.BoolT("tls-verify"), Home: c.String("home"),
		Root: c.GlobalString("root"),
	}
	if c.IsSet("entrypoint") {
		e := c.String("entrypoint")
		o.Entrypoint = &e
	}
	return o, nil
}

func containerRun(c *cli.Context) error {
	o, err := containerOptions(c)
	if err != nil {
		return err
	}
	if o.TTY && !c.Bool("detach") && !term.IsTerminal(int(os.Stdin.Fd())) {
		return errors.New("-t needs a terminal on stdin (or run detached with -d)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	p, err := oneshot.Prepare(ctx, o)
	stop()
	if err != nil {
		return err
	}
	warn := func(s string) { log.Warnf("%s", s) }
	if c.Bool("detach") {
		return startMonitor(p)
	}
	stdin := os.Stdin
	if !c.Bool("interactive") {
		if stdin, err = os.Open(os.DevNull); err != nil {
			return err
		}
		defer stdin.Close()
	}
	code, err := p.Run(stdin, os.Stdout, os.Stderr, nil, warn)
	if err != nil {
		return withCode(125, err)
	}
	if code != 0 {
		return withCode(code, nil)
	}
	return nil
}

// startMonitor runs the container under a background berth process (the
// monitor: conmon's job) whose stdio is the container's log, and returns once
// the container runs.
func startMonitor(p *oneshot.Prepared) (retErr error) {
	logf, err := os.OpenFile(p.Paths.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	opts, _ := json.Marshal(p.Opts)
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "container", "x-monitor")
	cmd.Env = append(os.Environ(), envMonitor+"="+string(opts))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	w.Close()
	cmd.Process.Release()
	line, _ := bufio.NewReader(r).ReadString('\n')
	if strings.TrimSpace(line) != "started" {
		b, _ := os.ReadFile(p.Paths.Log)
		return fmt.Errorf("container %s did not start: %s", p.Meta.Name, strings.TrimSpace(string(b)))
	}
	fmt.Println(p.Meta.Name)
	return nil
}

// containerMonitor is the background process of a detached container.
func containerMonitor(c *cli.Context) error {
	var o oneshot.Options
	if err := json.Unmarshal([]byte(os.Getenv(envMonitor)), &o); err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	os.Unsetenv(envMonitor)
	notify := os.NewFile(3, "started")
	p, err := oneshot.Load(o.Home, o.Name)
	if err != nil {
		return err
	}
	p.Opts = o
	signal.Ignore(syscall.SIGHUP)
	_, err = p.Run(os.Stdin, os.Stdout, os.Stderr, func() {
		io.WriteString(notify, "started\n")
		notify.Close()
	}, func(s string) { log.Warnf("%s", s) })
	return err
}

func printLog(p *oneshot.Prepared, follow bool) error {
	f, err := os.Open(p.Paths.Log)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("container %s has no log (it was not run detached)", p.Meta.Name)
		}
		return err
	}
	defer f.Close()
	for {
		if _, err := io.Copy(os.Stdout, f); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		if s, err := state.LoadView(p.Meta.Root, p.Meta.Name); err != nil || s.Status() == state.Stopped {
			_, err := io.Copy(os.Stdout, f)
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
