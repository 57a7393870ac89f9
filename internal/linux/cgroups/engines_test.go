package cgroups

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// engineConfigs is where internal/spec keeps the configs recorded from
// Docker 20.10, containerd 1.6's CRI plugin and buildah 1.28 (see its
// TestEngineConfigs).
const engineConfigs = "../../spec/testdata/engines"

// TestEngineResources: the resources real engines send are set (create) or
// updated (the docker-*-update files, `docker update`) on both drivers with
// exactly the writes their real values ask for; their "not set" zeros
// write nothing. Device rules are left out of the comparison (the
// conformance cases cover them).
func TestEngineResources(t *testing.T) {
	want := map[string]struct{ v1, v2 map[string]string }{
		"docker-20.10-run.json": {map[string]string{}, map[string]string{}},
		"docker-20.10-run-flags.json": {
			map[string]string{
				"memory/ct/memory.limit_in_bytes": "67108864", "memory/ct/memory.memsw.limit_in_bytes": "134217728",
				"cpu/ct/cpu.shares": "512", "cpu/ct/cpu.cfs_period_us": "100000", "cpu/ct/cpu.cfs_quota_us": "50000", "pids/ct/pids.max": "50",
			},
			map[string]string{
				"ct/memory.max": "67108864", "ct/memory.swap.max": "67108864", "ct/cpu.weight": utoa(SharesToWeight(512)),
				"ct/cpu.max": "50000 100000", "ct/pids.max": "50",
			},
		},
		"docker-20.10-update-limits.json": {
			map[string]string{
				"memory/ct/memory.limit_in_bytes": "104857600", "memory/ct/memory.memsw.limit_in_bytes": "209715200",
				"cpu/ct/cpu.shares": "256", "pids/ct/pids.max": "20",
			},
			map[string]string{
				"ct/memory.max": "104857600", "ct/memory.swap.max": "104857600", "ct/cpu.weight": utoa(SharesToWeight(256)), "ct/pids.max": "20",
			},
		},
		"docker-20.10-update-cpus.json": {
			map[string]string{"cpu/ct/cpu.cfs_period_us": "100000", "cpu/ct/cpu.cfs_quota_us": "150000"},
			map[string]string{"ct/cpu.max": "150000 100000"},
		},
		// containerd gives a sandbox the minimum shares.
		"cri-containerd-1.6-sandbox.json": {map[string]string{"cpu/ct/cpu.shares": "2"}, map[string]string{"ct/cpu.weight": "1"}},
		"cri-containerd-1.6-container-memory.json": {
			map[string]string{"memory/ct/memory.limit_in_bytes": "15728640", "memory/ct/memory.memsw.limit_in_bytes": "15728640"},
			map[string]string{"ct/memory.max": "15728640", "ct/memory.swap.max": "0"},
		},
		"cri-containerd-1.6-container-user.json": {map[string]string{}, map[string]string{}},
		"buildah-1.28-run.json":                  {map[string]string{}, map[string]string{}},
	}
	files, err := filepath.Glob(filepath.Join(engineConfigs, "*.json"))
	if err != nil || len(files) != len(want) {
		t.Fatalf("engine configs %v (%v), want the %d this test knows", files, err, len(want))
	}
	for _, f := range files {
		name := filepath.Base(f)
		w, ok := want[name]
		if !ok {
			t.Fatalf("no expected writes for %s", name)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		update := strings.Contains(name, "-update-")
		r := &specs.LinuxResources{}
		if update {
			err = json.Unmarshal(b, r)
		} else {
			var s specs.Spec
			err = json.Unmarshal(b, &s)
			r = s.Linux.Resources
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r.Devices = nil
		for _, drv := range []string{"v1", "v2"} {
			t.Run(drv+"/"+name, func(t *testing.T) {
				var f *fakeFS
				var m Manager
				var err error
				if drv == "v1" {
					f = newFakeV1(t, "ct")
					m, err = New("/ct", "x", WithRoot(f.root), WithMode(ModeHybrid), fakeMounts(t, f.root))
				} else {
					f = newFakeV2(t, "ct")
					m, err = New("/ct", "x", WithRoot(f.root), WithMode(ModeUnified))
				}
				if err != nil {
					t.Fatal(err)
				}
				set := m.Set
				if update {
					set = m.Update
				}
				if err := set(r); err != nil {
					t.Fatalf("%s of %s: %v", map[bool]string{true: "Update", false: "Set"}[update], name, err)
				}
				exp := w.v1
				if drv == "v2" {
					exp = w.v2
				}
				compareWrites(t, f.diff(t), exp)
			})
		}
	}
}
