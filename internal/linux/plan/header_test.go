package plan

import (
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite internal/nsenter/plan_gen.h")

const headerPath = "../../nsenter/plan_gen.h"

// TestHeaderCurrent fails when the executor's checked-in header is not what
// the wire tables produce; `go generate ./internal/linux/plan` (which runs
// this test with -update) rewrites it.
func TestHeaderCurrent(t *testing.T) {
	if *update {
		if err := os.WriteFile(headerPath, []byte(CHeader()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(headerPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != CHeader() {
		t.Fatal("internal/nsenter/plan_gen.h is stale: run go generate ./internal/linux/plan")
	}
}
