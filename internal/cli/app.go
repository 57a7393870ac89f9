// Package cli is berth's command line: flag parsing, help, output formats and
// exit codes. It is the only package that prints or exits; every other package
// returns errors.
//
// The runtime commands reproduce runc's CLI byte for byte (urfave/cli v1, the
// library runc uses, gives the same parsing rules: one- or two-dash long flags,
// comma-separated aliases, flags after positional arguments, exit 3 for an
// unknown command). Each command lives in its own file and adds itself to the
// app with register() from an init function, so new command families do not
// edit a shared list.
package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/urfave/cli"

	"berth/internal/oneshot"
)

var commands []cli.Command

// register adds a top-level command. Call it from an init function.
func register(c cli.Command) { commands = append(commands, c) }

// exitError carries an exit status out of an Action. A nil err means "exit
// with code, print nothing" (a foreground run returning the container status).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// progName is the name the binary was called by; help texts and the
// "<name> create failed" prefix use it, as runc does with argv[0].
var progName = "berth"

const globalUsage = `berth is a container runtime toolkit in one binary.

As an OCI runtime it is a drop-in for runc: the same commands, flags, outputs,
exit codes and log lines, so containerd and podman can use it unchanged.

Containers are configured using bundles. A bundle for a container is a directory
that includes a specification file named "config.json" and a root filesystem.
The root filesystem contains the contents of the container.

To start a new instance of a container:

    # berth run [ -b bundle ] <container-id>

Where "<container-id>" is your name for the instance of the container that you
are starting. The name you provide for the container instance must be unique on
your host. Providing the bundle directory using "-b" is optional. The default
value for "bundle" is the current directory.`

func newApp() *cli.App {
	app := cli.NewApp()
	app.Name = "berth"
	if progName == "runc" {
		// Clients that check the version (go-runc) require "runc version".
		app.Name = "runc"
	}
	app.Usage = "Open Container Initiative runtime\n\n" + globalUsage
	app.Version = versionString()
	app.EnableBashCompletion = true // hidden --generate-bash-completion, for `berth completion`
	app.Flags = []cli.Flag{
		cli.BoolFlag{Name: "debug", Usage: "enable debug logging"},
		cli.StringFlag{Name: "log", Value: "", Usage: "set the log file to write berth logs to (default is '/dev/stderr')"},
		cli.StringFlag{Name: "log-format", Value: "text", Usage: "set the log format ('text' (default), or 'json')"},
		cli.StringFlag{Name: "root", Value: defaultRoot(), Usage: "root directory for storage of container state (this should be located in tmpfs)"},
		cli.BoolFlag{Name: "systemd-cgroup", Usage: "enable systemd cgroup support, expects cgroupsPath to be of form \"slice:prefix:name\" for e.g. \"system.slice:runc:434234\""},
		cli.StringFlag{Name: "rootless", Value: "auto", Usage: "ignore cgroup permission errors ('true', 'false', or 'auto')"},
		cli.StringFlag{Name: "criu", Hidden: true, Usage: "ignored; kept so old clients still parse"},
	}
	cmds := append([]cli.Command(nil), commands...)
	sort.SliceStable(cmds, func(i, j int) bool { return cmds[i].Name < cmds[j].Name })
	app.Commands = cmds
	app.Before = func(c *cli.Context) error {
		if err := setupLog(c.GlobalString("log"), c.GlobalString("log-format"), c.GlobalBool("debug")); err != nil {
			return err
		}
		if root := c.GlobalString("root"); filepath.Clean(root) == "/" {
			return errors.New("Option --root argument should not be set to /") //nolint:staticcheck // runc's message, byte for byte
		}
		if xdg := os.Getenv("XDG_RUNTIME_DIR"); !c.GlobalIsSet("root") && xdg != "" && c.GlobalString("root") == filepath.Join(xdg, "berth") {
			// As runc: anything in XDG_RUNTIME_DIR needs the sticky bit,
			// or the session's cleanup may prune it.
			root := c.GlobalString("root")
			if err := os.MkdirAll(root, 0o700); err != nil {
				return fmt.Errorf("the path in $XDG_RUNTIME_DIR must be writable by the user: %w", err)
			}
			if err := os.Chmod(root, 0o700|os.ModeSticky); err != nil {
				return fmt.Errorf("you should check permission of the path in $XDG_RUNTIME_DIR: %w", err)
			}
		}
		return nil
	}
	cli.ErrWriter = fatalWriter{}
	return app
}

func defaultRoot() string {
	if os.Geteuid() != 0 {
		if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
			return filepath.Join(d, "berth")
		}
	}
	return "/run/berth"
}

// Main runs the CLI and returns the process exit status.
func Main(args []string) (code int) {
	if len(args) > 0 {
		progName = filepath.Base(args[0])
	}
	if progName == "init" {
		// Bound at /dev/init by `container run --init`: the container's
		// reaping pid 1.
		code, err := oneshot.Reap(args[1:])
		if err != nil {
			fmt.Fprintf(os.Stderr, "berth-init: %v\n", err)
		}
		return code
	}
	app := newApp()
	exitCode := -1
	cli.OsExiter = func(c int) { exitCode = c }
	err := app.Run(args)
	if exitCode >= 0 {
		// urfave/cli already reported it (unknown help topic: exit 3).
		return exitCode
	}
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fatal(ee.err)
		}
		return ee.code
	}
	var ce cli.ExitCoder
	if errors.As(err, &ce) {
		if msg := strings.TrimSpace(err.Error()); msg != "" {
			fatal(err)
		}
		return ce.ExitCode()
	}
	fatal(err)
	return 1
}

// fatal logs err at error level and, when the log goes to a file, also prints
// it plainly on stderr so an interactive user still sees it (runc's fatal).
func fatal(err error) {
	log.Errorf("%s", err.Error())
	if log.toFile {
		fmt.Fprintln(os.Stderr, err.Error())
	}
}
