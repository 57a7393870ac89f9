// container exec: a new process in a running container.

package cli

import (
	"errors"
	"os"

	"github.com/urfave/cli"

	"berth/internal/oneshot"
)

func containerExecCommand() cli.Command {
	return cli.Command{
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
	}
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
