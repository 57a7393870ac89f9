package integration

import (
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

// §2.B of the security reference: is /proc really procfs?

// TestCVE_2019_16884_BindOverProc: a directory bound over /proc (a volume
// at /proc) would receive the runtime's LSM label and sysctl writes. Create
// must fail; so must any non-procfs mount under /proc except lxcfs' files.
func TestCVE_2019_16884_BindOverProc(t *testing.T) {
	r := newRT(t)
	fake := t.TempDir()
	os.MkdirAll(filepath.Join(fake, "self"), 0o755)
	os.WriteFile(filepath.Join(fake, "self", "status"), []byte("Seccomp: 0\n"), 0o644)
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, []byte("fake\n"), 0o644)
	for _, tt := range []struct {
		name string
		m    specs.Mount
		ok   bool
		want string
	}{
		{"dir over /proc", specs.Mount{Destination: "/proc", Type: "bind", Source: fake, Options: []string{"rbind"}}, false, "not of type proc"},
		{"file under /proc", specs.Mount{Destination: "/proc/sys/kernel/hostname", Type: "bind", Source: file, Options: []string{"bind"}}, false, "inside /proc"},
		{"tmpfs under /proc", specs.Mount{Destination: "/proc/sys", Type: "tmpfs", Source: "tmpfs"}, false, "inside /proc"},
		{"second proc under /proc", specs.Mount{Destination: "/proc/self/attr", Type: "proc", Source: "proc"}, false, "inside /proc"},
		{"lxcfs-style /proc/uptime", specs.Mount{Destination: "/proc/uptime", Type: "bind", Source: file, Options: []string{"bind"}}, true, ""},
	} {
		b := testutil.Bundle(t, func(s *specs.Spec) {
			if tt.m.Destination == "/proc" {
				s.Mounts[0] = tt.m // replaces the procfs mount
			} else {
				s.Mounts = append(s.Mounts, tt.m)
			}
		}, "cat", "/proc/uptime")
		res := r.run("run", "-b", b, r.id())
		if tt.ok {
			if res.code != 0 || res.stdout != "fake\n" {
				t.Errorf("%s: %+v", tt.name, res)
			}
			continue
		}
		if res.code == 0 || !strings.Contains(res.stderr, tt.want) {
			t.Errorf("%s: want a create failure mentioning %q, got %+v", tt.name, tt.want, res)
		}
	}
}

// TestCVE_2023_27561_ProcSymlink: the image's /proc (or /sys) is a symlink.
// procfs must not be mounted through it (CVE-2023-27561, CVE-2023-28642).
func TestCVE_2023_27561_ProcSymlink(t *testing.T) {
	r := newRT(t)
	for _, d := range []string{"proc", "sys"} {
		b := testutil.Bundle(t, nil, "true")
		rootfs := filepath.Join(b, "rootfs")
		os.RemoveAll(filepath.Join(rootfs, d))
		os.MkdirAll(filepath.Join(rootfs, "bad-"+d), 0o755)
		if err := os.Symlink("/bad-"+d, filepath.Join(rootfs, d)); err != nil {
			t.Fatal(err)
		}
		res := r.run("run", "-b", b, r.id())
		if res.code == 0 || !strings.Contains(res.stderr, "must be mounted on ordinary directory") {
			t.Errorf("/%s as a symlink: want create to fail, got %+v", d, res)
		}
		// A symlinked parent directory is the same attack one level up.
		b = testutil.Bundle(t, func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/sys/kernel/evil", Type: "sysfs", Source: "sysfs", Options: []string{"ro"}})
		}, "true")
		os.MkdirAll(filepath.Join(b, "rootfs", "elsewhere", "evil"), 0o755)
		os.RemoveAll(filepath.Join(b, "rootfs", "sys"))
		os.Symlink("/elsewhere", filepath.Join(b, "rootfs", "sys"))
		if res := r.run("run", "-b", b, r.id()); res.code == 0 {
			t.Errorf("sysfs through a symlinked parent: %+v", res)
		}
	}
}

// procRace is the CVE-2019-19921 setup: container B's rootfs lives on a
// volume shared with container A, whose racer exchanges B's /proc directory
// with a symlink to a directory of fake proc files, while B is created
// again and again. B must either be refused, or have procfs mounted on its
// own /proc directory (never on the fake one), and its process must carry
// the seccomp filter and no_new_privs that were asked for. Everything is
// checked from the host: inside B the racer can keep renaming /proc after
// B started, which no runtime can prevent on a shared rootfs.
// check gets B's init pid for extra host-side checks.
func procRace(t *testing.T, mutateB func(*specs.Spec), check func(t *testing.T, pid int) string) {
	r := newRT(t)
	c := newCanary(t)
	probe := buildProbe(t)
	vol := sharedVolume(t)
	// B's rootfs in the volume, with a fake proc next to its /proc.
	brootfs := filepath.Join(vol, "rootfs")
	testutil.BusyboxRootfs(t, brootfs)
	fake := filepath.Join(brootfs, "fakeproc")
	os.MkdirAll(filepath.Join(fake, "self"), 0o755)
	os.MkdirAll(filepath.Join(fake, "sys", "kernel"), 0o755)
	os.WriteFile(filepath.Join(fake, "self", "status"), []byte("Seccomp:\t0\nNoNewPrivs:\t0\n"), 0o644)
	os.WriteFile(filepath.Join(fake, "sys", "kernel", "shm_rmid_forced"), []byte("0\n"), 0o644)
	if err := os.Symlink("/fakeproc", filepath.Join(brootfs, "proc-alt")); err != nil {
		t.Fatal(err)
	}
	// A: the racer, with the volume at /vol.
	a := testutil.Bundle(t, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
	}, "/bin/probe", "exchange", "/vol/rootfs/proc", "/vol/rootfs/proc-alt", "120s", "/vol/stop")
	installProbe(t, probe, filepath.Join(a, "rootfs"))
	aid := r.id()
	x := startRacer(t, r, a, aid, filepath.Join(vol, "stop"))
	waitRunning(t, r, aid)

	bb := t.TempDir()
	s := readSpec(t, a)
	s.Root = &specs.Root{Path: brootfs, Readonly: true}
	s.Mounts = s.Mounts[:len(s.Mounts)-1] // not the volume
	s.Process.Args = []string{"sleep", "60"}
	s.Process.NoNewPrivileges = true
	s.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"kexec_load"}, Action: specs.ActErrno}},
	}
	if mutateB != nil {
		mutateB(s)
	}
	testutil.WriteSpec(t, bb, s)
	n := raceIters(25)
	ran, refused := 0, 0
	var lastRefusal string
	for i := 0; i < n; i++ {
		id := r.id()
		res := r.run("run", "-d", "-b", bb, id)
		if res.code != 0 {
			refused++
			lastRefusal = res.stderr
			r.run("delete", "-f", id)
			continue
		}
		ran++
		pid := initPid(t, r, id)
		waitExeced(t, pid, "sleep")
		if v := statusField(t, pid, "Seccomp"); v != "2" {
			t.Errorf("iteration %d: B runs with Seccomp %s, want 2", i, v)
		}
		if v := statusField(t, pid, "NoNewPrivs"); v != "1" {
			t.Errorf("iteration %d: B runs with NoNewPrivs %s, want 1", i, v)
		}
		mi, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		procOK := false
		for _, l := range strings.Split(string(mi), "\n") {
			f := strings.Fields(l)
			if len(f) < 5 {
				continue
			}
			if strings.HasPrefix(f[4], "/fakeproc") {
				t.Errorf("iteration %d: a mount landed on the fake proc: %s", i, l)
			}
			if (f[4] == "/proc" || f[4] == "/proc-alt") && strings.Contains(l, " - proc ") {
				procOK = true
			}
		}
		if !procOK {
			t.Errorf("iteration %d: B has no procfs on its own /proc:\n%s", i, mi)
		}
		if check != nil {
			if msg := check(t, pid); msg != "" {
				t.Errorf("iteration %d: %s", i, msg)
			}
		}
		r.must("delete", "-f", id)
	}
	x.stop(20 * time.Second)
	log := x.output()
	if !strings.Contains(string(log), "swaps") {
		t.Errorf("racer did not run: %s", log)
	}
	t.Logf("%d creates of B: %d ran with the real procfs, %d refused (last: %s); racer: %s", n, ran, refused, strings.TrimSpace(lastRefusal), strings.TrimSpace(string(log)))
	c.check()
}

// TestCVE_2019_19921_ProcTargetSwap: the race described in procRace.
func TestCVE_2019_19921_ProcTargetSwap(t *testing.T) {
	procRace(t, nil, nil)
}

// TestCVE_2025_52881_SysctlRedirect: the same race with a sysctl in the
// config: the write must reach the kernel (1 in B's ipc namespace, read from
// the host), never the fake file or another procfs file on the host.
func TestCVE_2025_52881_SysctlRedirect(t *testing.T) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		testutil.Require(t, false, "nsenter (util-linux) is not installed")
	}
	procRace(t, func(s *specs.Spec) {
		s.Linux.Sysctl = map[string]string{"kernel.shm_rmid_forced": "1"}
	}, func(t *testing.T, pid int) string {
		out, err := exec.Command(nsenter, "-t", strconv.Itoa(pid), "-i", "cat", "/proc/sys/kernel/shm_rmid_forced").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			return "kernel.shm_rmid_forced in B's ipc namespace: " + strings.TrimSpace(string(out))
		}
		return ""
	})
}

// TestCVE_2025_52881_ProcWritesStillLand: the writes berth now makes through
// its private procfs handle (oom_score_adj, sysctls) still take effect.
// The label writes take the same path but need AppArmor or SELinux, which
// this test machine lacks.
func TestCVE_2025_52881_ProcWritesStillLand(t *testing.T) {
	r := newRT(t)
	adj := 432
	b := testutil.Bundle(t, func(s *specs.Spec) {
		s.Process.OOMScoreAdj = &adj
		s.Linux.Sysctl = map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_forward": "1"}
	}, "sh", "-c", "cat /proc/self/oom_score_adj /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ip_forward")
	if out := r.must("run", "-b", b, r.id()); out != "432\n1\n1\n" {
		t.Errorf("oom_score_adj, shm_rmid_forced, ip_forward in the container:\n%s", out)
	}
	// The same inside a user namespace, where a fresh procfs instance is
	// subject to the kernel's mount_too_revealing rules.
	editSpec(t, b, func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	})
	for d := b; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	if out := r.must("run", "-b", b, r.id()); out != "432\n1\n1\n" {
		t.Errorf("user namespace: oom_score_adj, shm_rmid_forced, ip_forward in the container:\n%s", out)
	}
}
