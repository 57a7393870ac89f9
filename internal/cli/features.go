package cli

import (
	"encoding/json"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"github.com/urfave/cli"

	"berth/internal/linux/caps"
	"berth/internal/linux/rootfs"
	"berth/internal/linux/seccomp"
)

func boolp(b bool) *bool { return &b }

func init() {
	register(cli.Command{
		Name:      "features",
		Usage:     "show the enabled features",
		ArgsUsage: "",
		Description: `Show the enabled features.
   The result is parsable as a JSON.
   See https://github.com/opencontainers/runtime-spec/blob/main/features.md for the type definition.
   The types are experimental and subject to change.`,
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 0, exactArgs); err != nil {
				return err
			}
			_, apparmor := os.Stat("/sys/kernel/security/apparmor")
			_, selinux := os.Stat("/sys/fs/selinux/enforce")
			f := features.Features{
				OCIVersionMin: "1.0.0",
				OCIVersionMax: specs.Version,
				Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
				MountOptions:  rootfs.KnownOptions(),
				Linux: &features.Linux{
					Namespaces:   []string{"cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"},
					Capabilities: caps.Names(),
					Cgroup: &features.Cgroup{
						V1: boolp(true), V2: boolp(true), Systemd: boolp(true), SystemdUser: boolp(false), Rdma: boolp(true),
					},
					Seccomp:         seccomp.Features(),
					Apparmor:        &features.Apparmor{Enabled: boolp(apparmor == nil)},
					Selinux:         &features.Selinux{Enabled: boolp(selinux == nil)},
					IntelRdt:        &features.IntelRdt{Enabled: boolp(false)},
					MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: boolp(false)}},
					NetDevices:      &features.NetDevices{Enabled: boolp(false)},
				},
				Annotations: map[string]string{
					"org.opencontainers.runc.checkpoint.enabled": "false",
					"dev.berth.version":                          version(),
					"dev.berth.seccomp":                          "pure-Go compiler",
				},
				PotentiallyUnsafeConfigAnnotations: []string{"bundle"},
			}
			b, err := json.MarshalIndent(f, "", "    ")
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(append(b, '\n'))
			return err
		},
	})
}
