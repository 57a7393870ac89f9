package initproc

import (
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/hooks"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func hookState(c *Config, status string) specs.State {
	return specs.State{
		Version: specs.Version, ID: c.ID, Status: specs.ContainerState(status),
		Pid: c.HostPid, Bundle: c.Bundle, Annotations: c.Spec.Annotations,
	}
}

// runHooks runs hooks that live in the container's namespaces
// (createContainer before pivot_root, startContainer after the fifo).
func runHooks(kind string, hs []specs.Hook, c *Config, status string) error {
	return hooks.RunAll(kind, hs, hookState(c, status))
}

func runStartContainerHooks(c *Config) error {
	return runHooks("startContainer", c.Spec.Hooks.StartContainer, c, "created")
}
