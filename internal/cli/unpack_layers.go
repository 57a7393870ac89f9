package cli

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"berth/internal/image/bundle"
	"berth/internal/image/layercache"

	"github.com/urfave/cli"
)

// layerCacheFlag is the cache every layers subcommand works on.
var layerCacheFlag = cli.StringFlag{Name: "layer-cache", EnvVar: "BERTH_LAYERS", Value: layercache.DefaultDir, Usage: "layer cache `DIR`"}

func init() {
	register(cli.Command{
		Name:  "layers",
		Usage: "list, remove and garbage-collect the layer cache used by overlay bundles",
		Description: `"berth unpack --overlay" extracts each layer once into a content-addressed cache
(default /var/lib/berth/layers, keyed by DiffID) and mounts bundles as an
overlay of cached layers. These commands manage that cache. Layers mounted by
an existing overlay bundle are never collected; remove the bundle with
"berth bundle rm" first.

Example:

    # berth layers ls
    # berth layers gc            # drop layers of no bundle and no stored image
    # berth layers rm 3f4c...    # drop one layer`,
		Flags: []cli.Flag{layerCacheFlag},
		Subcommands: []cli.Command{
			layersLsCommand(),
			layersRmCommand(),
			layersGcCommand(),
		},
	})
}

func layersLsCommand() cli.Command {
	return cli.Command{
		Name:  "ls",
		Usage: "list cached layers, their size and the bundles using them",
		Description: `Example:

    # berth layers ls`,
		Action: func(c *cli.Context) error {
			cache, err := layercache.Open(c.Parent().String("layer-cache"))
			if err != nil {
				return err
			}
			unlock, err := cache.Lock(false)
			if err != nil {
				return err
			}
			defer unlock()
			es, err := cache.List()
			if err != nil {
				return fmt.Errorf("layers ls: %w", err)
			}
			w := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', 0)
			fmt.Fprintln(w, "LAYER\tSIZE\tCREATED\tBUNDLES")
			for _, e := range es {
				fmt.Fprintf(w, "%s\t%d\t%s\t%d\n", e.Key, e.Size, e.Created.UTC().Format("2006-01-02T15:04:05Z"), len(e.Users))
			}
			return w.Flush()
		},
	}
}

func layersRmCommand() cli.Command {
	return cli.Command{
		Name:      "rm",
		Usage:     "remove cached layers",
		ArgsUsage: "LAYER...",
		Description: `Removes the named layers (keys as "berth layers ls" prints them). A layer an
overlay bundle mounts is refused unless --force (the bundle then breaks).

Example:

    # berth layers rm 3f4c0a...`,
		Flags: []cli.Flag{cli.BoolFlag{Name: "force", Usage: "remove even layers in use"}},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return errors.New("layers rm: expects at least one layer key")
			}
			cache, err := layercache.Open(c.Parent().String("layer-cache"))
			if err != nil {
				return err
			}
			unlock, err := cache.Lock(true)
			if err != nil {
				return err
			}
			defer unlock()
			var errs []error
			for _, k := range c.Args() {
				if err := cache.Remove(k, c.Bool("force")); err != nil {
					errs = append(errs, fmt.Errorf("layers rm: %w", err))
				}
			}
			return errors.Join(errs...)
		},
	}
}

func layersGcCommand() cli.Command {
	return cli.Command{
		Name:  "gc",
		Usage: "remove cached layers no overlay bundle uses (and, by default, no stored image has)",
		Description: `Removes every cached layer that no existing overlay bundle mounts and that no
image in berth's image store contains (--all: also those in the store), plus
leftovers of interrupted extractions. Prints the removed keys.

Example:

    # berth layers gc`,
		Flags: []cli.Flag{
			cli.BoolFlag{Name: "all", Usage: "also remove layers of images still in the store"},
			cli.StringFlag{Name: "store", EnvVar: "BERTH_STORE", Value: bundle.DefaultStore, Usage: "berth's image store"},
		},
		Action: func(c *cli.Context) error {
			cache, err := layercache.Open(c.Parent().String("layer-cache"))
			if err != nil {
				return err
			}
			keep := map[string]bool{}
			if !c.Bool("all") {
				if keep, err = bundle.LayoutDiffIDs(c.String("store")); err != nil {
					return fmt.Errorf("layers gc: reading the image store: %w", err)
				}
			}
			unlock, err := cache.Lock(true)
			if err != nil {
				return err
			}
			defer unlock()
			removed, err := cache.GC(keep)
			for _, k := range removed {
				fmt.Fprintln(c.App.Writer, k)
			}
			if err != nil {
				return fmt.Errorf("layers gc: %w", err)
			}
			return nil
		},
	}
}
