package oneshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/image/bundle"
	"berth/internal/runtime"
	"berth/internal/state"
)

// ExecOptions are `container exec`'s flags.
type ExecOptions struct {
	Args        []string
	Env         []string // K=V, over the container's
	User        string   // name, uid, name:group, uid:gid, resolved in the container
	Workdir     string
	TTY         bool
	Interactive bool
	Detach      bool
	Privileged  bool
	Stdin       *os.File // used with Interactive
	Stdout      *os.File
	Stderr      *os.File
}

// Exec runs a new process in the running container through the runtime's
// exec: the container's process config (env, user, capabilities, rlimits,
// seccomp) with the options on top. It returns the process's exit status;
// an error carries docker's exit code (ExitCode).
func (c *Container) Exec(o ExecOptions, warn func(string)) (int, error) {
	if len(o.Args) == 0 {
		return 125, errors.New("exec: no command given")
	}
	if o.TTY && o.Detach {
		return 125, errors.New("exec: -t and -d cannot be combined (there is no terminal to attach to later)")
	}
	if s, _ := c.Status(); s != StatusRunning {
		return 125, fmt.Errorf("container %s is %s, not running", c.Meta.Name, s)
	}
	st, err := state.LoadView(c.Meta.Root, c.Meta.Name)
	if err != nil {
		return 125, err
	}
	if st.Config == nil || st.Config.Process == nil {
		return 125, errors.New("container has no process config")
	}
	var p specs.Process
	b, _ := json.Marshal(st.Config.Process)
	_ = json.Unmarshal(b, &p)
	p.Args = o.Args
	p.Terminal = o.TTY
	if o.TTY {
		p.Env = setEnv(p.Env, "TERM=xterm", false)
	}
	if o.User != "" {
		// Resolved in the container's own root, as it is now.
		root := fmt.Sprintf("/proc/%d/root", st.InitPid)
		u, err := bundle.ResolveUser(root, o.User)
		if err != nil {
			return 125, fmt.Errorf("--user %q: %w", o.User, err)
		}
		p.User = specs.User{UID: u.UID, GID: u.GID, AdditionalGids: u.AdditionalGids}
		home := "/"
		if u.Home != "" {
			home = u.Home
		}
		p.Env = setEnv(p.Env, "HOME="+home, true)
	}
	for _, kv := range o.Env {
		if envName(kv) == "" {
			return 125, fmt.Errorf("-e %q: not NAME=VALUE", kv)
		}
		p.Env = setEnv(p.Env, kv, true)
	}
	if o.Workdir != "" {
		if !path.IsAbs(o.Workdir) {
			return 125, fmt.Errorf("--workdir %q must be an absolute path", o.Workdir)
		}
		p.Cwd = o.Workdir
	}
	if o.Privileged {
		set := boundingCaps()
		p.Capabilities = &specs.LinuxCapabilities{Bounding: set, Effective: set, Permitted: set}
	}
	stdin := o.Stdin
	if !o.Interactive || stdin == nil {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return 125, err
		}
		defer null.Close()
		stdin = null
	}
	rt := c.Runtime(warn)
	code, err := rt.Exec(c.Meta.Name, runtime.ExecOptions{
		Process: &p, Detach: o.Detach, Stdin: stdin, Stdout: o.Stdout, Stderr: o.Stderr, KeepONLCR: true,
	})
	if err != nil {
		return ExitCode(err), err
	}
	return code, nil
}
