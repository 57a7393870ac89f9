package cli

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli"

	"berth/internal/oneshot"
)

func init() {
	register(cli.Command{
		Name:  "volume",
		Usage: "named volumes for `berth container run -v NAME:/path` (create, ls, inspect, rm, prune)",
		Description: `A volume is a directory under --volume-dir (default ` + oneshot.DefaultVolumeDir + `,
$BERTH_VOLUMES) that containers mount. "-v NAME:/path" creates a missing
volume, and the first container that mounts a new volume copies the image's
content at /path into it (owner and mode included), as docker and podman do.
Anonymous volumes (an image's VOLUME, or "-v /path") are removed with the
container by --rm and "container rm -v"; named volumes stay until "volume rm".

Examples:
   # berth volume create pgdata
   # berth container run -d -v pgdata:/var/lib/postgresql/data postgres
   # berth volume ls
   # berth volume rm pgdata`,
		Subcommands: []cli.Command{
			volumeCreateCommand(),
			volumeLsCommand(),
			volumeInspectCommand(),
			volumeRmCommand(),
			volumePruneCommand(),
		},
	})
}

func volumeCreateCommand() cli.Command {
	return cli.Command{
		Name:      "create",
		Usage:     "create a volume",
		ArgsUsage: "[NAME]",
		Flags: []cli.Flag{volumeDirFlag,
			cli.StringSliceFlag{Name: "label, l", Usage: "KEY=VALUE (repeatable)"},
			cli.StringFlag{Name: "driver", Value: "local", Usage: "local only"}},
		Action: func(c *cli.Context) error {
			if d := c.String("driver"); d != "local" {
				return withCode(125, fmt.Errorf("--driver %q: only local volumes (directories) are supported", d))
			}
			labels, err := labelsFromFlags(nil, c.StringSlice("label"))
			if err != nil {
				return withCode(125, err)
			}
			name, anon := c.Args().First(), false
			if name == "" {
				name, anon = oneshot.NewID(), true
			}
			v, _, err := oneshot.CreateVolume(c.String("volume-dir"), name, anon, labels, true)
			if err != nil {
				return withCode(125, err)
			}
			fmt.Println(v.Name)
			return nil
		},
	}
}

func volumeLsCommand() cli.Command {
	return cli.Command{
		Name:    "ls",
		Aliases: []string{"list"},
		Usage:   "list volumes",
		Flags: []cli.Flag{volumeDirFlag,
			cli.BoolFlag{Name: "quiet, q", Usage: "names only"},
			cli.StringFlag{Name: "format", Value: "table", Usage: "table or json"}},
		Action: func(c *cli.Context) error {
			list, err := oneshot.ListVolumes(c.String("volume-dir"))
			if err != nil {
				return withCode(125, err)
			}
			switch {
			case c.Bool("quiet"):
				for _, v := range list {
					fmt.Println(v.Name)
				}
			case c.String("format") == "json":
				if list == nil {
					list = []*oneshot.Volume{}
				}
				return printJSON(os.Stdout, list)
			default:
				w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
				fmt.Fprintln(w, "DRIVER\tVOLUME NAME")
				for _, v := range list {
					fmt.Fprintf(w, "local\t%s\n", v.Name)
				}
				return w.Flush()
			}
			return nil
		},
	}
}

func volumeInspectCommand() cli.Command {
	return cli.Command{
		Name:      "inspect",
		Usage:     "print volumes as JSON",
		ArgsUsage: "NAME...",
		Flags:     []cli.Flag{volumeDirFlag, cli.StringFlag{Name: "format, f", Usage: "a Go template, e.g. '{{.Mountpoint}}'"}},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return withCode(125, errors.New("at least one volume name is required"))
			}
			var list []*oneshot.Volume
			for _, n := range c.Args() {
				v, err := oneshot.LoadVolume(c.String("volume-dir"), n)
				if err != nil {
					return withCode(125, err)
				}
				list = append(list, v)
			}
			if f := c.String("format"); f != "" {
				return withCodeOrNil(printTemplate(f, list))
			}
			return printJSON(os.Stdout, list)
		},
	}
}

func volumeRmCommand() cli.Command {
	return cli.Command{
		Name:      "rm",
		Aliases:   []string{"remove"},
		Usage:     "remove volumes and their data (refused while a container uses one)",
		ArgsUsage: "NAME...",
		Flags:     []cli.Flag{volumeDirFlag, homeFlag, cli.BoolFlag{Name: "force, f", Usage: "no error for a volume that does not exist"}},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return withCode(125, errors.New("at least one volume name is required"))
			}
			var errs []error
			for _, n := range c.Args() {
				err := oneshot.RemoveVolume(c.String("home"), c.String("volume-dir"), n)
				if err != nil && !(c.Bool("force") && errors.Is(err, oneshot.ErrNoSuchVolume)) {
					errs = append(errs, err)
					continue
				}
				fmt.Println(n)
			}
			if len(errs) > 0 {
				return withCode(125, errors.Join(errs...))
			}
			return nil
		},
	}
}

func volumePruneCommand() cli.Command {
	return cli.Command{
		Name:  "prune",
		Usage: "remove the anonymous volumes no container uses (--all: named ones too)",
		Flags: []cli.Flag{volumeDirFlag, homeFlag,
			cli.BoolFlag{Name: "force, f", Usage: "do not ask for confirmation"},
			cli.BoolFlag{Name: "all, a", Usage: "named volumes too"}},
		Action: func(c *cli.Context) error {
			if !c.Bool("force") && !confirm("This removes every unused volume. Continue? [y/N] ") {
				return nil
			}
			list, err := oneshot.ListVolumes(c.String("volume-dir"))
			if err != nil {
				return withCode(125, err)
			}
			for _, v := range list {
				if !v.Anonymous && !c.Bool("all") {
					continue
				}
				if users, err := oneshot.VolumeUsers(c.String("home"), c.String("volume-dir"), v.Name); err != nil || len(users) > 0 {
					continue
				}
				if err := oneshot.RemoveVolume(c.String("home"), c.String("volume-dir"), v.Name); err == nil {
					fmt.Println(v.Name)
				}
			}
			return nil
		},
	}
}
