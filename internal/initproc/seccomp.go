package initproc

import (
	"errors"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// seccompFilter is a compiled filter and when to load it: "late" (right
// before execve, after no_new_privs) unless the process lacks no_new_privs,
// in which case it loads while init still holds CAP_SYS_ADMIN.
type seccompFilter struct {
	late bool
	load func() error
}

// compileSeccomp compiles the container's seccomp profile once, before
// Ready, so a bad profile fails `create` with a clear error.
func compileSeccomp(c *Config, p *specs.Process) (*seccompFilter, []string, error) {
	if c.SeccompDisabled || c.Spec.Linux == nil || c.Spec.Linux.Seccomp == nil {
		return nil, nil, nil
	}
	return nil, nil, errors.New("seccomp is not supported yet")
}
