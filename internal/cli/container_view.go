// container ps, inspect, logs, port, top and stats: what a container is
// and does, printed as docker prints it.

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

	"berth/internal/oneshot"
)

func containerPsCommand() cli.Command {
	return cli.Command{
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
	}
}

func containerInspectCommand() cli.Command {
	return cli.Command{
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
	}
}

func containerLogsCommand() cli.Command {
	return cli.Command{
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
	}
}

func containerPortCommand() cli.Command {
	return cli.Command{
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
	}
}

func containerTopCommand() cli.Command {
	return cli.Command{
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
	}
}

func containerStatsCommand() cli.Command {
	return cli.Command{
		Name:      "stats",
		Usage:     "show containers' CPU, memory, network and block I/O use, and process count",
		ArgsUsage: "[NAME...]",
		Flags: []cli.Flag{homeFlag,
			cli.BoolFlag{Name: "no-stream", Usage: "print one sample and exit"},
			cli.StringFlag{Name: "format", Value: "table", Usage: "table or json"}},
		Action: containerStats,
	}
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
