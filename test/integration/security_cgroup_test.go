package integration

import (
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/testutil"
)

// §2.E (cgroup exposure) and §2.F (masked paths) of the security reference.
// E2 (GHSA-5g49-rx9x-qfc6, "../" in unified keys) is pinned where the file
// names are checked: internal/linux/cgroups' conformance suite.

// TestCVE_2023_25809_CgroupMountReadOnly: every cgroup mount the container
// sees is read-only (with and without a cgroup namespace), and container
// root cannot move itself into another cgroup through it.
func TestCVE_2023_25809_CgroupMountReadOnly(t *testing.T) {
	r := newRT(t)
	for _, cgns := range []bool{true, false} {
		b := testutil.Bundle(t, func(s *specs.Spec) {
			if !cgns {
				dropNS(s, specs.CgroupNamespace)
			}
		}, "sh", "-c", "grep -E ' - (cgroup|cgroup2) ' /proc/self/mountinfo; for f in /sys/fs/cgroup/*/cgroup.procs /sys/fs/cgroup/cgroup.procs; do [ -e $f ] && (echo $$ > $f) 2>/dev/null && echo WROTE $f; done; true")
		out := r.must("run", "-b", b, r.id())
		lines := 0
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasPrefix(l, "WROTE") {
				t.Errorf("cgroupns=%v: container root wrote a cgroup file: %s", cgns, l)
				continue
			}
			f := strings.Fields(l)
			if len(f) < 6 {
				continue
			}
			lines++
			if !strings.HasPrefix(f[5], "ro,") && f[5] != "ro" {
				t.Errorf("cgroupns=%v: cgroup mount is not read-only: %s", cgns, l)
			}
		}
		if lines == 0 {
			t.Errorf("cgroupns=%v: no cgroup mounts in the container:\n%s", cgns, out)
		}
	}
}

// TestCVE_2022_0492_ReleaseAgent: with the default config, container root
// that makes a user+cgroup namespace and mounts a v1 hierarchy must not be
// able to set release_agent (which the kernel runs as host root).
func TestCVE_2022_0492_ReleaseAgent(t *testing.T) {
	r := newRT(t)
	probe := buildProbe(t)
	b := testutil.Bundle(t, nil, "/bin/probe", "cgroupescape", "/dev/shm/cg")
	installProbe(t, probe, filepath.Join(b, "rootfs"))
	res := r.run("run", "-b", b, r.id())
	if strings.Contains(res.stdout, "RELEASE-AGENT-WRITTEN") {
		t.Errorf("release_agent was writable from the container:\n%s", res.stdout)
	}
	if res.stdout == "" {
		t.Errorf("probe printed nothing: %+v", res)
	}
	t.Logf("probe: %s", strings.ReplaceAll(strings.TrimSpace(res.stdout), "\n", "; "))
}

// TestMaskedPathsDefault (§2.F1, masked-path side channels): with the
// default spec every masked path reads empty or is refused, masks cannot be
// unmounted, masked directories are read-only, and the read-only paths
// refuse writes (sysrq-trigger above all).
func TestMaskedPathsDefault(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil)
	s := readSpec(t, b)
	var script strings.Builder
	for _, p := range s.Linux.MaskedPaths {
		// Files read empty (dev/null); directories are an empty tmpfs.
		script.WriteString("if [ -d " + p + " ]; then n=$(ls -A " + p + " | wc -l); touch " + p + "/x 2>/dev/null && echo WRITABLE " + p + "; else n=$(head -c 64 " + p + " 2>/dev/null | wc -c); fi; [ \"$n\" = 0 ] || echo LEAK " + p + " $n; umount " + p + " 2>/dev/null && echo UNMOUNTED " + p + ";\n")
	}
	for _, p := range s.Linux.ReadonlyPaths {
		script.WriteString("[ -f " + p + " ] && (echo x > " + p + ") 2>/dev/null && echo WROTE " + p + ";\n")
	}
	script.WriteString("(echo 1 > /proc/sys/kernel/shm_rmid_forced) 2>/dev/null && echo WROTE sysctl; echo checked\n")
	editArgs(t, b, "sh", "-c", script.String())
	out := r.must("run", "-b", b, r.id())
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "checked" {
			t.Errorf("masked/readonly path not protected: %s", l)
		}
	}
	if !strings.HasSuffix(out, "checked\n") {
		t.Errorf("script did not finish: %q", out)
	}
}
