package clients

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"berth/internal/testutil"
)

// bah is buildah (Debian's 1.28) with private storage, run dir, tmp dir and
// configuration. Every run and build step has --network none, and the
// private containers.conf names no network config dir with anything in it:
// buildah's default for root is a CNI/netavark bridge on the host, with NAT
// rules and ip_forward switched on.
type bah struct {
	t   *testing.T
	dir string
	env []string
}

// buildahRuntimes: the runtime under test (the wrapper) and Debian's runc
// as the reference, each with its own state root.
func buildahRuntimes() map[string]string {
	return map[string]string{"berth": runtimeBin, "runc": "/usr/sbin/runc"}
}

func startBuildah(t *testing.T) *bah {
	t.Helper()
	dir, err := os.MkdirTemp("", "bbah-")
	if err != nil {
		t.Fatal(err)
	}
	b := &bah{t: t, dir: dir}
	// buildah makes podman's network run dir even with --network none.
	removeIfCreated(t, "/run/containers", "/run/containers/networks")
	for _, d := range []string{"tmp", "net", "cni"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"containers.conf": fmt.Sprintf("[containers]\nnetns = \"none\"\ndefault_ulimits = [\"nofile=1024:4096\"]\n[network]\nnetwork_config_dir = %q\ncni_plugin_dirs = [%q]\n",
			filepath.Join(dir, "net"), filepath.Join(dir, "cni")),
		"storage.conf":    fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n", filepath.Join(dir, "runroot"), filepath.Join(dir, "root")),
		"registries.conf": "unqualified-search-registries = []\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.env = []string{
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(dir, "registries.conf"),
		// Bundles go to TMPDIR (default /var/tmp).
		"TMPDIR=" + filepath.Join(dir, "tmp"),
		"BUILDAH_ISOLATION=oci",
	}
	t.Cleanup(func() {
		b.t = t
		b.buildah("rm", "--all")
		for rt, bin := range buildahRuntimes() {
			deleteRuntimeContainers(bin, filepath.Join(dir, "state-"+rt))
		}
		b.buildah("rmi", "--all", "--force")
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	})
	b.must("pull", "docker-archive:"+berthArchive(t, t.TempDir(), imageTag))
	return b
}

// argv is a buildah command line with the suite's storage.
func (b *bah) argv(args ...string) []string {
	return append([]string{"buildah", "--root", filepath.Join(b.dir, "root"), "--runroot", filepath.Join(b.dir, "runroot"),
		"--storage-driver", "vfs"}, args...)
}

// runtimeFlags point buildah's run and bud at rt with its own state root.
func (b *bah) runtimeFlags(rt string) []string {
	return []string{"--runtime", buildahRuntimes()[rt], "--runtime-flag", "root=" + filepath.Join(b.dir, "state-"+rt), "--network", "none"}
}

func (b *bah) buildah(args ...string) result {
	return runCmdIO(b.t, b.dir, b.env, "", nil, b.argv(args...)...)
}

func (b *bah) must(args ...string) result {
	b.t.Helper()
	r := b.buildah(args...)
	if r.code != 0 {
		b.t.Fatalf("buildah failed:\n%s", r)
	}
	return r
}

// containerfile builds on the test image with RUN steps that see the
// USER and WORKDIR set before them.
const containerfile = `FROM ` + imageTag + `
RUN mkdir -p /app && echo built > /app/marker && chown 65534:65534 /app
WORKDIR /app
USER 65534
RUN id -u > /app/whoami && pwd > /app/where
CMD ["sh", "-c", "cat /app/marker /app/whoami /app/where; id -u; pwd"]
`

// builtOutput is what the committed image's CMD prints.
const builtOutput = "built\n65534\n/app\n65534\n/app\n"

func TestBuildah(t *testing.T) {
	testutil.RequireRoot(t)
	requireTool(t, "buildah", "runc", "script")
	b := startBuildah(t)
	for _, rt := range []string{"berth", "runc"} {
		t.Run(rt, func(t *testing.T) {
			b.t = t
			ctr := rt + "-work"
			b.must("from", "--name", ctr, imageTag)

			t.Run("RunNoTTY", func(t *testing.T) {
				b.t = t
				r := b.buildah(append(append([]string{"run"}, b.runtimeFlags(rt)...), ctr, "--", "sh", "-c", "echo out; echo err >&2; exit 3")...)
				if r.code != 3 || strings.TrimSpace(r.stdout) != "out" || !strings.Contains(r.stderr, "err") {
					t.Fatalf("buildah run: want exit 3, stdout out, stderr err:\n%s", r)
				}
				if rt == "berth" && (!strings.Contains(r.trace, "'create' '--bundle'") || !strings.Contains(r.trace, "'delete'")) {
					t.Fatalf("buildah run did not create and delete through the runtime under test:\n%s", r)
				}
			})

			t.Run("RunTTY", func(t *testing.T) {
				b.t = t
				argv := b.argv(append(append([]string{"run", "-t"}, b.runtimeFlags(rt)...), ctr, "--", "sh", "-c", "tty; echo hi-tty; exit 4")...)
				r := runCmdIO(t, b.dir, b.env, "", nil, inPty("env "+shellQuote(b.env)+" "+shellQuote(argv))...)
				if r.code != 4 || !strings.Contains(r.stdout, "/dev/pts/") || !strings.Contains(r.stdout, "hi-tty") {
					t.Fatalf("buildah run -t: want exit 4, a pts name and hi-tty:\n%s", r)
				}
				if rt == "berth" && !strings.Contains(r.trace, "'--console-socket'") {
					t.Fatalf("buildah run -t gave the runtime no --console-socket:\n%s", r)
				}
			})

			t.Run("BudAndRunCommitted", func(t *testing.T) {
				b.t = t
				ctx := t.TempDir()
				if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(containerfile), 0o644); err != nil {
					t.Fatal(err)
				}
				tag := "localhost/built-" + rt + ":1"
				r := b.buildah(append(append([]string{"bud"}, b.runtimeFlags(rt)...), "-t", tag, ctx)...)
				if r.code != 0 || !strings.Contains(r.stdout, "COMMIT "+tag) {
					t.Fatalf("buildah bud: want the image committed:\n%s", r)
				}
				if rt == "berth" && strings.Count(r.trace, "'create' '--bundle'") != 2 {
					t.Fatalf("buildah bud should run both RUN steps through the runtime under test:\n%s", r)
				}
				// The committed image runs: in buildah (its USER and
				// WORKDIR applied by buildah) ...
				built := rt + "-built"
				b.must("from", "--name", built, tag)
				r = b.buildah(append(append([]string{"run"}, b.runtimeFlags(rt)...), built, "--", "sh", "-c", "cat /app/marker /app/whoami /app/where; id -u; pwd")...)
				if r.code != 0 || r.stdout != builtOutput {
					t.Fatalf("buildah run of the built image: want %q:\n%s", builtOutput, r)
				}
				// ... and as a bundle berth unpacks from it, run by the
				// runtime under test (the image config's user, cwd and
				// CMD become the bundle's process).
				layout := filepath.Join(t.TempDir(), "layout")
				b.must("push", tag, "oci:"+layout+":1")
				bundle := filepath.Join(t.TempDir(), "bundle")
				if out, err := exec.Command(berthBin, "unpack", "--image", layout+":1", "--terminal", "false", bundle).CombinedOutput(); err != nil {
					t.Fatalf("berth unpack of the image buildah committed: %v\n%s", err, out)
				}
				bin := buildahRuntimes()[rt]
				root := t.TempDir()
				cmd := exec.Command(bin, "--root", root, "run", "built")
				cmd.Dir = bundle
				out, err := cmd.CombinedOutput()
				_ = exec.Command(bin, "--root", root, "delete", "--force", "built").Run()
				if err != nil || string(out) != builtOutput {
					t.Fatalf("%s run of the unpacked image: %v, want %q, got %q", bin, err, builtOutput, out)
				}
			})
		})
	}
}
