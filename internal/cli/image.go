package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli"

	"berth/internal/atomicfile"
	"berth/internal/image"
	"berth/internal/image/manifest"
	"berth/internal/image/ref"
	"berth/internal/image/registry"
)

// Image commands follow skopeo's syntax and flags, so scripts can swap the
// binary name. Progress goes to stderr; stdout carries only results.

func init() {
	register(copyCommand())
	register(pullCommand())
	register(inspectCommand())
	register(listTagsCommand())
}

func copyCommand() cli.Command {
	return cli.Command{
		Name:      "copy",
		Usage:     "copy an image between registries, OCI layouts, archives and directories",
		ArgsUsage: "SOURCE-IMAGE DESTINATION-IMAGE",
		Description: `Copies an image (manifest, config and layers), as skopeo copy does. Images are
written as transport:details:

    docker://[REGISTRY/]NAME[:TAG|@DIGEST]   a registry (Docker Hub when no registry)
    oci:PATH[:REF]                           an OCI image layout directory
    oci-archive:FILE[:REF]                   a tar of an OCI layout
    docker-archive:FILE[:NAME:TAG|:@N]       docker save format
    dir:PATH                                 one file per blob, plus manifest.json

A multi-platform image resolves to the host platform unless --override-os/
--override-arch/--override-variant pick another, or --all copies all of them.
Writing to oci: converts Docker media types to OCI ones; the layout changes only
when the copy has fully succeeded, other tags are kept and the same tag is
replaced. Blobs the destination already has are not fetched again.

Example:

    # berth copy docker://alpine:latest oci:./images/alpine:latest
    # berth copy --all --src-tls-verify=false docker://localhost:5000/app:v1 oci:./app:v1
    # berth copy oci:./images/alpine:latest docker://localhost:5000/alpine:latest`,
		Flags:  append(copyFlags(), platformFlags()...),
		Action: copyAction,
	}
}

func pullCommand() cli.Command {
	return cli.Command{
		Name:      "pull",
		Usage:     "pull an image into berth's image store",
		ArgsUsage: "IMAGE [DESTINATION-IMAGE]",
		Description: `Copies IMAGE (a Docker name such as "alpine", or any transport reference
accepted by copy) into berth's image store, an OCI layout at ` + image.DefaultStore + `
(--store or $BERTH_STORE to change it), tagged with the full reference
("docker.io/library/alpine:latest"). A DESTINATION-IMAGE replaces the store.
The stored reference is printed on stdout.

Example:

    # berth pull alpine
    # berth pull --tls-verify=false --creds me:pw localhost:5000/app:v1
    # berth pull busybox oci:./images/busybox:latest`,
		Flags:  pullFlags(),
		Action: pullAction,
	}
}

func inspectCommand() cli.Command {
	return cli.Command{
		Name:      "inspect",
		Usage:     "show an image's manifest, config or a summary, without pulling layers",
		ArgsUsage: "IMAGE",
		Description: `Prints skopeo-inspect style JSON (name, digest, tags, creation time, labels,
platform, layers, environment) for IMAGE, a transport reference or a Docker
name. --raw prints the manifest as stored (an index stays an index); --config
prints the image config of the selected platform.

Example:

    # berth inspect docker://alpine:latest
    # berth inspect --raw oci:./images/alpine:latest
    # berth inspect --config --override-arch arm64 docker://alpine`,
		Flags: append(append([]cli.Flag{
			cli.BoolFlag{Name: "raw", Usage: "print the raw manifest or index"},
			cli.BoolFlag{Name: "config", Usage: "print the image config"},
			cli.BoolFlag{Name: "no-tags, n", Usage: "do not list the repository's tags"},
		}, sideFlags("", "")...), platformFlags()...),
		Action: inspectAction,
	}
}

func listTagsCommand() cli.Command {
	return cli.Command{
		Name:      "list-tags",
		Usage:     "list the tags of a registry repository or a docker-archive",
		ArgsUsage: "REPOSITORY",
		Description: `Prints {"Repository": ..., "Tags": [...]} for docker://[REGISTRY/]NAME (no tag)
or the image names in a docker-archive: file.

Example:

    # berth list-tags docker://localhost:5000/app
    # berth list-tags docker-archive:./saved.tar`,
		Flags:  sideFlags("", ""),
		Action: listTagsAction,
	}
}

// sideFlags are the registry access flags of one side: prefix "src-" or
// "dest-" for copy, "" for single-image commands.
func sideFlags(prefix, what string) []cli.Flag {
	if what != "" {
		what = " for the " + what
	}
	fs := []cli.Flag{
		cli.StringFlag{Name: prefix + "creds", Usage: "USERNAME[:PASSWORD]" + what},
		cli.StringFlag{Name: prefix + "username", Usage: "user name" + what},
		cli.StringFlag{Name: prefix + "password", Usage: "password" + what},
		cli.StringFlag{Name: prefix + "registry-token", Usage: "bearer token" + what},
		cli.BoolTFlag{Name: prefix + "tls-verify", Usage: "require HTTPS and verify certificates" + what + " (--" + prefix + "tls-verify=false allows plain HTTP)"},
		cli.StringFlag{Name: prefix + "cert-dir", Usage: "directory with *.crt CA files and client *.cert/*.key pairs" + what},
		cli.BoolFlag{Name: prefix + "no-creds", Usage: "access the registry anonymously" + what},
	}
	if prefix == "" {
		fs = append(fs,
			cli.StringFlag{Name: "authfile", EnvVar: "REGISTRY_AUTH_FILE", Usage: "auth file (default: the containers auth.json search path, then docker's config.json)"},
			cli.IntFlag{Name: "retry-times", Value: 3, Usage: "retries of a failed request (network error, 408, 429, 5xx)"},
			cli.DurationFlag{Name: "retry-delay", Usage: "first delay between retries, doubled each time (default 1s)"},
		)
	} else {
		fs = append(fs, cli.StringFlag{Name: prefix + "authfile", Usage: "auth file" + what + " (overrides --authfile)"})
	}
	return fs
}

// transferFlags are shared by copy and pull.
func transferFlags() []cli.Flag {
	return []cli.Flag{
		cli.BoolFlag{Name: "all, a", Usage: "copy every image of a multi-platform index"},
		cli.StringFlag{Name: "multi-arch", Value: "system", Usage: "system (the selected platform) or all (same as --all)"},
		cli.BoolFlag{Name: "quiet, q", Usage: "print no progress"},
		cli.IntFlag{Name: "image-parallel-copies", Value: 6, Usage: "blobs transferred at once"},
		cli.StringFlag{Name: "digestfile", Usage: "write the digest of the written manifest to this file"},
		cli.BoolFlag{Name: "preserve-digests", Usage: "fail rather than convert a manifest (conversion changes its digest)"},
	}
}

func copyFlags() []cli.Flag {
	fs := append(transferFlags(),
		cli.StringFlag{Name: "authfile", EnvVar: "REGISTRY_AUTH_FILE", Usage: "auth file (default: the containers auth.json search path, then docker's config.json)"},
		cli.IntFlag{Name: "retry-times", Value: 3, Usage: "retries of a failed request or broken blob stream (network error, 408, 429, 5xx)"},
		cli.DurationFlag{Name: "retry-delay", Usage: "first delay between retries, doubled each time (default 1s; a Retry-After header wins)"},
		cli.BoolFlag{Name: "insecure-policy", Usage: "accepted for skopeo compatibility; berth has no mandatory signature policy"},
	)
	fs = append(fs, sideFlags("src-", "source")...)
	return append(fs, sideFlags("dest-", "destination")...)
}

// pullFlags: the registry flags name the source, podman-pull style
// (--creds, --tls-verify); a docker:// DESTINATION-IMAGE uses the defaults.
func pullFlags() []cli.Flag {
	fs := append(transferFlags(), cli.StringFlag{Name: "store", EnvVar: "BERTH_STORE", Value: image.DefaultStore, Usage: "image store (an OCI layout directory)"})
	fs = append(fs, sideFlags("", "")...)
	return append(fs, platformFlags()...)
}

func platformFlags() []cli.Flag {
	return []cli.Flag{
		cli.StringFlag{Name: "override-os", Usage: "pick this OS from a multi-platform image (default: the host's)"},
		cli.StringFlag{Name: "override-arch", Usage: "pick this architecture (default: the host's)"},
		cli.StringFlag{Name: "override-variant", Usage: "pick this architecture variant (e.g. v7, v8)"},
	}
}

// registryOpts reads one side's flags; the shared --authfile and retry
// flags apply to both sides.
func registryOpts(c *cli.Context, prefix string) (registry.Options, error) {
	o := registry.Options{
		AuthFile:   c.String("authfile"),
		Insecure:   !c.BoolT(prefix + "tls-verify"),
		CertDir:    c.String(prefix + "cert-dir"),
		Retries:    c.Int("retry-times"),
		RetryDelay: c.Duration("retry-delay"),
		UserAgent:  "berth/" + Version,
	}
	if prefix != "" && c.String(prefix+"authfile") != "" {
		o.AuthFile = c.String(prefix + "authfile")
	}
	if o.Retries < 0 {
		return o, errors.New("--retry-times must not be negative")
	}
	if log.debug {
		o.Debugf = log.Debugf
	}
	creds, user, pass := c.String(prefix+"creds"), c.String(prefix+"username"), c.String(prefix+"password")
	token := c.String(prefix + "registry-token")
	set := 0
	for _, v := range []string{creds, user + pass, token} {
		if v != "" {
			set++
		}
	}
	if c.Bool(prefix + "no-creds") {
		if set > 0 {
			return o, fmt.Errorf("--%sno-creds cannot be combined with credentials", prefix)
		}
		o.Creds = &registry.Credentials{}
	}
	switch {
	case set > 1:
		return o, fmt.Errorf("--%screds, --%susername/--%spassword and --%sregistry-token cannot be combined", prefix, prefix, prefix, prefix)
	case token != "":
		o.Creds = &registry.Credentials{RegistryToken: token, Source: "--" + prefix + "registry-token"}
	case creds != "":
		cr, err := registry.ParseCreds(creds)
		if err != nil {
			return o, fmt.Errorf("--%screds: %w", prefix, err)
		}
		o.Creds = &cr
	case user != "" || pass != "":
		if user == "" {
			return o, fmt.Errorf("--%spassword needs --%susername", prefix, prefix)
		}
		o.Creds = &registry.Credentials{Username: user, Password: pass, Source: "--" + prefix + "username"}
	}
	return o, nil
}

// imageOpts reads the flags of copy (both sides), pull (source side as
// plain --creds etc.) or inspect (no transfer flags).
func imageOpts(c *cli.Context, cmd string) (image.Options, error) {
	var o image.Options
	var err error
	switch cmd {
	case "copy":
		if o.Src, err = registryOpts(c, "src-"); err != nil {
			return o, err
		}
		if o.Dest, err = registryOpts(c, "dest-"); err != nil {
			return o, err
		}
	default:
		if o.Src, err = registryOpts(c, ""); err != nil {
			return o, err
		}
		o.Dest = o.Src
		o.Dest.Creds = nil
	}
	if cmd != "inspect" {
		o.All = c.Bool("all")
		switch c.String("multi-arch") {
		case "system", "":
		case "all":
			o.All = true
		case "index-only":
			return o, errors.New("--multi-arch index-only is not supported; use system or all")
		default:
			return o, fmt.Errorf("--multi-arch %q: want system or all", c.String("multi-arch"))
		}
		o.PreserveDigests = c.Bool("preserve-digests")
		o.Jobs = c.Int("image-parallel-copies")
		if o.Jobs < 1 {
			return o, errors.New("--image-parallel-copies must be at least 1")
		}
	}
	o.Platform = manifest.Platform{OS: c.String("override-os"), Architecture: c.String("override-arch"), Variant: c.String("override-variant")}
	if o.Platform.Variant != "" && o.Platform.Architecture == "" {
		o.Platform.Architecture = manifest.Host().Architecture
	}
	return o, nil
}

// imgContext is cancelled by SIGINT/SIGTERM, so an interrupted copy rolls
// back instead of leaving staging files.
func imgContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func errWriter(c *cli.Context) io.Writer {
	if c.App.ErrWriter != nil {
		return c.App.ErrWriter
	}
	return os.Stderr
}

// imgErr gives "image not found" skopeo's exit status 2.
func imgErr(err error) error {
	if errors.Is(err, image.ErrNotFound) {
		return withCode(2, err)
	}
	return err
}

func imgArgs(c *cli.Context, min, max int) error {
	if n := c.NArg(); n < min || n > max {
		want := fmt.Sprint(min)
		if max > min {
			want = fmt.Sprintf("%d to %d", min, max)
		}
		return fmt.Errorf("%s: expects %s arguments (%s), got %d; see berth %s --help", c.Command.Name, want, c.Command.ArgsUsage, n, c.Command.Name)
	}
	return nil
}

func copyAction(c *cli.Context) error {
	if err := imgArgs(c, 2, 2); err != nil {
		return err
	}
	src, err := ref.Parse(c.Args().Get(0))
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	dst, err := ref.Parse(c.Args().Get(1))
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	opts, err := imageOpts(c, "copy")
	if err != nil {
		return err
	}
	ctx, cancel := imgContext()
	defer cancel()
	p := startProgress(errWriter(c), c.Bool("quiet"))
	opts.Progress = p.event
	res, err := image.Copy(ctx, src, dst, opts)
	p.stop(err == nil)
	if err != nil {
		return imgErr(fmt.Errorf("copy: %w", err))
	}
	return finishCopy(c, p, res)
}

func finishCopy(c *cli.Context, p *progress, res *image.Result) error {
	for _, w := range res.Warnings {
		log.Warnf("%s", w)
	}
	if f := c.String("digestfile"); f != "" {
		if err := atomicfile.Write(f, []byte(res.Digest.String()), 0o644); err != nil {
			return fmt.Errorf("digestfile: %w", err)
		}
	}
	p.summary(res)
	return nil
}

func pullAction(c *cli.Context) error {
	if err := imgArgs(c, 1, 2); err != nil {
		return err
	}
	opts, err := imageOpts(c, "pull")
	if err != nil {
		return err
	}
	ctx, cancel := imgContext()
	defer cancel()
	p := startProgress(errWriter(c), c.Bool("quiet"))
	opts.Progress = p.event
	res, dst, err := image.Pull(ctx, c.Args().Get(0), c.String("store"), c.Args().Get(1), opts)
	p.stop(err == nil)
	if err != nil {
		return imgErr(fmt.Errorf("pull: %w", err))
	}
	if err := finishCopy(c, p, res); err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, dst.String())
	return nil
}

func inspectAction(c *cli.Context) error {
	if err := imgArgs(c, 1, 1); err != nil {
		return err
	}
	r, err := ref.ParseImage(c.Args().First())
	if err != nil {
		return err
	}
	opts, err := imageOpts(c, "inspect")
	if err != nil {
		return err
	}
	ctx, cancel := imgContext()
	defer cancel()
	switch {
	case c.Bool("raw") && c.Bool("config"):
		b, err := image.Config(ctx, r, opts)
		if err != nil {
			return imgErr(fmt.Errorf("inspect: %w", err))
		}
		_, err = c.App.Writer.Write(b)
		return err
	case c.Bool("raw"):
		b, err := image.RawManifest(ctx, r, opts)
		if err != nil {
			return imgErr(fmt.Errorf("inspect: %w", err))
		}
		_, err = c.App.Writer.Write(b)
		return err
	case c.Bool("config"):
		b, err := image.Config(ctx, r, opts)
		if err != nil {
			return imgErr(fmt.Errorf("inspect: %w", err))
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("inspect: image config is not JSON: %w", err)
		}
		return printJSON(c.App.Writer, v)
	}
	info, err := image.Inspect(ctx, r, opts, c.Bool("no-tags"))
	if err != nil {
		return imgErr(fmt.Errorf("inspect: %w", err))
	}
	return printJSON(c.App.Writer, info)
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func listTagsAction(c *cli.Context) error {
	if err := imgArgs(c, 1, 1); err != nil {
		return err
	}
	arg := c.Args().First()
	r, err := ref.ParseImage(arg)
	if err != nil {
		return err
	}
	if r.Transport == ref.Docker && (r.Named.Digest != "" || strings.Count(arg[strings.LastIndex(arg, "/")+1:], ":") > 0) {
		return fmt.Errorf("list-tags: %s names a tag or digest; give just the repository", arg)
	}
	opts, err := registryOpts(c, "")
	if err != nil {
		return err
	}
	ctx, cancel := imgContext()
	defer cancel()
	tags, err := image.ListTags(ctx, r, opts)
	if err != nil {
		return imgErr(fmt.Errorf("list-tags: %w", err))
	}
	out := struct {
		Repository string   `json:"Repository"`
		Tags       []string `json:"Tags"`
	}{Tags: tags}
	if r.Named != nil {
		out.Repository = r.Named.Name()
	} else {
		out.Repository = r.Path
	}
	return printJSON(c.App.Writer, out)
}
