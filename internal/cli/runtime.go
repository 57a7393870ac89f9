package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli"

	"berth/internal/runtime"
	"berth/internal/spec"
	"berth/internal/state"
)

const (
	exactArgs = iota
	minArgs
	maxArgs
)

// checkArgs reproduces runc's argument-count errors: "Incorrect Usage." and
// the command's help on stdout, then the error.
func checkArgs(c *cli.Context, expected, kind int) error {
	name := c.Command.Name
	var err error
	switch kind {
	case exactArgs:
		if c.NArg() != expected {
			err = fmt.Errorf("%s: %q requires exactly %d argument(s)", os.Args[0], name, expected)
		}
	case minArgs:
		if c.NArg() < expected {
			err = fmt.Errorf("%s: %q requires a minimum of %d argument(s)", os.Args[0], name, expected)
		}
	case maxArgs:
		if c.NArg() > expected {
			err = fmt.Errorf("%s: %q requires a maximum of %d argument(s)", os.Args[0], name, expected)
		}
	}
	if err != nil {
		fmt.Fprint(c.App.Writer, "Incorrect Usage.\n\n")
		_ = cli.ShowCommandHelp(c, name)
	}
	return err
}

func newRuntime(c *cli.Context) (*runtime.Runtime, error) {
	root, err := filepath.Abs(c.GlobalString("root"))
	if err != nil {
		return nil, err
	}
	rootless, err := rootlessMode(c.GlobalString("rootless"))
	if err != nil {
		return nil, err
	}
	return &runtime.Runtime{
		Root:          root,
		Warn:          func(s string) { log.Warnf("%s", s) },
		Debug:         func(s string) { log.Debugf("%s", s) },
		Rootless:      rootless,
		SystemdCgroup: c.GlobalBool("systemd-cgroup"),
	}, nil
}

// rootlessMode is --rootless: true, false, or auto (runc's: rootless when
// not root, or root inside a user namespace that is not the host's).
func rootlessMode(v string) (bool, error) {
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "auto", "":
		return os.Geteuid() != 0 || inUserNS(), nil
	}
	return false, fmt.Errorf("invalid --rootless value %q: want true, false or auto", v)
}

// inUserNS reports whether this process runs in a user namespace other
// than the host's (its uid map is not the identity of every id).
func inUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// absPidFile resolves --pid-file against the caller's cwd (runc's revisePidFile).
func absPidFile(c *cli.Context) (string, error) {
	p := c.String("pid-file")
	if p == "" {
		return "", nil
	}
	return filepath.Abs(p)
}

var createFlags = []cli.Flag{
	cli.StringFlag{Name: "bundle, b", Value: "", Usage: `path to the root of the bundle directory, defaults to the current directory`},
	cli.StringFlag{Name: "console-socket", Value: "", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
	cli.StringFlag{Name: "pidfd-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the init process"},
	cli.StringFlag{Name: "pid-file", Value: "", Usage: "specify the file to write the process id to"},
	cli.BoolFlag{Name: "no-pivot", Usage: "do not use pivot root to jail process inside rootfs.  This should be used whenever the rootfs is on top of a ramdisk"},
	cli.BoolFlag{Name: "no-new-keyring", Usage: "do not create a new session keyring for the container.  This will cause the container to inherit the calling processes session key"},
	cli.IntFlag{Name: "preserve-fds", Usage: "Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total)"},
}

func createOptions(c *cli.Context) (runtime.CreateOptions, error) {
	pidFile, err := absPidFile(c)
	if err != nil {
		return runtime.CreateOptions{}, err
	}
	bundle := c.String("bundle")
	if bundle == "" {
		bundle = "."
	}
	if c.Bool("no-pivot") {
		log.Warnf("--no-pivot: the container's old root stays reachable with CAP_SYS_CHROOT; Such configuration is strongly discouraged")
	}
	return runtime.CreateOptions{
		Bundle: bundle, ConsoleSocket: c.String("console-socket"), PidFile: pidFile,
		PidfdSocket: c.String("pidfd-socket"), NoPivot: c.Bool("no-pivot"),
		NoNewKeyring: c.Bool("no-new-keyring"), PreserveFds: c.Int("preserve-fds"),
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	}, nil
}

// createSetup is what create and run share: one container id, the runtime
// and the create flags.
func createSetup(c *cli.Context) (*runtime.Runtime, runtime.CreateOptions, error) {
	if err := checkArgs(c, 1, exactArgs); err != nil {
		return nil, runtime.CreateOptions{}, err
	}
	rt, err := newRuntime(c)
	if err != nil {
		return nil, runtime.CreateOptions{}, err
	}
	o, err := createOptions(c)
	return rt, o, err
}

const idUsage = `<container-id>

Where "<container-id>" is your name for the instance of the container that you
are starting. The name you provide for the container instance must be unique on
your host.`

func init() {
	register(cli.Command{
		Name:      "create",
		Usage:     "create a container",
		ArgsUsage: idUsage,
		Description: `The create command creates an instance of a container for a bundle. The bundle
is a directory with a specification file named "config.json" and a root
filesystem.

The specification file includes an args parameter. The args parameter is used
to specify command(s) that get run when the container is started. To change the
command(s) that get executed on start, edit the args parameter of the spec. See
"berth spec --help" for more explanation.

Example:
   berth create -b ./bundle --pid-file ./init.pid mycontainer && berth start mycontainer`,
		Flags: createFlags,
		Action: func(c *cli.Context) error {
			rt, o, err := createSetup(c)
			if err != nil {
				return err
			}
			if err := rt.Create(c.Args().First(), o); err != nil {
				return fmt.Errorf("%s create failed: %w", progName, err)
			}
			return nil
		},
	})
	register(cli.Command{
		Name:      "run",
		Usage:     "create and run a container",
		ArgsUsage: idUsage,
		Description: `The run command creates an instance of a container for a bundle. The bundle
is a directory with a specification file named "config.json" and a root
filesystem.

In the foreground, run exits with the container process's status (128+N when
it was killed by signal N) and removes the container afterwards unless --keep.

Example:
   berth run -b ./bundle mycontainer`,
		Flags: append(append([]cli.Flag(nil), createFlags...),
			cli.BoolFlag{Name: "detach, d", Usage: "detach from the container's process"},
			cli.BoolFlag{Name: "keep", Usage: "do not delete the container after it exits"},
			cli.BoolFlag{Name: "no-subreaper", Usage: "disable the use of the subreaper used to reap reparented processes"},
		),
		Action: func(c *cli.Context) error {
			rt, co, err := createSetup(c)
			if err != nil {
				return err
			}
			o := runtime.RunOptions{CreateOptions: co, Detach: c.Bool("detach"), Keep: c.Bool("keep"), NoSubreaper: c.Bool("no-subreaper")}
			status, err := rt.Run(c.Args().First(), o)
			if err != nil {
				return withCode(status, fmt.Errorf("%s run failed: %w", progName, err))
			}
			if status != 0 {
				return withCode(status, nil)
			}
			return nil
		},
	})
	register(cli.Command{
		Name:  "start",
		Usage: "executes the user defined process in a created container",
		ArgsUsage: `<container-id>

Where "<container-id>" is your name for the instance of the container that you
are starting. The name you provide for the container instance must be unique on
your host.`,
		Description: `The start command executes the user defined process in a created container.`,
		Action: func(c *cli.Context) error {
			return oneID(c, func(rt *runtime.Runtime, id string) error { return rt.Start(id) })
		},
	})
	register(cli.Command{
		Name:  "state",
		Usage: "output the state of a container",
		ArgsUsage: `<container-id>

Where "<container-id>" is your name for the instance of the container.`,
		Description: `The state command outputs current state information for the
instance of a container.`,
		Action: func(c *cli.Context) error {
			return oneID(c, func(rt *runtime.Runtime, id string) error {
				st, err := rt.State(id)
				if err != nil {
					return err
				}
				b, err := json.MarshalIndent(st, "", "  ")
				if err != nil {
					return err
				}
				_, err = os.Stdout.Write(b)
				return err
			})
		},
	})
	register(cli.Command{
		Name:  "kill",
		Usage: "kill sends the specified signal (default: SIGTERM) to the container's init process",
		ArgsUsage: `<container-id> [signal]

Where "<container-id>" is the name for the instance of the container and
"[signal]" is the signal to be sent to the init process.

EXAMPLE:
For example, if the container id is "ubuntu01" the following will send a "KILL"
signal to the init process of the "ubuntu01" container:

       # berth kill ubuntu01 KILL`,
		Flags: []cli.Flag{
			cli.BoolFlag{Name: "all, a", Usage: "(obsoleted, do not use)", Hidden: true},
		},
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 1, minArgs); err != nil {
				return err
			}
			if err := checkArgs(c, 2, maxArgs); err != nil {
				return err
			}
			rt, err := newRuntime(c)
			if err != nil {
				return err
			}
			sigstr := c.Args().Get(1)
			if sigstr == "" {
				sigstr = "SIGTERM"
			}
			sig, err := runtime.ParseSignal(sigstr)
			if err != nil {
				return err
			}
			return rt.Kill(c.Args().First(), sig, c.Bool("all"))
		},
	})
	register(cli.Command{
		Name:  "delete",
		Usage: "delete any resources held by the container often used with detached container",
		ArgsUsage: `<container-id>

Where "<container-id>" is the name for the instance of the container.

EXAMPLE:
For example, if the container id is "ubuntu01" and berth list currently shows the
status of "ubuntu01" as "stopped" the following will delete resources held for
"ubuntu01" removing "ubuntu01" from the berth list of containers:

       # berth delete ubuntu01`,
		Flags: []cli.Flag{
			cli.BoolFlag{Name: "force, f", Usage: "Forcibly deletes the container if it is still running (uses SIGKILL)"},
		},
		Action: func(c *cli.Context) error {
			return oneID(c, func(rt *runtime.Runtime, id string) error { return rt.Delete(id, c.Bool("force")) })
		},
	})
	register(cli.Command{
		Name:  "list",
		Usage: "lists containers started by berth with the given root",
		ArgsUsage: `

Where the given root is specified via the global option "--root"
(default: "/run/berth").

EXAMPLE 1:
To list containers created via the default "--root":
       # berth list

EXAMPLE 2:
To list containers created using a non-default value for "--root":
       # berth --root value list`,
		Flags: []cli.Flag{
			cli.StringFlag{Name: "format, f", Value: "table", Usage: `select one of: table or json (default: "table")`},
			cli.BoolFlag{Name: "quiet, q", Usage: "display only container IDs"},
		},
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 0, exactArgs); err != nil {
				return err
			}
			rt, err := newRuntime(c)
			if err != nil {
				return err
			}
			entries, problems, err := rt.List()
			if err != nil {
				if errors.Is(err, os.ErrNotExist) && !c.GlobalIsSet("root") {
					entries, err = nil, nil
				} else {
					return err
				}
			}
			for _, p := range problems {
				fmt.Fprintln(os.Stderr, p) // runc's plain stderr line, not a log entry
			}
			if c.Bool("quiet") {
				for _, e := range entries {
					fmt.Println(e.ID)
				}
				return nil
			}
			switch c.String("format") {
			case "table":
				w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
				fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
				for _, e := range entries {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", e.ID, e.Pid, e.Status, e.Bundle, e.Created.Format(time.RFC3339Nano), ownerName(e.OwnerUID))
				}
				return w.Flush()
			case "json":
				list := make([]state.Public, 0, len(entries))
				for _, e := range entries {
					p := e.Public
					p.Owner = ownerName(e.OwnerUID)
					list = append(list, p)
				}
				if len(list) == 0 {
					list = nil
				}
				return json.NewEncoder(os.Stdout).Encode(list)
			default:
				return errors.New("invalid format option")
			}
		},
	})
	register(cli.Command{
		Name:  "spec",
		Usage: "create a new specification file",
		Description: `The spec command creates the new specification file named "config.json" for
the bundle.

The spec generated is just a starter file. Editing of the spec is required to
achieve desired results. For example, the newly generated spec includes an args
parameter that is initially set to call the "sh" command when the container is
started. Calling "sh" may work for an ubuntu container or busybox, but will not
work for containers that do not include the "sh" program.

EXAMPLE:
  To run docker's hello-world container one needs to set the args parameter
in the spec to call hello. This can be done using the sed command or a text
editor. The following commands create a bundle for hello-world, change the
default args parameter in the spec from "sh" to "/hello", then run the hello
command in a new hello-world container named container1:

    mkdir hello
    cd hello
    docker pull hello-world
    docker export $(docker create hello-world) > hello-world.tar
    mkdir rootfs
    tar -C rootfs -xf hello-world.tar
    berth spec
    sed -i 's;"sh";"/hello";' config.json
    berth run container1`,
		Flags: []cli.Flag{
			cli.StringFlag{Name: "bundle, b", Value: "", Usage: "path to the root of the bundle directory"},
			cli.BoolFlag{Name: "rootless", Usage: "generate a configuration for a rootless container"},
		},
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 0, exactArgs); err != nil {
				return err
			}
			s := spec.Default(c.Bool("rootless"))
			dir := c.String("bundle")
			if dir != "" {
				if err := os.Chdir(dir); err != nil {
					return err
				}
			}
			if _, err := os.Stat(spec.File); err == nil {
				return fmt.Errorf("File %s exists. Remove it first", spec.File) //nolint:staticcheck // runc's message, byte for byte
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			b, err := json.MarshalIndent(s, "", "\t")
			if err != nil {
				return err
			}
			return os.WriteFile(spec.File, b, 0o666)
		},
	})
}

func ownerName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "#" + strconv.Itoa(uid)
}
