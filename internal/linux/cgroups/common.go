package cgroups

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mkdirAll creates dir and its missing parents, returning the directories it
// created (top first) so callers can prepare each one (cpuset) before use.
func mkdirAll(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return made, fmt.Errorf("create cgroup: %w", err)
		}
		made = append(made, missing[i])
	}
	return made, nil
}

// removeTree removes dir and every sub-cgroup, deepest first. A cgroup
// directory can only be rmdir'ed once it has no processes and no children;
// its control files vanish with it (they cannot be unlinked). Processes that
// are still exiting keep a cgroup busy for a moment, so EBUSY is retried
// until deadline.
func removeTree(dir string, deadline time.Time) error {
	// The usual case, a leaf whose tasks are gone, needs no listing (a
	// cgroup directory lists every control file of the hierarchy).
	if err := unix.Rmdir(dir); err == nil || err == unix.ENOENT {
		return nil
	}
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if de.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove cgroup: %w", err)
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		delay := time.Millisecond
		for {
			err := unix.Rmdir(d)
			if errors.Is(err, nil) || errors.Is(err, unix.ENOENT) {
				break
			}
			if errors.Is(err, unix.ENOTEMPTY) && isRegularTree(d) {
				// A fake cgroupfs (tests) holds real files.
				err = os.RemoveAll(d)
				if err == nil {
					break
				}
			}
			if (errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EAGAIN)) && time.Now().Before(deadline) {
				time.Sleep(delay)
				if delay < 50*time.Millisecond {
					delay *= 2
				}
				continue
			}
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return nil
}

// isRegularTree reports whether d is on a regular filesystem, not cgroupfs.
func isRegularTree(d string) bool {
	var st unix.Statfs_t
	if unix.Statfs(d, &st) != nil {
		return false
	}
	return st.Type != unix.CGROUP_SUPER_MAGIC && st.Type != unix.CGROUP2_SUPER_MAGIC
}

// waitEmpty polls until the cgroup tree at dir has no processes or deadline.
func waitEmpty(dir string, deadline time.Time) error {
	delay := time.Millisecond
	for {
		pids, err := readPids(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s is not empty: %d processes still in it", dir, len(pids))
		}
		time.Sleep(delay)
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// checkEmpty is CheckEmpty over the directories of one cgroup (one per
// hierarchy): the processes found in any of them, counted once, refuse it;
// so does a frozen one (frozen reports the freezer's view).
func checkEmpty(dirs []string, frozen func() (bool, error)) error {
	found := map[int]bool{}
	present := false
	for _, d := range dirs {
		if !exists(d) {
			continue
		}
		present = true
		pids, err := readPids(d)
		// Reading can race with the cgroup's removal.
		if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("unable to get cgroup PIDs: %w", err)
		}
		for _, p := range pids {
			found[p] = true
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("container's cgroup is not empty: %d process(es) found", len(found))
	}
	if !present {
		return nil
	}
	if f, err := frozen(); err != nil {
		return fmt.Errorf("unable to get cgroup freezer state: %w", err)
	} else if f {
		return errors.New("container's cgroup unexpectedly frozen")
	}
	return nil
}

// signalAll sends sig to every pid; processes that exited meanwhile are fine.
func signalAll(pids []int, sig unix.Signal) error {
	var errs []error
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			errs = append(errs, fmt.Errorf("signal %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// destroyTimeout bounds how long Destroy waits for exiting processes.
const destroyTimeout = 10 * time.Second

// freezeTimeout bounds how long Freeze waits for every task to stop.
const freezeTimeout = 10 * time.Second

func itoa(v int64) string  { return strconv.FormatInt(v, 10) }
func utoa(v uint64) string { return strconv.FormatUint(v, 10) }
func ptrU64(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}
func ptrI64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// What engines send for "not set". runc keeps resources as plain numbers
// where zero means unset, so clients written against it send zeros freely:
// Docker puts cpu.shares 0, blockIO.weight 0 and memory.disableOOMKiller
// false in every container's config, `docker update` sends cpu period and
// quota 0 and memory limit, reservation and kernel 0, and a swappiness of -1
// ("unset" in Docker's API) arrives as 2^64-1 in the spec's unsigned field.
// None of these may cause a write, nor require the controller to be mounted.

// cpuSet reports whether c sets anything of the cpu controller other than
// the realtime knobs (whose zero is "unset" as well).
func cpuSet(c *specs.LinuxCPU) bool {
	return ptrU64(c.Shares) != 0 || ptrI64(c.Quota) != 0 || ptrU64(c.Period) != 0 || c.Burst != nil || c.Idle != nil
}

// memorySet reports whether m sets a memory limit or knob (swappiness, a v1
// knob, is swappinessSet).
func memorySet(m *specs.LinuxMemory) bool {
	return ptrI64(m.Limit) != 0 || ptrI64(m.Swap) != 0 || ptrI64(m.Reservation) != 0 || ptrI64(m.KernelTCP) != 0 ||
		(m.DisableOOMKiller != nil && *m.DisableOOMKiller)
}

// swappinessSet: nil and -1 (2^64-1 once in the unsigned field) are unset.
func swappinessSet(m *specs.LinuxMemory) bool {
	return m.Swappiness != nil && *m.Swappiness != math.MaxUint64
}

// blockIOSet reports whether b sets a weight or a throttle.
func blockIOSet(b *specs.LinuxBlockIO) bool {
	return ptrU16(b.Weight) != 0 || ptrU16(b.LeafWeight) != 0 || len(b.WeightDevice) > 0 ||
		len(b.ThrottleReadBpsDevice) > 0 || len(b.ThrottleWriteBpsDevice) > 0 ||
		len(b.ThrottleReadIOPSDevice) > 0 || len(b.ThrottleWriteIOPSDevice) > 0
}

func ptrU16(p *uint16) uint16 {
	if p == nil {
		return 0
	}
	return *p
}
