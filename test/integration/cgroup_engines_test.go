package integration

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/testutil"
)

// TestCgroupEngineUnsetValues: the resources Docker puts in every config
// (cpu.shares 0, blockIO.weight 0, memory.disableOOMKiller false, and a
// swappiness of -1 as 2^64-1) and sends with `docker update` (period, quota,
// memory limit, reservation and kernel 0) mean "not set", as in runc: the
// container starts, the unset knobs keep their defaults, and an update with
// one real value changes only that.
func TestCgroupEngineUnsetValues(t *testing.T) {
	r := newRT(t)
	zero, zero16, no, unset := uint64(0), uint16(0), false, uint64(math.MaxUint64)
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Linux.Resources.CPU = &specs.LinuxCPU{Shares: &zero, RealtimePeriod: &zero}
		s.Linux.Resources.BlockIO = &specs.LinuxBlockIO{Weight: &zero16}
		s.Linux.Resources.Memory = &specs.LinuxMemory{DisableOOMKiller: &no, Swappiness: &unset}
	}, "sleep", "100")
	id := r.id()
	r.must("run", "-d", "-b", b, id)
	pid := initPid(t, r, id)
	weight, shareFile := "1024", "cpu.shares"
	if unified() {
		weight, shareFile = "100", "cpu.weight"
	}
	if v := readTrim(t, filepath.Join(cgroupDir(t, pid, "cpu"), shareFile)); v != weight {
		t.Errorf("%s = %s, want the default %s (shares 0 is unset)", shareFile, v, weight)
	}
	limit := int64(100 << 20)
	upd, err := json.Marshal(specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: &zero, Period: &zero, Quota: new(int64)},
		Memory: &specs.LinuxMemory{Limit: &limit, Reservation: new(int64), Kernel: new(int64)},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "resources.json")
	if err := os.WriteFile(f, upd, 0o644); err != nil {
		t.Fatal(err)
	}
	r.must("update", "--resources", f, id)
	memFile := "memory.limit_in_bytes"
	if unified() {
		memFile = "memory.max"
	}
	if v := readTrim(t, filepath.Join(cgroupDir(t, pid, "memory"), memFile)); v != strconv.FormatInt(limit, 10) {
		t.Errorf("%s after update = %s, want %d", memFile, v, limit)
	}
	if v := readTrim(t, filepath.Join(cgroupDir(t, pid, "cpu"), shareFile)); v != weight {
		t.Errorf("%s after an update with shares 0 = %s, want %s", shareFile, v, weight)
	}
	r.must("delete", "-f", id)
}

// TestCgroupStrayHierarchyDirs (issue 15): an empty directory on the
// /sys/fs/cgroup tmpfs with a controller's name is not a v1 hierarchy. The
// test builds that host in a private mount namespace — a new tmpfs on
// /sys/fs/cgroup holding bind mounts of the real hierarchies, plus an empty
// directory for every controller of /proc/cgroups that has none (what
// runc's test helpers mkdir, and what Debian's runc 1.1 leaves behind) — so
// the real /sys/fs/cgroup is never touched. runc finds hierarchies in
// /proc/self/mountinfo; berth must too, and run containers there.
func TestCgroupStrayHierarchyDirs(t *testing.T) {
	testutil.RequireRoot(t)
	if unified() {
		t.Skip("v1 hierarchies only: the host is cgroup v2")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed")
	}
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sh", "-c", "cat /proc/self/cgroup")
	stage := t.TempDir()
	id := r.id()
	script := `set -e
stage=$1; berth=$2; root=$3; bundle=$4; id=$5
mkdir -p "$stage/orig"
mount --rbind /sys/fs/cgroup "$stage/orig"
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
for d in "$stage"/orig/*; do
	n=${d##*/}
	if [ -L "$d" ]; then ln -s "$(readlink "$d")" "/sys/fs/cgroup/$n"; continue; fi
	mkdir "/sys/fs/cgroup/$n"
	if mountpoint -q "$d"; then mount --rbind "$d" "/sys/fs/cgroup/$n"; fi
done
umount -l "$stage/orig"
stray=""
for c in $(awk 'NR > 1 { print $1 }' /proc/cgroups); do
	if [ ! -e "/sys/fs/cgroup/$c" ]; then mkdir "/sys/fs/cgroup/$c"; stray="$stray $c"; fi
done
echo "stray:$stray"
"$berth" --root "$root" run -b "$bundle" "$id"
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", stage, berthBin, r.root, b, id)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("timed out: %s", out)
	}
	if err != nil {
		t.Fatalf("berth run with stray cgroup directories: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "stray: ") {
		t.Fatalf("the test made no stray directory (every controller of /proc/cgroups has a hierarchy?):\n%s", out)
	}
	if !strings.Contains(string(out), ":memory:/") {
		t.Fatalf("the container's /proc/self/cgroup lacks its memory cgroup:\n%s", out)
	}
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
