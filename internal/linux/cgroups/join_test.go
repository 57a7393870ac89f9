package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenJoin(t *testing.T) {
	root := t.TempDir()
	paths := map[string]string{}
	for _, c := range []string{"pids", "memory", "name=systemd"} {
		d := filepath.Join(root, strings.TrimPrefix(c, "name="), "ctr")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "tasks"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		paths[c] = d
	}
	paths[""] = filepath.Join(root, "unified", "ctr")
	if err := os.MkdirAll(paths[""], 0o755); err != nil {
		t.Fatal(err)
	}
	j, err := OpenJoin(paths)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tf := range j.Tasks {
		got = append(got, tf.Controller)
		if tf.File.Name() != filepath.Join(paths[tf.Controller], "tasks") {
			t.Errorf("%s: opened %s", tf.Controller, tf.File.Name())
		}
		if _, err := tf.File.WriteString("0"); err != nil {
			t.Errorf("%s: not writable: %v", tf.Controller, err)
		}
	}
	if strings.Join(got, ",") != "memory,name=systemd,pids" {
		t.Errorf("tasks files for %v, want memory, name=systemd, pids in order", got)
	}
	if j.Dir == nil || j.Dir.Name() != paths[""] {
		t.Errorf("v2 dir: %v", j.Dir)
	}
	j.Close()
	if _, err := j.Tasks[0].File.WriteString("0"); err == nil {
		t.Error("Close left a tasks file open")
	}

	// A missing hierarchy directory names the controller, and nothing
	// opened so far stays open.
	os.RemoveAll(paths["pids"])
	if _, err := OpenJoin(paths); err == nil || !strings.Contains(err.Error(), "join pids cgroup") {
		t.Errorf("missing pids cgroup: %v", err)
	}
	var nilJoin *Join
	nilJoin.Close() // no cgroup: a no-op
}
