package cgroups

import (
	"os"
	"testing"
	"time"
)

// helperEnv turns the test binary into a small workload for the kernel tests
// (the guest of the v2 proof has no other programs than busybox).
const helperEnv = "BERTH_CGROUP_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "hog":
		// Touch 1 MiB chunks until the OOM killer stops us.
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = 1
			}
			hogged = append(hogged, b)
		}
	case "spin":
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		}
		os.Exit(0)
	default:
		os.Exit(2)
	}
}

// hogged keeps the hog's memory reachable.
var hogged [][]byte
