package mobyprofile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	moby "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"berth/internal/linux/seccomp"
)

// dockerCaps is docker's default capability set.
var dockerCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

func dockerProfile(t testing.TB, caps []string) *specs.LinuxSeccomp {
	t.Helper()
	spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
	p, err := moby.GetDefaultProfile(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The profile docker would pass to runc on this host compiles, small.
func TestCompileMobyDefault(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps []string
	}{{"default caps", dockerCaps}, {"CAP_SYS_ADMIN too", append(slices.Clone(dockerCaps), "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_BPF", "CAP_PERFMON")}} {
		t.Run(tc.name, func(t *testing.T) {
			p := dockerProfile(t, tc.caps)
			f, err := seccomp.Compile(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d syscall entries, archs %v: %d BPF instructions, warnings %q", len(p.Syscalls), p.Architectures, f.Len(), f.Warnings())
			if f.Len() > 1000 {
				t.Fatalf("%d instructions", f.Len())
			}
		})
	}
}

// libseccomp arch names used in the profile's includes/excludes.
var scmpName = map[specs.Arch]string{
	specs.ArchX86_64: "amd64", specs.ArchX86: "x86", specs.ArchAARCH64: "arm64", specs.ArchARM: "arm",
	specs.ArchMIPS64: "mips64", specs.ArchMIPSEL64: "mipsel64", specs.ArchMIPS64N32: "mips64n32",
	specs.ArchMIPSEL64N32: "mips3l64n32", specs.ArchS390X: "s390x", specs.ArchS390: "s390",
	specs.ArchRISCV64: "riscv64", specs.ArchLOONGARCH64: "loongarch64", specs.ArchPPC64LE: "ppc64le",
}

// render is a reduced version of what docker does on another host: pick
// the archMap entry, filter rules by arch and capability (kernel version
// checks are treated as satisfied).
func render(native specs.Arch, caps []string) (*specs.LinuxSeccomp, error) {
	prof := moby.DefaultProfile()
	out := prof.LinuxSeccomp
	out.Syscalls = nil
	found := false
	for _, a := range prof.ArchMap {
		if a.Arch == native {
			found = true
			for _, sub := range a.SubArches {
				if _, ok := seccomp.SyscallNumber(sub, "read"); ok {
					out.Architectures = append(out.Architectures, sub)
				}
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("no archMap entry for %s", native)
	}
	arch := scmpName[native]
	for _, c := range prof.Syscalls {
		if ex := c.Excludes; ex != nil {
			if slices.Contains(ex.Arches, arch) || slices.ContainsFunc(ex.Caps, func(s string) bool { return slices.Contains(caps, s) }) {
				continue
			}
		}
		if in := c.Includes; in != nil {
			if len(in.Arches) > 0 && !slices.Contains(in.Arches, arch) {
				continue
			}
			if slices.ContainsFunc(in.Caps, func(s string) bool { return !slices.Contains(caps, s) }) {
				continue
			}
		}
		out.Syscalls = append(out.Syscalls, c.LinuxSyscall)
	}
	return &out, nil
}

// Gate from the security reference: the moby default profile loads on all
// target arches. Here: it compiles for each of them (sub-arches without a
// berth syscall table, MIPS n32, are left out with the reason logged).
func TestCompileMobyDefaultAllArches(t *testing.T) {
	var natives []specs.Arch
	for _, a := range moby.DefaultProfile().ArchMap {
		natives = append(natives, a.Arch)
	}
	if len(natives) < 5 {
		t.Fatalf("archMap has only %v", natives)
	}
	for _, native := range natives {
		if _, ok := seccomp.SyscallNumber(native, "read"); !ok {
			t.Logf("%s: no berth syscall table, skipped", native)
			continue
		}
		p, err := render(native, dockerCaps)
		if err != nil {
			t.Fatal(err)
		}
		f, err := seccomp.Compile(p, seccomp.WithNativeArch(native))
		if err != nil {
			t.Fatalf("%s: %v", native, err)
		}
		t.Logf("%s %v: %d instructions, %d warnings", native, p.Architectures, f.Len(), len(f.Warnings()))
	}
}

const envHelper = "BERTH_MOBY_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) == "1" {
		os.Exit(helper())
	}
	os.Exit(m.Run())
}

type outcome struct {
	Name  string
	Ret   uint64
	Errno int
}

// helper loads docker's profile (default caps) and reports what a few
// telling syscalls do under it, then execs a real program.
func helper() int {
	p, err := moby.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: dockerCaps}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	f, err := seccomp.Compile(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	if _, err := f.Load(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	calls := []struct {
		name string
		nr   uintptr
		args [3]uintptr
	}{
		{"getppid", unix.SYS_GETPPID, [3]uintptr{}},
		{"socket(AF_UNIX)", unix.SYS_SOCKET, [3]uintptr{unix.AF_UNIX, unix.SOCK_STREAM | unix.SOCK_CLOEXEC}},
		{"socket(AF_ALG)", unix.SYS_SOCKET, [3]uintptr{unix.AF_ALG, unix.SOCK_SEQPACKET}},
		{"clone3", unix.SYS_CLONE3, [3]uintptr{}},
		{"unshare", unix.SYS_UNSHARE, [3]uintptr{unix.CLONE_NEWNS}},
		{"keyctl", unix.SYS_KEYCTL, [3]uintptr{}},
		{"personality(0xffffffff)", unix.SYS_PERSONALITY, [3]uintptr{0xffffffff}},
		{"personality(0x4000)", unix.SYS_PERSONALITY, [3]uintptr{0x4000}},
		{"nr 1023", 1023, [3]uintptr{}},
	}
	var res []outcome
	for _, c := range calls {
		r, _, e := unix.Syscall(c.nr, c.args[0], c.args[1], c.args[2])
		res = append(res, outcome{c.name, uint64(r), int(e)})
	}
	err = exec.Command("/bin/sh", "-c", "exit 7").Run()
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	res = append(res, outcome{Name: "exec sh", Ret: uint64(code)})
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

func TestLoadMobyDefault(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("expectations use x86_64 behaviour")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v; stderr: %s", err, stderr.String())
	}
	var res []outcome
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := map[string]outcome{}
	for _, r := range res {
		got[r.Name] = r
	}
	want := map[string]int{
		"getppid":                 0,
		"socket(AF_UNIX)":         0,
		"socket(AF_ALG)":          int(unix.EPERM),
		"clone3":                  int(unix.ENOSYS), // so glibc falls back to clone
		"unshare":                 int(unix.EPERM),
		"keyctl":                  int(unix.EPERM),
		"personality(0xffffffff)": 0,
		"personality(0x4000)":     int(unix.EPERM),
		"nr 1023":                 int(unix.ENOSYS), // newer than the profile
	}
	for name, errno := range want {
		if r, ok := got[name]; !ok || r.Errno != errno {
			t.Errorf("%s: %+v, want errno %d", name, r, errno)
		}
	}
	if r := got["exec sh"]; r.Ret != 7 {
		t.Errorf("/bin/sh under the profile: %+v, want exit 7", r)
	}
}
