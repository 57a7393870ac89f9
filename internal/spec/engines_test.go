package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEngineConfigs: the configs real engines generate pass validation.
// testdata/engines holds configs recorded from Docker Engine 20.10 (a plain
// `docker run` and one with --init, -u, -w, -e, --read-only, --tmpfs,
// limits, --device and --cap-add/--cap-drop), containerd 1.6's CRI plugin
// (a pod sandbox, a container with a memory limit, one as uid 1000) and
// buildah 1.28 (`buildah run`), with the recording machine's temp
// directories renamed; the docker-*-update files are the resources `docker
// update` sends to `runc update --resources -`. internal/linux/cgroups
// plans their resources in its own test.
func TestEngineConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "engines", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no engine configs: %v", err)
	}
	for _, f := range files {
		if strings.Contains(filepath.Base(f), "-update-") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			r, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			// No bundle: the recorded rootfs paths do not exist here.
			s, err := Parse(r, "")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if s.Linux == nil || s.Linux.Resources == nil {
				t.Fatalf("recorded config has no linux.resources")
			}
		})
	}
}
