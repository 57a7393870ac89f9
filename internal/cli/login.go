// login and logout: registry credentials in the auth file (podman's and
// skopeo's, found again by every copy).

package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli"
	"golang.org/x/term"

	"berth/internal/image/ref"
	"berth/internal/image/registry"
)

func init() {
	register(loginCommand())
	register(logoutCommand())
}

func loginCommand() cli.Command {
	return cli.Command{
		Name:      "login",
		Usage:     "log in to a container registry",
		ArgsUsage: "REGISTRY",
		Description: `Checks the credentials against REGISTRY and stores them in the auth file
(--authfile, $REGISTRY_AUTH_FILE, or ${XDG_RUNTIME_DIR}/containers/auth.json,
/run/containers/UID/auth.json for root without XDG_RUNTIME_DIR). Later copies
find them there, then in ~/.config/containers/auth.json and docker's
~/.docker/config.json (including credHelpers and credsStore).

Example:

    # berth login -u me localhost:5000
    # echo "$TOKEN" | berth login -u me --password-stdin quay.io
    # berth login --get-login localhost:5000`,
		Flags: []cli.Flag{
			cli.StringFlag{Name: "username, u", Usage: "user name"},
			cli.StringFlag{Name: "password, p", Usage: "password (visible to other users in ps; prefer --password-stdin)"},
			cli.BoolFlag{Name: "password-stdin", Usage: "read the password from stdin"},
			cli.BoolFlag{Name: "get-login", Usage: "print the user name stored for REGISTRY"},
			cli.StringFlag{Name: "authfile", EnvVar: "REGISTRY_AUTH_FILE", Usage: "auth file to write"},
			cli.BoolTFlag{Name: "tls-verify", Usage: "require HTTPS and verify certificates"},
			cli.StringFlag{Name: "cert-dir", Usage: "directory with *.crt CA files and client *.cert/*.key pairs"},
		},
		Action: loginAction,
	}
}

func logoutCommand() cli.Command {
	return cli.Command{
		Name:      "logout",
		Usage:     "remove stored registry credentials",
		ArgsUsage: "REGISTRY",
		Description: `Removes REGISTRY's entry from the auth file (see login), or every entry with
--all.

Example:

    # berth logout localhost:5000
    # berth logout --all`,
		Flags: []cli.Flag{
			cli.BoolFlag{Name: "all, a", Usage: "remove all credentials"},
			cli.StringFlag{Name: "authfile", EnvVar: "REGISTRY_AUTH_FILE", Usage: "auth file to edit"},
		},
		Action: logoutAction,
	}
}

// loginHost normalises the REGISTRY argument: a URL or a bare host, Docker
// Hub spellings folded to docker.io.
func loginHost(arg string) (string, error) {
	h := strings.TrimPrefix(strings.TrimPrefix(arg, "https://"), "http://")
	h = strings.TrimSuffix(h, "/")
	if strings.HasSuffix(h, "/v1") || strings.HasSuffix(h, "/v2") {
		h = h[:len(h)-3]
	}
	if h == "" {
		return "", errors.New("login: empty registry name")
	}
	switch h {
	case "index.docker.io", "registry-1.docker.io":
		h = ref.DefaultRegistry
	}
	if strings.Contains(h, "/") {
		return "", fmt.Errorf("login: %q: give a registry host, not a repository", arg)
	}
	return h, nil
}

func loginAction(c *cli.Context) error {
	if err := imgArgs(c, 1, 1); err != nil {
		return err
	}
	host, err := loginHost(c.Args().First())
	if err != nil {
		return err
	}
	file := registry.DefaultAuthFile(c.String("authfile"))
	ctx, cancel := imgContext()
	defer cancel()
	if c.Bool("get-login") {
		cr, err := registry.Lookup(ctx, registry.AuthFiles(c.String("authfile")), host, "")
		if err != nil {
			return err
		}
		if cr.Empty() {
			return fmt.Errorf("not logged in to %s", host)
		}
		fmt.Fprintln(c.App.Writer, cr.Username)
		return nil
	}
	user, pass := c.String("username"), c.String("password")
	if c.Bool("password-stdin") {
		if pass != "" {
			return errors.New("login: --password and --password-stdin cannot be combined")
		}
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("login: read password: %w", err)
		}
		pass = strings.TrimRight(line, "\r\n")
	}
	if user == "" {
		return errors.New("login: --username is required")
	}
	if pass == "" {
		if !term.IsTerminal(int(os.Stdin.Fd())) {
			return errors.New("login: no password: use --password-stdin or --password")
		}
		fmt.Fprint(errWriter(c), "Password: ")
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(errWriter(c))
		if err != nil {
			return fmt.Errorf("login: read password: %w", err)
		}
		pass = string(b)
	}
	creds := registry.Credentials{Username: user, Password: pass, Source: "login"}
	opts := registry.Options{Creds: &creds, Insecure: !c.BoolT("tls-verify"), CertDir: c.String("cert-dir"), Retries: 1, UserAgent: "berth/" + Version}
	if err := registry.CheckLogin(ctx, host, opts); err != nil {
		return fmt.Errorf("login to %s: %w", host, err)
	}
	if err := registry.SaveLogin(file, host, creds); err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, "Login Succeeded!")
	return nil
}

func logoutAction(c *cli.Context) error {
	file := registry.DefaultAuthFile(c.String("authfile"))
	if c.Bool("all") {
		if c.NArg() != 0 {
			return errors.New("logout: --all takes no registry argument")
		}
		if err := registry.RemoveLogin(file, ""); err != nil {
			return err
		}
		fmt.Fprintln(c.App.Writer, "Removed login credentials for all registries")
		return nil
	}
	if err := imgArgs(c, 1, 1); err != nil {
		return err
	}
	host, err := loginHost(c.Args().First())
	if err != nil {
		return err
	}
	if err := registry.RemoveLogin(file, host); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "Removed login credentials for %s\n", host)
	return nil
}
