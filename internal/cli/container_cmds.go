package cli

import (
	"fmt"

	"github.com/urfave/cli"
)

// containerCommands are the subcommands of `berth container` besides run,
// create and start (container.go), in the order --help lists them; each
// is made in the file of its kind (container_view, container_lifecycle,
// container_exec, container_files).
func containerCommands() []cli.Command {
	return []cli.Command{
		containerPsCommand(),
		containerInspectCommand(),
		containerLogsCommand(),
		containerStopCommand(),
		containerRestartCommand(),
		containerKillCommand(),
		containerPauseCommand(),
		containerUnpauseCommand(),
		containerWaitCommand(),
		containerRmCommand(),
		containerPruneCommand(),
		containerPortCommand(),
		containerExecCommand(),
		containerCpCommand(),
		containerTopCommand(),
		containerUpdateCommand(),
		containerDiffCommand(),
		containerExportCommand(),
		refusedCommand("attach", "berth has no attach: follow the output with `berth container logs -f NAME`, or run a shell with `berth container exec -it NAME sh`"),
		refusedCommand("commit", "berth does not make images from containers; `berth container export` writes the root filesystem as a tar, and `container diff` lists the changes"),
		refusedCommand("rename", "names are fixed: the name is the runtime's container id and the path of its bundle"),
		containerStatsCommand(),
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
