package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli"
	"golang.org/x/term"

	"berth/internal/oneshot"
)

// The `container` family: podman's and docker's container commands over
// internal/oneshot. Errors of berth's own exit 125, as podman's do; run,
// start and exec exit 126 when the command cannot be run and 127 when it
// does not exist, as docker's do.

var homeFlag = cli.StringFlag{Name: "home", Value: oneshot.DefaultHome, EnvVar: "BERTH_CONTAINERS", Usage: "where containers keep their bundle, log and record"}

var volumeDirFlag = cli.StringFlag{Name: "volume-dir", Value: oneshot.DefaultVolumeDir, EnvVar: oneshot.EnvVolumeDir, Usage: "where named and anonymous volumes live"}

func init() {
	register(cli.Command{
		Name:  "container",
		Usage: "run images as containers, like podman and docker (pull, bundle, network, volumes, restart policy, exec, logs)",
		Description: `The one-shot path from an image reference to a running, networked container,
and the commands a container user reaches for. It does not change what
"berth run -b BUNDLE ID" (runc's run) means. There is no daemon: a detached
container is run and watched by a background berth process (its monitor), which
keeps the log and carries out the restart policy.

Containers live under --home (default ` + oneshot.DefaultHome + `), volumes under
` + oneshot.DefaultVolumeDir + ` ($BERTH_VOLUMES). Errors of berth's own exit 125; run, start
and exec exit 126 when the command cannot be run and 127 when it is not found.

Examples:
   # berth container run --rm -it alpine sh
   # berth container run -d --name web -p 8080:80 nginx
   # berth container logs -f web
   # berth container exec -it web sh
   # berth container rm -f web`,
		Subcommands: append([]cli.Command{
			{
				Name:      "run",
				Usage:     "run a command in a new container from an image",
				ArgsUsage: "IMAGE [COMMAND [ARG...]]",
				Description: `Pulls IMAGE into berth's store if it is missing, makes an overlay bundle from the
layer cache (a writable layer over the image unless --read-only), applies the
image config (entrypoint and cmd, env, working dir, user, stop signal, exposed
ports, volumes as anonymous volumes, labels), docker's default capabilities and
seccomp profile, attaches the default bridge network ("berth", with NAT and DNS)
and runs the container. Flags go before IMAGE; everything after it is the command.

Examples:
   # berth container run --rm -it alpine sh
   # berth container run -d --name web -p 8080:80 --memory 256m nginx
   # berth container run -d --name db -v pgdata:/var/lib/postgresql/data -e POSTGRES_PASSWORD=x postgres
   # berth container run --rm --network none -v /srv/data:/data:ro busybox ls /data
   # berth container run -d --restart on-failure:3 --init myserver`,
				SkipArgReorder: true,
				// podman users type -it and -dit; runc's commands keep
				// urfave's default (no combined short flags), as runc does.
				UseShortOptionHandling: true,
				Flags:                  runFlags,
				Action:                 func(c *cli.Context) error { return containerRunOrCreate(c, true) },
			},
			{
				Name:                   "create",
				Usage:                  "create a container from an image without starting it (start it with `container start`)",
				ArgsUsage:              "IMAGE [COMMAND [ARG...]]",
				SkipArgReorder:         true,
				UseShortOptionHandling: true,
				Flags:                  runFlags,
				Action:                 func(c *cli.Context) error { return containerRunOrCreate(c, false) },
			},
			{
				Name:      "start",
				Usage:     "start stopped or created containers, detached",
				ArgsUsage: "NAME...",
				Flags:     append([]cli.Flag{homeFlag}, refusedFlags(refusedStartFlags)...),
				Action: func(c *cli.Context) error {
					if err := checkRefused(c, refusedStartFlags); err != nil {
						return withCode(125, err)
					}
					return eachContainer(c, func(ct *oneshot.Container) error {
						if err := ct.Start(); err != nil {
							return err
						}
						return startMonitor(ct, false)
					})
				},
			},
			{Name: "x-monitor", Hidden: true, Flags: []cli.Flag{homeFlag}, Action: containerMonitor},
		}, containerCommands()...),
	})
}

// containerRunOrCreate is `container run` (start) and `container create`.
func containerRunOrCreate(c *cli.Context, start bool) error {
	o, err := containerOptions(c)
	if err != nil {
		return withCode(125, err)
	}
	detach := c.Bool("detach")
	if o.TTY && start && !detach && !term.IsTerminal(int(os.Stdin.Fd())) {
		return withCode(125, errors.New("-t needs a terminal on stdin (or run detached with -d)"))
	}
	if c.Bool("replace") && o.Name != "" {
		if old, err := oneshot.Load(o.Home, o.Name); err == nil {
			if err := old.Remove(oneshot.RemoveOptions{Force: true, Volumes: true, Warn: warnf}); err != nil {
				return withCode(125, err)
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ct, err := oneshot.Prepare(ctx, o)
	stop()
	if err != nil {
		return withCode(125, err)
	}
	if f := c.String("cidfile"); f != "" {
		if err := os.WriteFile(f, []byte(ct.Meta.ID), 0o644); err != nil {
			ct.Remove(oneshot.RemoveOptions{Force: true, Volumes: true, Warn: warnf})
			return withCode(125, err)
		}
	}
	if !start {
		fmt.Println(ct.Meta.ID)
		return nil
	}
	if detach {
		return startMonitor(ct, true)
	}
	stdin := os.Stdin
	if !o.Interactive {
		if stdin, err = os.Open(os.DevNull); err != nil {
			return withCode(125, err)
		}
		defer stdin.Close()
	}
	code, err := ct.Run(oneshot.IO{Stdin: stdin, Stdout: os.Stdout, Stderr: os.Stderr}, nil, warnf)
	if err != nil {
		return withCode(code, err)
	}
	if code != 0 {
		return withCode(code, nil)
	}
	return nil
}

func warnf(s string) { log.Warnf("%s", s) }

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// eachContainer runs f on every NAME argument, joining the errors (exit
// 125).
func eachContainer(c *cli.Context, f func(*oneshot.Container) error) error {
	if c.NArg() < 1 {
		return withCode(125, errors.New("at least one container name or id is required"))
	}
	var errs []error
	for _, name := range c.Args() {
		ct, err := oneshot.Load(c.String("home"), name)
		if err == nil {
			err = f(ct)
		}
		if err != nil {
			var ee *exitError
			if errors.As(err, &ee) {
				return err
			}
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return withCode(125, errors.Join(errs...))
	}
	return nil
}
