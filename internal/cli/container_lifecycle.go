// container stop, restart, kill, pause, unpause, wait, rm, prune and
// update: a container's life after run.

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli"

	"berth/internal/oneshot"
	rtpkg "berth/internal/runtime"
)

func containerStopCommand() cli.Command {
	return cli.Command{
		Name:      "stop",
		Usage:     "stop containers: the stop signal (the image's StopSignal, else SIGTERM), then SIGKILL after --time seconds",
		ArgsUsage: "NAME...",
		Flags:     []cli.Flag{homeFlag, cli.IntFlag{Name: "time, t", Usage: "seconds to wait before SIGKILL (default: the container's --stop-timeout, 10)"}},
		Action: func(c *cli.Context) error {
			return eachContainer(c, func(ct *oneshot.Container) error {
				if err := ct.Stop(stopTimeout(c, ct), warnf); err != nil {
					return err
				}
				fmt.Println(ct.Meta.Name)
				return nil
			})
		},
	}
}

func containerRestartCommand() cli.Command {
	return cli.Command{
		Name:      "restart",
		Usage:     "stop containers (as stop does) and start them again, detached",
		ArgsUsage: "NAME...",
		Flags:     []cli.Flag{homeFlag, cli.IntFlag{Name: "time, t", Usage: "seconds to wait before SIGKILL (default: the container's --stop-timeout)"}},
		Action: func(c *cli.Context) error {
			return eachContainer(c, func(ct *oneshot.Container) error {
				if err := ct.Stop(stopTimeout(c, ct), warnf); err != nil {
					return err
				}
				if err := ct.Reload(); err != nil {
					return err
				}
				if err := ct.Start(); err != nil {
					return err
				}
				return startMonitor(ct, false)
			})
		},
	}
}

func containerKillCommand() cli.Command {
	return cli.Command{
		Name:      "kill",
		Usage:     "send a signal (default SIGKILL) to containers",
		ArgsUsage: "NAME...",
		Flags:     []cli.Flag{homeFlag, cli.StringFlag{Name: "signal, s", Value: "KILL", Usage: "signal name or number"}},
		Action: func(c *cli.Context) error {
			sig, err := rtpkg.ParseSignal(c.String("signal"))
			if err != nil {
				return withCode(125, err)
			}
			return eachContainer(c, func(ct *oneshot.Container) error { return ct.Kill(sig, warnf) })
		},
	}
}

func containerPauseCommand() cli.Command {
	return cli.Command{
		Name:      "pause",
		Usage:     "freeze every process of containers",
		ArgsUsage: "NAME...",
		Flags:     []cli.Flag{homeFlag},
		Action: func(c *cli.Context) error {
			return eachContainer(c, func(ct *oneshot.Container) error { return ct.Runtime(warnf).Pause(ct.Meta.Name) })
		},
	}
}

func containerUnpauseCommand() cli.Command {
	return cli.Command{
		Name:      "unpause",
		Usage:     "thaw paused containers",
		ArgsUsage: "NAME...",
		Flags:     []cli.Flag{homeFlag},
		Action: func(c *cli.Context) error {
			return eachContainer(c, func(ct *oneshot.Container) error { return ct.Runtime(warnf).Resume(ct.Meta.Name) })
		},
	}
}

func containerWaitCommand() cli.Command {
	return cli.Command{
		Name:      "wait",
		Usage:     "wait for containers to exit and print their exit codes",
		ArgsUsage: "NAME...",
		Flags:     []cli.Flag{homeFlag},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return eachContainer(c, func(ct *oneshot.Container) error {
				code, err := ct.Wait(ctx)
				if err != nil {
					return err
				}
				fmt.Println(code)
				return nil
			})
		},
	}
}

func containerRmCommand() cli.Command {
	return cli.Command{
		Name:      "rm",
		Usage:     "remove containers and everything they hold (bundle, network endpoint, log; -v: anonymous volumes)",
		ArgsUsage: "NAME...",
		Flags: []cli.Flag{homeFlag,
			cli.BoolFlag{Name: "force, f", Usage: "kill a running container first"},
			cli.BoolFlag{Name: "volumes, v", Usage: "remove the container's anonymous volumes too (named volumes stay)"}},
		UseShortOptionHandling: true,
		Action: func(c *cli.Context) error {
			return eachContainer(c, func(ct *oneshot.Container) error {
				if err := ct.Remove(oneshot.RemoveOptions{Force: c.Bool("force"), Volumes: c.Bool("volumes"), Warn: warnf}); err != nil {
					return err
				}
				fmt.Println(ct.Meta.Name)
				return nil
			})
		},
	}
}

func containerPruneCommand() cli.Command {
	return cli.Command{
		Name:  "prune",
		Usage: "remove every container that is not running (with their anonymous volumes)",
		Flags: []cli.Flag{homeFlag, cli.BoolFlag{Name: "force, f", Usage: "do not ask for confirmation"}},
		Action: func(c *cli.Context) error {
			if !c.Bool("force") && !confirm("This removes every container that is not running. Continue? [y/N] ") {
				return nil
			}
			list, err := oneshot.List(c.String("home"))
			if err != nil {
				return withCode(125, err)
			}
			var errs []error
			for _, ct := range list {
				if ct.Running() || ct.RunnerAlive() {
					continue
				}
				if err := ct.Remove(oneshot.RemoveOptions{Volumes: true, Warn: warnf}); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Println(ct.Meta.ID)
			}
			if len(errs) > 0 {
				return withCode(125, errors.Join(errs...))
			}
			return nil
		},
	}
}

func containerUpdateCommand() cli.Command {
	return cli.Command{
		Name:      "update",
		Usage:     "change containers' resource limits (live, and for later runs) and restart policy",
		ArgsUsage: "NAME...",
		Flags: []cli.Flag{homeFlag,
			cli.StringFlag{Name: "memory, m", Usage: "memory limit, e.g. 256m"},
			cli.StringFlag{Name: "memory-swap", Usage: "memory plus swap limit (-1: unlimited swap)"},
			cli.StringFlag{Name: "memory-reservation", Usage: "memory soft limit"},
			cli.Float64Flag{Name: "cpus", Usage: "number of CPUs"},
			cli.Uint64Flag{Name: "cpu-shares, c", Usage: "CPU shares"},
			cli.StringFlag{Name: "cpuset-cpus", Usage: "CPUs the container may use"},
			cli.StringFlag{Name: "cpuset-mems", Usage: "memory nodes the container may use"},
			cli.Int64Flag{Name: "pids-limit", Usage: "maximum number of processes"},
			cli.UintFlag{Name: "blkio-weight", Usage: "block I/O weight, 10 to 1000"},
			cli.StringFlag{Name: "restart", Usage: "restart policy: no, on-failure[:N], always, unless-stopped"},
		},
		Action: func(c *cli.Context) error {
			var r oneshot.Resources
			for name, dst := range map[string]*int64{"memory": &r.Memory, "memory-swap": &r.MemorySwap, "memory-reservation": &r.MemoryReservation} {
				if v := c.String(name); name == "memory-swap" && v == "-1" {
					*dst = -1
				} else if n, err := parseSize(v); err != nil {
					return withCode(125, fmt.Errorf("--%s: %w", name, err))
				} else {
					*dst = n
				}
			}
			r.CPUs, r.CPUShares, r.CpusetCpus, r.CpusetMems = c.Float64("cpus"), c.Uint64("cpu-shares"), c.String("cpuset-cpus"), c.String("cpuset-mems")
			r.PidsLimit, r.BlkioWeight = c.Int64("pids-limit"), uint16(c.Uint("blkio-weight"))
			if c.IsSet("restart") {
				p, err := oneshot.ParseRestart(c.String("restart"))
				if err != nil {
					return withCode(125, err)
				}
				r.Restart = &p
			}
			return eachContainer(c, func(ct *oneshot.Container) error {
				if err := ct.Reconfigure(r, warnf); err != nil {
					return err
				}
				fmt.Println(ct.Meta.Name)
				return nil
			})
		},
	}
}

func stopTimeout(c *cli.Context, ct *oneshot.Container) time.Duration {
	t := ct.Meta.Config.StopTimeout
	if c.IsSet("time") {
		t = c.Int("time")
	}
	return time.Duration(t) * time.Second
}

func confirm(prompt string) bool {
	fmt.Fprint(os.Stderr, prompt)
	var answer string
	fmt.Fscanln(os.Stdin, &answer)
	return strings.EqualFold(answer, "y") || strings.EqualFold(answer, "yes")
}
