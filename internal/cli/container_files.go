// container cp, diff and export: the files of a container.

package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli"
	"golang.org/x/term"

	"berth/internal/oneshot"
)

func containerCpCommand() cli.Command {
	return cli.Command{
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
	}
}

func containerDiffCommand() cli.Command {
	return cli.Command{
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
	}
}

func containerExportCommand() cli.Command {
	return cli.Command{
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
	}
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
