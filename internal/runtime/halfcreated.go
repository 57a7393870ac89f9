package runtime

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/atomicfile"
	"berth/internal/linux/cgroups"
	"berth/internal/state"
)

// creatingFile records, while create runs, what it has made so far: the
// cgroup it is about to create and, once spawned, init's pid. A create that
// is SIGKILLed half-way cannot clean up after itself; `delete` of a state
// dir without state.json reads this record and removes what it names.
const creatingFile = "creating.json"

type creatingRecord struct {
	CgroupPaths map[string]string `json:"cgroup_paths,omitempty"`
	InitPid     int               `json:"init_pid,omitempty"`
	InitStart   uint64            `json:"init_start,omitempty"`
}

func writeCreating(dir string, rec creatingRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, creatingFile), b, 0o600, atomicfile.NoSync())
}

// cleanHalfCreated kills the init and removes the cgroup a dead create left
// in dir (the caller holds the container's lock, so no create is running).
func cleanHalfCreated(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, creatingFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var rec creatingRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil // a torn record names nothing we could trust
	}
	if rec.InitPid > 0 {
		if start, zombie, err := state.ProcStart(rec.InitPid); err == nil && !zombie && start == rec.InitStart {
			_ = unix.Kill(rec.InitPid, unix.SIGKILL)
			for i := 0; i < 100; i++ {
				if start, zombie, err := state.ProcStart(rec.InitPid); err != nil || zombie || start != rec.InitStart {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	if len(rec.CgroupPaths) > 0 {
		cg, err := cgroups.Load(rec.CgroupPaths)
		if err != nil {
			return err
		}
		_ = cg.Kill(unix.SIGKILL)
		return cg.Destroy()
	}
	return nil
}
