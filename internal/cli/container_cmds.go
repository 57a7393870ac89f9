package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/urfave/cli"
	"golang.org/x/term"

	"berth/internal/oneshot"
	rtpkg "berth/internal/runtime"
)

func containerCommands() []cli.Command {
	return []cli.Command{
		{
			Name:    "ps",
			Aliases: []string{"ls", "list"},
			Usage:   "list containers (running ones; -a for all)",
			Flags: []cli.Flag{homeFlag,
				cli.BoolFlag{Name: "all, a", Usage: "all containers, not only running ones"},
				cli.BoolFlag{Name: "quiet, q", Usage: "ids only"},
				cli.BoolFlag{Name: "no-trunc", Usage: "full ids and commands"},
				cli.StringFlag{Name: "format", Value: "table", Usage: "table, json, or a Go template over each container's inspect document"},
			},
			UseShortOptionHandling: true,
			Action:                 containerPs,
		},
		{
			Name:      "inspect",
			Usage:     "print containers' configuration and state as JSON (docker's field names)",
			ArgsUsage: "NAME...",
			Flags: []cli.Flag{homeFlag,
				cli.StringFlag{Name: "format, f", Usage: "a Go template, e.g. '{{.State.Status}}' or '{{json .Mounts}}'"}},
			Action: func(c *cli.Context) error {
				var docs []oneshot.Inspect
				if err := eachContainer(c, func(ct *oneshot.Container) error {
					docs = append(docs, ct.Inspect())
					return nil
				}); err != nil && len(docs) == 0 {
					return err
				}
				if f := c.String("format"); f != "" {
					return withCodeOrNil(printTemplate(f, docs))
				}
				return printJSON(os.Stdout, docs)
			},
		},
		{
			Name:      "logs",
			Usage:     "print a container's output",
			ArgsUsage: "NAME",
			Flags: []cli.Flag{homeFlag,
				cli.BoolFlag{Name: "follow, f", Usage: "keep printing new output until the container stops"},
				cli.StringFlag{Name: "tail, n", Value: "all", Usage: "only the last N lines"},
				cli.BoolFlag{Name: "timestamps, t", Usage: "prefix each line with its time (RFC 3339)"},
				cli.StringFlag{Name: "since", Usage: "only lines since a time (RFC 3339) or a duration ago (10m)"},
			},
			UseShortOptionHandling: true,
			Action:                 containerLogs,
		},
		{
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
		},
		{
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
		},
		{
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
		},
		{
			Name:      "pause",
			Usage:     "freeze every process of containers",
			ArgsUsage: "NAME...",
			Flags:     []cli.Flag{homeFlag},
			Action: func(c *cli.Context) error {
				return eachContainer(c, func(ct *oneshot.Container) error { return ct.Runtime(warnf).Pause(ct.Meta.Name) })
			},
		},
		{
			Name:      "unpause",
			Usage:     "thaw paused containers",
			ArgsUsage: "NAME...",
			Flags:     []cli.Flag{homeFlag},
			Action: func(c *cli.Context) error {
				return eachContainer(c, func(ct *oneshot.Container) error { return ct.Runtime(warnf).Resume(ct.Meta.Name) })
			},
		},
		{
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
		},
		{
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
		},
		{
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
		},
		{
			Name:      "port",
			Usage:     "list a container's published ports",
			ArgsUsage: "NAME [PORT[/PROTO]]",
			Flags:     []cli.Flag{homeFlag},
			Action: func(c *cli.Context) error {
				if c.NArg() < 1 || c.NArg() > 2 {
					return withCode(125, errors.New("usage: berth container port NAME [PORT[/PROTO]]"))
				}
				ct, err := oneshot.Load(c.String("home"), c.Args().First())
				if err != nil {
					return withCode(125, err)
				}
				want := c.Args().Get(1)
				if want != "" && !strings.Contains(want, "/") {
					want += "/tcp"
				}
				in := ct.Inspect()
				for _, k := range sortedPortKeys(in.HostConfig.PortBindings) {
					if want != "" && k != want {
						continue
					}
					for _, p := range in.HostConfig.PortBindings[k] {
						if want != "" {
							fmt.Printf("%s:%s\n", p.HostIP, p.HostPort)
						} else {
							fmt.Printf("%s -> %s:%s\n", k, p.HostIP, p.HostPort)
						}
					}
				}
				return nil
			},
		},
		{
			Name:      "exec",
			Usage:     "run a command in a running container",
			ArgsUsage: "NAME COMMAND [ARG...]",
			Description: `Runs COMMAND inside the container (its namespaces, cgroup, capabilities,
seccomp profile and environment), through the runtime's exec. Flags go before
NAME. -u resolves a user name in the container's /etc/passwd and /etc/group.

Examples:
   # berth container exec -it web sh
   # berth container exec -u postgres db psql -c 'select 1'
   # berth container exec -w /srv -e MODE=debug web ls`,
			Flags: []cli.Flag{homeFlag,
				cli.BoolFlag{Name: "interactive, i", Usage: "keep stdin open"},
				cli.BoolFlag{Name: "tty, t", Usage: "allocate a pseudo-terminal"},
				cli.BoolFlag{Name: "detach, d", Usage: "run the command in the background"},
				cli.StringFlag{Name: "user, u", Usage: "user[:group], names or numbers"},
				cli.StringFlag{Name: "workdir, w", Usage: "working directory"},
				cli.StringSliceFlag{Name: "env, e", Usage: "set NAME=VALUE (NAME alone: the host's value)"},
				cli.StringSliceFlag{Name: "env-file", Usage: "read NAME=VALUE lines from a file"},
				cli.BoolFlag{Name: "privileged", Usage: "every capability berth holds"},
			},
			SkipArgReorder:         true,
			UseShortOptionHandling: true,
			Action:                 containerExec,
		},
		{
			Name:      "cp",
			Usage:     "copy files between a container and the host",
			ArgsUsage: "NAME:SRC DEST | SRC NAME:DEST",
			Description: `Copies a file or directory tree out of a container or into it (running or
stopped; volumes and bind mounts included). Paths in the container are resolved
inside it: a symlink there, absolute or not, never leads out of it. As docker:
SRC/. copies a directory's contents; entries are owned by root in the container
and by you on the host unless -a keeps the source's owners.

Examples:
   # berth container cp web:/etc/nginx/nginx.conf .
   # berth container cp ./site/. web:/var/www/html`,
			Flags: []cli.Flag{homeFlag,
				cli.BoolFlag{Name: "archive, a", Usage: "keep the source's owners"},
				cli.BoolFlag{Name: "follow-link, L", Hidden: true}},
			Action: containerCp,
		},
		{
			Name:           "top",
			Usage:          "list a container's processes (ps options may follow NAME; default -ef)",
			ArgsUsage:      "NAME [ps OPTIONS]",
			Flags:          []cli.Flag{homeFlag},
			SkipArgReorder: true,
			Action: func(c *cli.Context) error {
				if c.NArg() < 1 {
					return withCode(125, errors.New("a container name is required"))
				}
				ct, err := oneshot.Load(c.String("home"), c.Args().First())
				if err != nil {
					return withCode(125, err)
				}
				pids, err := ct.Pids()
				if err != nil {
					return withCode(125, err)
				}
				return withCodeOrNil(psTable(pids, c.Args().Tail()))
			},
		},
		{
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
		},
		{
			Name:      "diff",
			Usage:     "list what a container changed in its writable layer (A added, C changed, D deleted)",
			ArgsUsage: "NAME",
			Flags:     []cli.Flag{homeFlag},
			Action: func(c *cli.Context) error {
				if err := checkArgs(c, 1, exactArgs); err != nil {
					return withCode(125, err)
				}
				ct, err := oneshot.Load(c.String("home"), c.Args().First())
				if err != nil {
					return withCode(125, err)
				}
				changes, err := ct.Diff()
				if err != nil {
					return withCode(125, err)
				}
				for _, ch := range changes {
					fmt.Printf("%c %s\n", ch.Kind, ch.Path)
				}
				return nil
			},
		},
		{
			Name:      "export",
			Usage:     "write a container's root filesystem as a tar stream (to stdout, or --output)",
			ArgsUsage: "NAME",
			Flags:     []cli.Flag{homeFlag, cli.StringFlag{Name: "output, o", Usage: "write to this file"}},
			Action: func(c *cli.Context) error {
				if err := checkArgs(c, 1, exactArgs); err != nil {
					return withCode(125, err)
				}
				ct, err := oneshot.Load(c.String("home"), c.Args().First())
				if err != nil {
					return withCode(125, err)
				}
				w := io.Writer(os.Stdout)
				if o := c.String("output"); o != "" {
					f, err := os.Create(o)
					if err != nil {
						return withCode(125, err)
					}
					defer f.Close()
					w = f
				} else if term.IsTerminal(int(os.Stdout.Fd())) {
					return withCode(125, errors.New("export: refusing to write a tar stream to a terminal (redirect it or use --output)"))
				}
				return withCodeOrNil(ct.Export(w))
			},
		},
		refusedCommand("attach", "berth has no attach: follow the output with `berth container logs -f NAME`, or run a shell with `berth container exec -it NAME sh`"),
		refusedCommand("commit", "berth does not make images from containers; `berth container export` writes the root filesystem as a tar, and `container diff` lists the changes"),
		refusedCommand("rename", "names are fixed: the name is the runtime's container id and the path of its bundle"),
		{
			Name:      "stats",
			Usage:     "show containers' CPU, memory, network and block I/O use, and process count",
			ArgsUsage: "[NAME...]",
			Flags: []cli.Flag{homeFlag,
				cli.BoolFlag{Name: "no-stream", Usage: "print one sample and exit"},
				cli.StringFlag{Name: "format", Value: "table", Usage: "table or json"}},
			Action: containerStats,
		},
	}
}

// refusedCommand is a podman/docker container command berth does not
// have: it says why.
func refusedCommand(name, why string) cli.Command {
	return cli.Command{Name: name, Usage: "not supported: " + why, SkipFlagParsing: true,
		Action: func(c *cli.Context) error { return withCode(125, fmt.Errorf("container %s: %s", name, why)) }}
}

// withCodeOrNil gives a failure berth's own exit code, 125 (docker's).
func withCodeOrNil(err error) error {
	if err == nil {
		return nil
	}
	return withCode(125, err)
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

func printTemplate(f string, docs any) error {
	t, err := template.New("format").Funcs(template.FuncMap{
		"json": func(v any) string {
			var b strings.Builder
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			enc.Encode(v)
			return strings.TrimSuffix(b.String(), "\n")
		},
		"join": strings.Join, "lower": strings.ToLower, "upper": strings.ToUpper, "split": strings.Split,
	}).Parse(f)
	if err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	var items []any
	switch d := docs.(type) {
	case []oneshot.Inspect:
		for _, x := range d {
			items = append(items, x)
		}
	case []*oneshot.Volume:
		for _, x := range d {
			items = append(items, x)
		}
	}
	for _, it := range items {
		if err := t.Execute(os.Stdout, it); err != nil {
			return fmt.Errorf("--format: %w", err)
		}
		fmt.Println()
	}
	return nil
}

// humanDuration is docker's (go-units) wording for an age.
func humanDuration(d time.Duration) string {
	s := int(d.Seconds())
	switch {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	m := int(d.Minutes())
	switch {
	case m == 1:
		return "About a minute"
	case m < 60:
		return fmt.Sprintf("%d minutes", m)
	}
	h := int(d.Round(time.Hour).Hours())
	switch {
	case h == 1:
		return "About an hour"
	case h < 48:
		return fmt.Sprintf("%d hours", h)
	case h < 24*7*2:
		return fmt.Sprintf("%d days", h/24)
	case h < 24*30*2:
		return fmt.Sprintf("%d weeks", h/24/7)
	case h < 24*365*2:
		return fmt.Sprintf("%d months", h/24/30)
	}
	return fmt.Sprintf("%d years", h/24/365)
}

func statusText(ct *oneshot.Container) string {
	s, _ := ct.Status()
	st := ct.Meta.State
	switch s {
	case oneshot.StatusRunning:
		return "Up " + humanDuration(time.Since(st.StartedAt))
	case oneshot.StatusPaused:
		return "Up " + humanDuration(time.Since(st.StartedAt)) + " (Paused)"
	case oneshot.StatusRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, humanDuration(time.Since(st.FinishedAt)))
	case oneshot.StatusExited:
		return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, humanDuration(time.Since(st.FinishedAt)))
	}
	return "Created"
}

func portsText(in oneshot.Inspect) string {
	var out []string
	for _, k := range sortedPortKeys(in.HostConfig.PortBindings) {
		for _, p := range in.HostConfig.PortBindings[k] {
			out = append(out, fmt.Sprintf("%s:%s->%s", p.HostIP, p.HostPort, k))
		}
	}
	return strings.Join(out, ", ")
}

func sortedPortKeys(m map[string][]oneshot.Port) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// By port number, then protocol.
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && portLess(keys[j], keys[j-1]); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

func portLess(a, b string) bool {
	pa, _, _ := strings.Cut(a, "/")
	pb, _, _ := strings.Cut(b, "/")
	na, _ := strconv.Atoi(pa)
	nb, _ := strconv.Atoi(pb)
	return na < nb || na == nb && a < b
}

func quoteCommand(args []string, trunc bool) string {
	s := strings.Join(args, " ")
	if trunc && len(s) > 20 {
		s = s[:19] + "…"
	}
	return strconv.Quote(s)
}

func containerPs(c *cli.Context) error {
	list, err := oneshot.List(c.String("home"))
	if err != nil {
		return withCode(125, err)
	}
	var shown []*oneshot.Container
	for _, ct := range list {
		if s, _ := ct.Status(); c.Bool("all") || ct.Running() || s == oneshot.StatusRestarting {
			shown = append(shown, ct)
		}
	}
	if c.Bool("quiet") {
		for _, ct := range shown {
			if c.Bool("no-trunc") {
				fmt.Println(ct.Meta.ID)
			} else {
				fmt.Println(ct.Meta.ShortID())
			}
		}
		return nil
	}
	switch f := c.String("format"); f {
	case "table":
		w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
		fmt.Fprintln(w, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES")
		for _, ct := range shown {
			id := ct.Meta.ShortID()
			if c.Bool("no-trunc") {
				id = ct.Meta.ID
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s ago\t%s\t%s\t%s\n", id, ct.Meta.Image, quoteCommand(ct.Meta.Args, !c.Bool("no-trunc")),
				humanDuration(time.Since(ct.Meta.Created)), statusText(ct), portsText(ct.Inspect()), ct.Meta.Name)
		}
		return w.Flush()
	case "json":
		type row struct {
			ID      string   `json:"Id"`
			Names   []string `json:"Names"`
			Image   string   `json:"Image"`
			Command []string `json:"Command"`
			Created int64    `json:"Created"`
			State   string   `json:"State"`
			Status  string   `json:"Status"`
			Ports   string   `json:"Ports"`
		}
		rows := []row{}
		for _, ct := range shown {
			s, _ := ct.Status()
			rows = append(rows, row{ID: ct.Meta.ID, Names: []string{ct.Meta.Name}, Image: ct.Meta.Image, Command: ct.Meta.Args,
				Created: ct.Meta.Created.Unix(), State: s, Status: statusText(ct), Ports: portsText(ct.Inspect())})
		}
		return printJSON(os.Stdout, rows)
	default:
		var docs []oneshot.Inspect
		for _, ct := range shown {
			docs = append(docs, ct.Inspect())
		}
		return withCodeOrNil(printTemplate(f, docs))
	}
}

func containerLogs(c *cli.Context) error {
	if err := checkArgs(c, 1, exactArgs); err != nil {
		return withCode(125, err)
	}
	ct, err := oneshot.Load(c.String("home"), c.Args().First())
	if err != nil {
		return withCode(125, err)
	}
	o := oneshot.LogOptions{Follow: c.Bool("follow"), Tail: -1}
	if t := c.String("tail"); t != "all" && t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return withCode(125, fmt.Errorf("--tail %q: want a number of lines or all", t))
		}
		o.Tail = n
	}
	if s := c.String("since"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			o.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			o.Since = t
		} else if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			o.Since = time.Unix(n, 0)
		} else {
			return withCode(125, fmt.Errorf("--since %q: want a duration (10m), an RFC 3339 time or a Unix time", s))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ts := c.Bool("timestamps")
	err = ct.Logs(ctx, o, func(e oneshot.LogEntry) error {
		var w io.Writer = os.Stdout
		if e.Stream == "stderr" {
			w = os.Stderr
		}
		if ts {
			_, err := fmt.Fprintf(w, "%s %s", e.Time.Format(time.RFC3339Nano), e.Text)
			return err
		}
		_, err := io.WriteString(w, e.Text)
		return err
	})
	return withCodeOrNil(err)
}

func containerExec(c *cli.Context) error {
	if c.NArg() < 2 {
		return withCode(125, errors.New("usage: berth container exec [OPTIONS] NAME COMMAND [ARG...]"))
	}
	ct, err := oneshot.Load(c.String("home"), c.Args().First())
	if err != nil {
		return withCode(125, err)
	}
	env, err := envFromFlags(c.StringSlice("env-file"), c.StringSlice("env"))
	if err != nil {
		return withCode(125, err)
	}
	code, err := ct.Exec(oneshot.ExecOptions{
		Args: c.Args().Tail(), Env: env, User: c.String("user"), Workdir: c.String("workdir"),
		TTY: c.Bool("tty"), Interactive: c.Bool("interactive"), Detach: c.Bool("detach"), Privileged: c.Bool("privileged"),
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	}, warnf)
	if err != nil {
		return withCode(code, err)
	}
	if code != 0 {
		return withCode(code, nil)
	}
	return nil
}

// splitCpArg reads NAME:PATH; a path that starts with / or . (or has no
// colon) is a host path, as docker decides.
func splitCpArg(s string) (name, p string, ok bool) {
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return "", s, false
	}
	name, p, ok = strings.Cut(s, ":")
	if !ok || name == "" {
		return "", s, false
	}
	return name, p, true
}

func containerCp(c *cli.Context) error {
	if c.Bool("follow-link") {
		return withCode(125, errors.New("-L: symlinks are copied as symlinks; name the target instead"))
	}
	if c.NArg() != 2 {
		return withCode(125, errors.New("usage: berth container cp NAME:SRC DEST | SRC NAME:DEST"))
	}
	srcName, src, srcIn := splitCpArg(c.Args().Get(0))
	dstName, dst, dstIn := splitCpArg(c.Args().Get(1))
	if src == "-" || dst == "-" {
		return withCode(125, errors.New("cp: tar streams (-) are not supported; copy to or from a path"))
	}
	o := oneshot.CopyOptions{Archive: c.Bool("archive"), Warn: warnf}
	switch {
	case srcIn && dstIn:
		return withCode(125, errors.New("cp: copying between containers is not supported; copy through the host"))
	case srcIn:
		ct, err := oneshot.Load(c.String("home"), srcName)
		if err != nil {
			return withCode(125, err)
		}
		return withCodeOrNil(ct.CopyFrom(src, dst, o))
	case dstIn:
		ct, err := oneshot.Load(c.String("home"), dstName)
		if err != nil {
			return withCode(125, err)
		}
		return withCodeOrNil(ct.CopyTo(src, dst, o))
	}
	return withCode(125, errors.New("cp: one side must be NAME:PATH"))
}

// bytesSize and humanSize are docker's (go-units) BytesSize and
// HumanSizeWithPrecision(3).
func bytesSize(n uint64) string {
	return unitSize(float64(n), 1024, []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}, 4)
}
func humanSize(n uint64) string {
	return unitSize(float64(n), 1000, []string{"B", "kB", "MB", "GB", "TB", "PB"}, 3)
}

func unitSize(size, base float64, units []string, prec int) string {
	i := 0
	for size >= base && i < len(units)-1 {
		size /= base
		i++
	}
	return fmt.Sprintf("%.*g%s", prec, size, units[i])
}

func containerStats(c *cli.Context) error {
	var list []*oneshot.Container
	if c.NArg() == 0 {
		all, err := oneshot.List(c.String("home"))
		if err != nil {
			return withCode(125, err)
		}
		for _, ct := range all {
			if ct.Running() {
				list = append(list, ct)
			}
		}
	} else {
		for _, n := range c.Args() {
			ct, err := oneshot.Load(c.String("home"), n)
			if err != nil {
				return withCode(125, err)
			}
			list = append(list, ct)
		}
	}
	format := c.String("format")
	if format != "table" && format != "json" {
		return withCode(125, fmt.Errorf("--format %q: table or json", format))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prev := map[string]*oneshot.Stats{}
	sample := func() ([]*oneshot.Stats, error) {
		var out []*oneshot.Stats
		for _, ct := range list {
			s, err := ct.Sample(prev[ct.Meta.Name])
			if err != nil {
				if c.NArg() > 0 {
					return nil, err
				}
				continue
			}
			prev[ct.Meta.Name] = s
			out = append(out, s)
		}
		return out, nil
	}
	if _, err := sample(); err != nil {
		return withCode(125, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		ss, err := sample()
		if err != nil {
			return withCode(125, err)
		}
		if !c.Bool("no-stream") && format == "table" {
			fmt.Print("\033[2J\033[H")
		}
		if format == "json" {
			for _, s := range ss {
				b, _ := json.Marshal(map[string]any{
					"id": s.ID, "name": s.Name, "cpu_percent": s.CPUPercent, "mem_usage": s.MemUsage, "mem_limit": s.MemLimit,
					"mem_percent": s.MemPercent(), "net_rx": s.NetRx, "net_tx": s.NetTx, "block_read": s.BlockIn, "block_write": s.BlockOut, "pids": s.Pids,
				})
				fmt.Println(string(b))
			}
		} else {
			w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
			fmt.Fprintln(w, "CONTAINER ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS")
			for _, s := range ss {
				fmt.Fprintf(w, "%s\t%s\t%.2f%%\t%s / %s\t%.2f%%\t%s / %s\t%s / %s\t%d\n", s.ID, s.Name, s.CPUPercent,
					bytesSize(s.MemUsage), bytesSize(s.MemLimit), s.MemPercent(), humanSize(s.NetRx), humanSize(s.NetTx),
					humanSize(s.BlockIn), humanSize(s.BlockOut), s.Pids)
			}
			w.Flush()
		}
		if c.Bool("no-stream") {
			return nil
		}
	}
}
