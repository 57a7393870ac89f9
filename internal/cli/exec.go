package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"

	"berth/internal/runtime"
	"berth/internal/state"
)

func init() {
	register(cli.Command{
		Name:  "exec",
		Usage: "execute new process inside the container",
		ArgsUsage: `<container-id> <command> [command options]  || -p process.json <container-id>

Where "<container-id>" is the name for the instance of the container and
"<command>" is the command to be executed in the container.
"<command>" can't be empty unless a "-p" flag provided.

EXAMPLE:
For example, if the container is configured to run the linux ps command the
following will output a list of processes running in the container:

       # berth exec <container-id> ps`,
		Flags: []cli.Flag{
			cli.StringFlag{Name: "console-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal"},
			cli.StringFlag{Name: "pidfd-socket", Usage: "path to an AF_UNIX socket which will receive a file descriptor referencing the exec process"},
			cli.StringFlag{Name: "cwd", Usage: "current working directory in the container"},
			cli.StringSliceFlag{Name: "env, e", Usage: "set environment variables"},
			cli.BoolFlag{Name: "tty, t", Usage: "allocate a pseudo-TTY"},
			cli.StringFlag{Name: "user, u", Usage: "UID (format: <uid>[:<gid>])"},
			cli.Int64SliceFlag{Name: "additional-gids, g", Usage: "additional gids"},
			cli.StringFlag{Name: "process, p", Usage: "path to the process.json"},
			cli.BoolFlag{Name: "detach, d", Usage: "detach from the container's process"},
			cli.StringFlag{Name: "pid-file", Usage: "specify the file to write the process id to"},
			cli.StringFlag{Name: "process-label", Usage: "set the asm process label for the process commonly used with selinux"},
			cli.StringFlag{Name: "apparmor", Usage: "set the apparmor profile for the process"},
			cli.BoolFlag{Name: "no-new-privs", Usage: "set the no new privileges value for the process"},
			cli.StringSliceFlag{Name: "cap, c", Usage: "add a capability to the bounding set for the process"},
			cli.IntFlag{Name: "preserve-fds", Usage: "Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total)"},
			cli.StringSliceFlag{Name: "cgroup", Usage: "run the process in an (existing) sub-cgroup(s). Format is [<controller>:]<cgroup>."},
			cli.BoolFlag{Name: "ignore-paused", Usage: "allow exec in a paused container"},
		},
		SkipArgReorder: true,
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 1, minArgs); err != nil {
				return withCode(255, err)
			}
			rt, err := newRuntime(c)
			if err != nil {
				return withCode(255, err)
			}
			id := c.Args().First()
			p, err := execProcess(c, rt, id)
			if err != nil {
				return withCode(255, err)
			}
			pidFile, err := absPidFile(c)
			if err != nil {
				return withCode(255, err)
			}
			cg, err := runtime.ParseCgroupFlag(c.StringSlice("cgroup"))
			if err != nil {
				return withCode(255, err)
			}
			status, err := rt.Exec(id, runtime.ExecOptions{
				Process: p, ConsoleSocket: c.String("console-socket"), PidFile: pidFile,
				PidfdSocket: c.String("pidfd-socket"), Detach: c.Bool("detach"),
				PreserveFds: c.Int("preserve-fds"), IgnorePaused: c.Bool("ignore-paused"), Cgroup: cg,
				Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
			})
			if err != nil {
				return withCode(255, err)
			}
			if status != 0 {
				return withCode(status, nil)
			}
			return nil
		},
	})
}

// execProcess builds the process: from -p as given, or from the container's
// config.json process with the command line's overrides (runc's rules).
func execProcess(c *cli.Context, rt *runtime.Runtime, id string) (*specs.Process, error) {
	if path := c.String("process"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var p specs.Process
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", path, err)
		}
		return &p, nil
	}
	st, err := state.LoadView(rt.Root, id)
	if err != nil {
		return nil, err
	}
	if st.Config == nil || st.Config.Process == nil {
		return nil, errors.New("container has no process config")
	}
	b, _ := json.Marshal(st.Config.Process)
	var p specs.Process
	_ = json.Unmarshal(b, &p)
	args := c.Args().Tail()
	if len(args) == 0 {
		return nil, errors.New("exec args cannot be empty")
	}
	p.Args = args
	p.Terminal = c.Bool("tty")
	p.Env = append(p.Env, c.StringSlice("env")...)
	if cwd := c.String("cwd"); cwd != "" {
		p.Cwd = cwd
	}
	if u := c.String("user"); u != "" {
		uidStr, gidStr, hasGid := strings.Cut(u, ":")
		uid, err := strconv.ParseUint(uidStr, 10, 31)
		if err != nil {
			return nil, fmt.Errorf("parsing %s as int for uid failed: %w", uidStr, err)
		}
		p.User.UID = uint32(uid)
		if hasGid {
			gid, err := strconv.ParseUint(gidStr, 10, 31)
			if err != nil {
				return nil, fmt.Errorf("parsing %s as int for gid failed: %w", gidStr, err)
			}
			p.User.GID = uint32(gid)
		}
	}
	for _, g := range c.Int64Slice("additional-gids") {
		if g < 0 || g > 1<<31-1 {
			return nil, fmt.Errorf("additional-gids: %d is out of range", g)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(g))
	}
	if caps := c.StringSlice("cap"); len(caps) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		for _, cp := range caps {
			p.Capabilities.Bounding = append(p.Capabilities.Bounding, cp)
			p.Capabilities.Effective = append(p.Capabilities.Effective, cp)
			p.Capabilities.Permitted = append(p.Capabilities.Permitted, cp)
			// Ambient needs inheritable, which --cap does not grant.
			if p.Capabilities.Inheritable != nil {
				p.Capabilities.Ambient = append(p.Capabilities.Ambient, cp)
			}
		}
	}
	if c.Bool("no-new-privs") {
		p.NoNewPrivileges = true
	}
	if v := c.String("apparmor"); v != "" {
		p.ApparmorProfile = v
	}
	if v := c.String("process-label"); v != "" {
		p.SelinuxLabel = v
	}
	return &p, nil
}
