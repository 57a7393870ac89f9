package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli"
)

// Shell completion asks the binary itself (urfave/cli's hidden
// --generate-bash-completion flag), so it always matches this build.
const bashCompletion = `# bash completion for berth; load with: source <(berth completion bash)
_berth_complete() {
	local cur words
	cur="${COMP_WORDS[COMP_CWORD]}"
	words=("${COMP_WORDS[@]:0:COMP_CWORD}")
	if [[ "$cur" == -* ]]; then
		COMPREPLY=($(compgen -W "$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)" -- "$cur"))
	else
		COMPREPLY=($(compgen -W "$("${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
	fi
}
complete -o bashdefault -o default -F _berth_complete berth
`

const zshCompletion = `#compdef berth
# zsh completion for berth; load with: source <(berth completion zsh)
_berth() {
	local -a opts
	opts=("${(@f)$(${words[@]:0:#words[@]-1} ${words[-1]} --generate-bash-completion 2>/dev/null)}")
	_describe 'values' opts
}
compdef _berth berth
`

// mdEscape keeps "<container-id>" from reading as an HTML tag in markdown.
func mdEscape(s string) string { return strings.NewReplacer("<", `\<`, ">", `\>`).Replace(s) }

func init() {
	register(cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash or zsh)",
		ArgsUsage: "bash|zsh",
		Description: `Prints a completion script that asks berth itself what can come next.

Examples:
   source <(berth completion bash)
   berth completion zsh > "${fpath[1]}/_berth"`,
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				fmt.Print(bashCompletion)
			case "zsh":
				fmt.Print(zshCompletion)
			default:
				return errors.New("completion: name a shell: bash or zsh")
			}
			return nil
		},
	})
	register(cli.Command{
		Name:  "man",
		Usage: "write man pages: berth(8) and one per command, generated from the CLI",
		Description: `Writes berth.8 and berth-COMMAND.8 for every command into --dir, from the same
definitions --help prints, so they never drift.

Example:
   berth man --dir /usr/local/share/man/man8 && man berth-run`,
		Flags: []cli.Flag{cli.StringFlag{Name: "dir", Value: ".", Usage: "directory to write the pages into"}},
		Action: func(c *cli.Context) error {
			dir := c.String("dir")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			pages := map[string]*cli.App{"berth": c.App}
			for _, cmd := range c.App.Commands {
				if cmd.Hidden || cmd.Name == "help" {
					continue
				}
				sub := cli.NewApp()
				sub.Name = c.App.Name + "-" + cmd.Name
				sub.Usage = cmd.Usage
				// The man template puts Description in the title line and
				// UsageText under DESCRIPTION.
				sub.Description = ""
				sub.UsageText = mdEscape(c.App.Name + " " + cmd.Name + " [command options] " + cmd.ArgsUsage + "\n\n" + cmd.Description)
				sub.Flags = cmd.Flags
				sub.Commands = cmd.Subcommands
				sub.HideVersion = true
				pages[sub.Name] = sub
			}
			for name, app := range pages {
				page, err := app.ToMan()
				if err != nil {
					return fmt.Errorf("man page for %s: %w", name, err)
				}
				if err := os.WriteFile(filepath.Join(dir, name+".8"), []byte(page), 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(c.App.Writer, "wrote %d man pages to %s\n", len(pages), dir)
			return nil
		},
	})
}
