package cgroupv2

// The systemd guest's root: Debian bookworm from Debian's mirror, built by
// mmdebstrap into an ext4 image and cached under /var/cache/berth-test,
// keyed by the recipe and the versions apt would install now, so only the
// first run (or a package update) pays for the build. The guest boots it
// read-only in spirit: qemu's snapshot=on sends every write to a temporary
// overlay, so the cached image never changes.

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// imageRecipe changes whenever the build below does.
const imageRecipe = "2"

// guestPackages are what the guest suites need besides minbase: systemd as
// pid 1 with D-Bus and udev (the /dev/block links systemd's IO properties
// resolve), the runtimes and clients compared with berth, and busybox for
// the containers' root filesystems.
var guestPackages = []string{
	"systemd", "systemd-sysv", "dbus", "udev", "kmod",
	"runc", "containerd", "podman", "conmon", "crun",
	"busybox-static", "iproute2", "procps", "util-linux", "bsdutils",
}

// imageCacheRoot holds the built images (shared with test/integration's
// Debian images, each under its own name).
const imageCacheRoot = "/var/cache/berth-test"

// guestUnit runs the suites once the system is up: the payload disk holds
// run.sh, the binaries and the images; results go to the second serial port;
// the guest powers off when the unit ends, however it ends.
// Delegate=yes gives the suites a cgroup subtree of their own, as a
// container engine's service has.
const guestUnit = `[Unit]
Description=berth guest suites
After=multi-user.target dbus.service
Wants=dbus.service
RequiresMountsFor=/mnt/payload

[Service]
Type=oneshot
Delegate=yes
ExecStart=/bin/sh /mnt/payload/run.sh
# Whatever happened, the guest ends (and with it qemu).
ExecStopPost=/bin/systemctl --force --force poweroff
StandardOutput=file:/dev/ttyS1
StandardError=inherit
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
`

// imageHook prepares the root: the payload mount, the suites' unit, and no
// service the suites do not need (timers, the packaged daemons: the suites
// start their own containerd), so the slow emulated guest spends its time on
// the suites.
const imageHook = `set -e
r="$1"
echo berth-guest > "$r/etc/hostname"
mkdir -p "$r/mnt/payload"
echo '/dev/vdb /mnt/payload ext4 ro,nofail 0 0' >> "$r/etc/fstab"
cat > "$r/etc/systemd/system/berth-guest.service" <<'EOF'
` + guestUnit + `EOF
ln -sf /etc/systemd/system/berth-guest.service "$r/etc/systemd/system/multi-user.target.wants/berth-guest.service"
for u in containerd.service apt-daily.timer apt-daily-upgrade.timer fstrim.timer e2scrub_all.timer man-db.timer \
	logrotate.timer systemd-tmpfiles-clean.timer podman-auto-update.timer podman-restart.service \
	serial-getty@ttyS0.service serial-getty@ttyS1.service getty@tty1.service systemd-timesyncd.service \
	systemd-networkd.service systemd-resolved.service; do
	ln -sf /dev/null "$r/etc/systemd/system/$u"
done
# The journal stays in memory; no console spam from it.
mkdir -p "$r/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' > "$r/etc/systemd/journald.conf.d/berth.conf"
`

// guestImage returns the cached root image, building it if needed.
func guestImage(t *testing.T) string {
	t.Helper()
	key := imageKey()
	dir := filepath.Join(imageCacheRoot, "systemd-guest-"+key)
	img := filepath.Join(dir, "root.img")
	if _, err := os.Stat(img); err == nil {
		return img
	}
	if err := os.MkdirAll(imageCacheRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(imageCacheRoot, ".lock-systemd-guest"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(img); err == nil {
		return img
	}
	old, _ := filepath.Glob(filepath.Join(imageCacheRoot, "systemd-guest-*"))
	for _, o := range old {
		os.RemoveAll(o)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	hook := filepath.Join(work, "hook.sh")
	if err := os.WriteFile(hook, []byte(imageHook), 0o644); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(work, "root.tar")
	args := []string{"--mount", "--propagation", "private", "mmdebstrap", "--variant=minbase",
		"--include=" + strings.Join(guestPackages, ","),
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/info/*",
		"--customize-hook=sh " + hook + ` "$1"`, "bookworm", tarball}
	for _, src := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		if b, err := os.ReadFile(src); err == nil && strings.Contains(string(b), "debian") {
			args = append(args, src)
			break
		}
	}
	start := time.Now()
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		tail := string(out)
		if len(tail) > 3000 {
			tail = tail[len(tail)-3000:]
		}
		t.Fatalf("mmdebstrap: %v\n%s", err, tail)
	}
	t.Logf("mmdebstrap (%d packages): %v", len(guestPackages), time.Since(start).Round(time.Second))
	// The tarball becomes an ext4 image with 3 GiB to spare for the suites'
	// containers and images (the file is sparse).
	rootDir := filepath.Join(work, "root")
	if err := os.Mkdir(rootDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", rootDir, "--numeric-owner", "-xpf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("unpack the root: %v\n%s", err, out)
	}
	os.Remove(tarball)
	tmpImg := filepath.Join(work, "root.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "berthroot", "-E", "root_owner=0:0", "-d", rootDir, tmpImg, "4G").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if err := os.Rename(tmpImg, img); err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd guest image built in %v, cached as %s", time.Since(start).Round(time.Second), img)
	return img
}

// imageKey names a build by the recipe and the candidate versions of the
// packages (and of the base system).
func imageKey() string {
	h := sha256.New()
	fmt.Fprint(h, imageRecipe, "\n", strings.Join(guestPackages, ","), "\n", imageHook)
	out, _ := exec.Command("apt-cache", append([]string{"policy"}, append(guestPackages, "libc6", "base-files", "libsystemd0")...)...).Output()
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasSuffix(l, ":") || strings.HasPrefix(l, "Candidate:") {
			fmt.Fprintln(h, l)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// TestSystemdGuestImage builds (or finds) the cached image on its own, so
// the build's time shows apart from the guest's.
func TestSystemdGuestImage(t *testing.T) {
	requireGuestTools(t)
	start := time.Now()
	img := guestImage(t)
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Stat(img, &st)
	t.Logf("image %s: %d MiB apparent, %d MiB used, ready in %v", img, fi.Size()>>20, st.Blocks*512>>20, time.Since(start).Round(time.Millisecond))
}
