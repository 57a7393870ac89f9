package state

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// LoadView decodes exactly the config parts other commands read, and a
// state loaded that way can never be saved over the full one.
func TestLoadView(t *testing.T) {
	root := t.TempDir()
	five := int64(5)
	st, err := New(root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	st.InitPid, st.Bundle = 42, "/b"
	st.CgroupPaths = map[string]string{"memory": "/sys/fs/cgroup/memory/c1"}
	st.Config = &specs.Spec{
		Version:     "1.2.0",
		Process:     &specs.Process{Args: []string{"sh"}, Env: []string{"A=1"}, Cwd: "/", User: specs.User{UID: 7}},
		Hooks:       &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}},
		Annotations: map[string]string{"k": "v"},
		Mounts:      []specs.Mount{{Destination: "/proc", Type: "proc"}},
		Linux: &specs.Linux{
			Namespaces:  []specs.LinuxNamespace{{Type: specs.PIDNamespace}},
			Seccomp:     &specs.LinuxSeccomp{DefaultAction: specs.ActAllow},
			Resources:   &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &five}},
			MaskedPaths: []string{"/proc/kcore"},
		},
	}
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	v, err := LoadView(root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if v.InitPid != 42 || v.Bundle != "/b" || v.CgroupPaths["memory"] == "" {
		t.Errorf("state fields lost: %+v", v)
	}
	c := v.Config
	if c.Version != "1.2.0" || !reflect.DeepEqual(c.Process, st.Config.Process) || !reflect.DeepEqual(c.Hooks, st.Config.Hooks) ||
		!reflect.DeepEqual(c.Annotations, st.Config.Annotations) || !reflect.DeepEqual(c.Linux.Namespaces, st.Config.Linux.Namespaces) ||
		!reflect.DeepEqual(c.Linux.Seccomp, st.Config.Linux.Seccomp) {
		t.Errorf("view lost a part it promises: %+v", c)
	}
	if c.Mounts != nil || c.Linux.Resources != nil || c.Linux.MaskedPaths != nil {
		t.Errorf("view decoded more than it promises: %+v", c)
	}
	if err := v.Save(); err == nil {
		t.Fatal("a view was saved")
	}
	full, err := Load(root, "c1")
	if err != nil || full.Config.Linux.Resources == nil || *full.Config.Linux.Resources.Pids.Limit != 5 {
		t.Fatalf("full state after the refused save: %v %+v", err, full)
	}
}
