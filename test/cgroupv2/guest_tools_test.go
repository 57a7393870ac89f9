package cgroupv2

import (
	"os/exec"
	"testing"

	"berth/internal/testutil"
)

// requireGuestTools skips (fails in CI) unless the systemd guest can be
// built and booted here.
func requireGuestTools(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	for _, tool := range []string{"mmdebstrap", "mkfs.ext4", "qemu-system-x86_64", "apt-cache", "unshare", "tar"} {
		_, err := exec.LookPath(tool)
		testutil.Require(t, err == nil, tool+" not found (scripts/apt-packages.txt)")
	}
}
