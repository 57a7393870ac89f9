package integration

import (
	"os/exec"
	"strings"
	"testing"

	"berth/internal/testutil"
)

// TestDemo runs the README's first command: the whole workflow offline, and
// nothing left behind.
func TestDemo(t *testing.T) {
	testutil.RequireRoot(t)
	out, err := exec.Command(berthBin, "demo").CombinedOutput()
	if err != nil {
		t.Fatalf("berth demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		`hostname "berth-demo", pid 1`,
		"net    namespace",
		"peer 10.231.7.1:7777 says: hello from the peer on the bridge",
		"nothing left behind",
		"demo finished",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "SHARED with the host") {
		t.Errorf("the demo container shares a namespace with the host:\n%s", out)
	}
}
