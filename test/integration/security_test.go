package integration

import (
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"berth/internal/testutil"
)

// TestCVE_2019_5736_ExeOverwrite: a process that can see the runtime's init
// (/proc/PID/exe) keeps a handle and, after init is gone, reopens it for
// writing to overwrite the host's runtime binary. berth executes itself from
// a detached read-only bind mount, so the reopen must fail with EROFS.
func TestCVE_2019_5736_ExeOverwrite(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "true")
	id := r.id()
	r.must("create", "-b", b, id)
	var st struct{ Pid int }
	json.Unmarshal([]byte(r.must("state", id)), &st)
	h, err := os.OpenFile("/proc/"+strconv.Itoa(st.Pid)+"/exe", unix.O_PATH, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	r.must("delete", "-f", id)
	w, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(h.Fd())), os.O_WRONLY, 0)
	if err == nil {
		w.Close()
		t.Fatal("the runtime binary could be reopened for writing through a container init's /proc/PID/exe")
	}
	if !errors.Is(err, unix.EROFS) {
		t.Fatalf("reopen for writing: %v, want EROFS", err)
	}
}

// TestCVE_2024_21626_NoLeakedFds: no fd of the runtime (cgroup dirs, state
// dir, the init pipe, the sealed binary) may reach the container process.
func TestCVE_2024_21626_NoLeakedFds(t *testing.T) {
	r := newRT(t)
	b := testutil.Bundle(t, nil, "sh", "-c", "ls -l /proc/self/fd/ | grep -v ' [012] -> ' | grep -- '->' || echo no-extra-fds")
	out := r.must("run", "-b", b, r.id())
	// ls itself holds /proc/self/fd open while listing.
	if out != "no-extra-fds\n" {
		lines := 0
		for _, c := range out {
			if c == '\n' {
				lines++
			}
		}
		if lines > 1 {
			t.Errorf("container process inherited fds:\n%s", out)
		}
	}
}
