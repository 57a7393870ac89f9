package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"berth/internal/image/bundle"
	"berth/internal/image/layercache"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"
)

// configEditFlags are the config.json changes users otherwise script with
// jq; `bundle edit` and `unpack` share them.
var configEditFlags = []cli.Flag{
	cli.StringFlag{Name: "netns", Usage: "join the network namespace at `PATH` (e.g. /var/run/netns/web); \"host\" shares the host's"},
	cli.StringSliceFlag{Name: "ns", Usage: "join or create a namespace: `TYPE[=PATH]` (network, pid, ipc, uts, mount, user, cgroup, time); PATH \"host\" removes it (repeatable)"},
	cli.StringSliceFlag{Name: "cap-add", Usage: "add a capability `CAP`, e.g. CAP_NET_RAW or net_raw (repeatable)"},
	cli.StringSliceFlag{Name: "cap-drop", Usage: "drop a capability `CAP`, or ALL (repeatable)"},
	cli.StringFlag{Name: "args", Usage: "process arguments: a JSON array ('[\"sh\",\"-c\",\"echo hi\"]') or space-separated `ARGS`"},
	cli.StringSliceFlag{Name: "env", Usage: "set `K=V` (replacing K), or unset K (repeatable)"},
	cli.StringFlag{Name: "cwd", Usage: "working directory (absolute `PATH`)"},
	cli.StringFlag{Name: "terminal", Usage: "allocate a terminal: `true|false`"},
	cli.StringFlag{Name: "hostname", Usage: "container `HOSTNAME`"},
	cli.StringFlag{Name: "user", Usage: "process `UID[:GID]`"},
	cli.StringFlag{Name: "readonly", Usage: "read-only rootfs: `true|false`"},
	cli.StringSliceFlag{Name: "mount", Usage: "add a mount `SPEC`: type=bind,src=/host,dst=/ctr,ro (bare words are options; bind gets rbind) (repeatable)"},
	cli.StringSliceFlag{Name: "unmount", Usage: "remove the mount at `DEST` (repeatable)"},
	cli.StringSliceFlag{Name: "annotation", Usage: "set `K=V`, or remove K (repeatable)"},
}

// editFromFlags collects the edit flags; any=false means none was given.
func editFromFlags(c *cli.Context) (e bundle.Edit, any bool, err error) {
	e.Namespaces = map[specs.LinuxNamespaceType]string{}
	if v := c.String("netns"); v != "" {
		e.Namespaces[specs.NetworkNamespace] = v
	}
	for _, ns := range c.StringSlice("ns") {
		t, p, _ := strings.Cut(ns, "=")
		e.Namespaces[specs.LinuxNamespaceType(t)] = p
	}
	e.CapAdd, e.CapDrop = c.StringSlice("cap-add"), c.StringSlice("cap-drop")
	if v := c.String("args"); v != "" {
		if strings.HasPrefix(strings.TrimSpace(v), "[") {
			if err := json.Unmarshal([]byte(v), &e.Args); err != nil {
				return e, false, fmt.Errorf("--args: invalid JSON array: %w", err)
			}
		} else {
			e.Args = strings.Fields(v)
		}
		if len(e.Args) == 0 {
			return e, false, errors.New("--args: no arguments given")
		}
	}
	e.Env = c.StringSlice("env")
	e.Cwd = c.String("cwd")
	if e.Terminal, err = boolFlag(c, "terminal"); err != nil {
		return e, false, err
	}
	if e.Readonly, err = boolFlag(c, "readonly"); err != nil {
		return e, false, err
	}
	if c.IsSet("hostname") {
		h := c.String("hostname")
		e.Hostname = &h
	}
	if v := c.String("user"); v != "" {
		u, g, hasG := strings.Cut(v, ":")
		uid, err := strconv.ParseUint(u, 10, 32)
		if err != nil {
			return e, false, fmt.Errorf("--user %q: uid must be a number", v)
		}
		user := specs.User{UID: uint32(uid)}
		if hasG {
			gid, err := strconv.ParseUint(g, 10, 32)
			if err != nil {
				return e, false, fmt.Errorf("--user %q: gid must be a number", v)
			}
			user.GID = uint32(gid)
		}
		e.User = &user
	}
	for _, m := range c.StringSlice("mount") {
		mt, err := bundle.ParseMount(m)
		if err != nil {
			return e, false, fmt.Errorf("--mount: %w", err)
		}
		e.Mounts = append(e.Mounts, mt)
	}
	e.UnMounts = c.StringSlice("unmount")
	e.Annotation = c.StringSlice("annotation")
	any = len(e.Namespaces) > 0 || len(e.CapAdd) > 0 || len(e.CapDrop) > 0 || e.Args != nil || len(e.Env) > 0 ||
		e.Cwd != "" || e.Terminal != nil || e.Readonly != nil || e.Hostname != nil || e.User != nil ||
		len(e.Mounts) > 0 || len(e.UnMounts) > 0 || len(e.Annotation) > 0
	return e, any, nil
}

func boolFlag(c *cli.Context, name string) (*bool, error) {
	v := c.String(name)
	if v == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, fmt.Errorf("--%s %q: want true or false", name, v)
	}
	return &b, nil
}

func bundleArg(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s: expects exactly one argument, the bundle directory (got %d)", c.Command.Name, c.NArg())
	}
	return c.Args().First(), nil
}

func init() {
	register(cli.Command{
		Name:  "bundle",
		Usage: "edit, remount or remove runtime bundles",
		Description: `Work on runtime bundles (a directory with config.json and rootfs/), whether
made by "berth unpack", umoci, "runc spec" or by hand.

Example:

    # berth bundle edit ./bundles/alpine --netns /var/run/netns/web --cap-add CAP_NET_RAW \
        --args '["ping","-c1","10.0.0.1"]' --terminal=false --hostname web
    # berth bundle show ./bundles/alpine
    # berth bundle rm ./bundles/alpine`,
		Subcommands: []cli.Command{bundleEditCmd, bundleShowCmd, bundleRmCmd, bundleMountCmd},
	})
}

var bundleEditCmd = cli.Command{
	Name:      "edit",
	Usage:     "change a bundle's config.json (network namespace, capabilities, args, env, mounts ...)",
	ArgsUsage: "BUNDLE",
	Description: `Applies the given changes to BUNDLE/config.json and writes it back atomically
(temp file, fsync, rename): a crash or a concurrent reader sees the old or the
new config, never a mix. Values are all checked before anything is written.

Example: join a named network namespace and allow ping:

    # berth bundle edit ./bundles/alpine --netns /var/run/netns/web \
        --cap-add CAP_NET_RAW --args "ping -c1 10.88.0.1" --terminal=false
    # berth bundle edit ./b --env DEBUG=1 --env TERM --cwd /srv \
        --mount type=bind,src=/srv/data,dst=/data,ro --unmount /sys/fs/cgroup`,
	Flags: configEditFlags,
	Action: func(c *cli.Context) error {
		b, err := bundleArg(c)
		if err != nil {
			return err
		}
		e, any, err := editFromFlags(c)
		if err != nil {
			return err
		}
		if !any {
			return errors.New("bundle edit: no changes given (see --help)")
		}
		s, err := bundle.Load(b)
		if err != nil {
			return fmt.Errorf("bundle edit: %w", err)
		}
		if err := e.Apply(s); err != nil {
			return fmt.Errorf("bundle edit: %w", err)
		}
		if err := bundle.Save(b, s); err != nil {
			return fmt.Errorf("bundle edit: writing config: %w", err)
		}
		return nil
	},
}

var bundleShowCmd = cli.Command{
	Name:      "show",
	Usage:     "print a bundle's config.json",
	ArgsUsage: "BUNDLE",
	Description: `Prints BUNDLE/config.json as parsed by berth (so an invalid config fails here).

Example:

    # berth bundle show ./bundles/alpine | jq .process.args`,
	Action: func(c *cli.Context) error {
		b, err := bundleArg(c)
		if err != nil {
			return err
		}
		s, err := bundle.Load(b)
		if err != nil {
			return fmt.Errorf("bundle show: %w", err)
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "\t")
		return enc.Encode(s)
	},
}

var bundleRmCmd = cli.Command{
	Name:      "rm",
	Aliases:   []string{"remove"},
	Usage:     "remove a bundle, unmounting its overlay rootfs first",
	ArgsUsage: "BUNDLE",
	Description: `Removes BUNDLE. For an overlay bundle ("berth unpack --overlay") it first
unmounts the rootfs (lazily if it is busy), then releases the bundle's hold on
the cached layers so "berth layers gc" may collect them. Refuses directories
that have neither config.json nor rootfs/.

Example:

    # berth bundle rm ./bundles/alpine`,
	Action: func(c *cli.Context) error {
		b, err := bundleArg(c)
		if err != nil {
			return err
		}
		if err := layercache.RemoveBundle(b); err != nil {
			return fmt.Errorf("bundle rm: %w", err)
		}
		return nil
	},
}

var bundleMountCmd = cli.Command{
	Name:      "mount",
	Usage:     "mount an overlay bundle's rootfs again (after a reboot)",
	ArgsUsage: "BUNDLE",
	Description: `Mounts the overlay rootfs of a bundle made with "berth unpack --overlay" again,
from the same cached layers and the same private upper directory, so changes
made in the container survive. Does nothing if it is mounted.

Example:

    # berth bundle mount ./bundles/alpine`,
	Action: func(c *cli.Context) error {
		b, err := bundleArg(c)
		if err != nil {
			return err
		}
		abs, err := filepath.Abs(b)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("bundle mount: %w", err)
		}
		if err := layercache.Remount(abs); err != nil {
			return fmt.Errorf("bundle mount: %w", err)
		}
		return nil
	},
}
