// Package initproc is the child side of a container start: it runs as
// `berth init` inside the new namespaces, performs the setup steps in order,
// and execs the container process. It never imports lifecycle packages
// (runtime, state, cli, image, network): the child stays small.
package initproc

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Env names the variables the parent sets for `berth init`.
const (
	EnvPipe = "_BERTH_INITPIPE" // fd of the protocol socket (shared with the nsenter constructor)
)

// Config is the Bootstrap message's payload.
type Config struct {
	ID     string      `json:"id"`
	Bundle string      `json:"bundle"`
	Rootfs string      `json:"rootfs"`
	Spec   *specs.Spec `json:"spec"`
	// Process is the process to run: the spec's for init, the exec'd one for exec.
	Process *specs.Process `json:"process"`
	// HostPid is this process as the runtime sees it (hooks get it in the state).
	HostPid int `json:"host_pid"`
	// Exec is true for `exec` processes: join only, no rootfs, no fifo.
	Exec bool `json:"exec"`

	NoPivot      bool `json:"no_pivot"`
	NoNewKeyring bool `json:"no_new_keyring"`
	MountNS      bool `json:"mount_ns"` // the container has a mount namespace (new or joined): build the rootfs in it, as runc does
	NewUTSNS     bool `json:"new_uts_ns"`
	UserNS       bool `json:"user_ns"` // the container has a user namespace (new or joined)
	CgroupNS     bool `json:"cgroup_ns"`
	// UnshareCgroupNS asks init to unshare the cgroup namespace after it was
	// placed in its cgroups (so the namespace root is the container's cgroup).
	UnshareCgroupNS bool              `json:"unshare_cgroup_ns"`
	CgroupPaths     map[string]string `json:"cgroup_paths,omitempty"`
	// WaitPlaced: the parent sends Placed once init's network is wired and
	// its seccomp filter compiled (init is in its cgroups from the start, see
	// cgroups.Join), so init builds its mounts meanwhile. PlacedEarly waits at
	// once (unified hosts, where a cgroup namespace must exist before cgroup2
	// is mounted).
	WaitPlaced  bool `json:"wait_placed"`
	PlacedEarly bool `json:"placed_early"`
	// RunHooks: the parent has prestart/createRuntime hooks; stop and ask.
	RunHooks bool `json:"run_hooks"`

	// File descriptors in the child (-1 when absent).
	FifoFd          int `json:"fifo_fd"`
	ConsoleSocketFd int `json:"console_socket_fd"`
	// KeepFds is how many fds from 3 up stay open across exec (LISTEN_FDS + --preserve-fds).
	KeepFds  int      `json:"keep_fds"`
	ExtraEnv []string `json:"extra_env,omitempty"`
	// Seccomp is compiled by the child from Spec/Process; SeccompDisabled is
	// set when the runtime was asked not to apply it.
	SeccompDisabled bool `json:"seccomp_disabled"`
	// SeccompProgram is the filter the runtime compiled from the spec
	// (seccomp.Filter's binary form); its warnings were logged there.
	SeccompProgram []byte `json:"seccomp_program,omitempty"`
}

// PlacedInfo is the payload of Placed.
type PlacedInfo struct {
	SeccompProgram []byte `json:"seccomp_program,omitempty"`
}

// Ready is the payload of the Ready message.
type Ready struct {
	Warnings []string `json:"warnings,omitempty"`
}
