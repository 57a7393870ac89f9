package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
)

// Join is what a new process needs to be born in (v2) or move itself into
// (v1) a set of cgroup directories without the parent migrating it.
//
// Why: a write of a pid to cgroup.procs takes the kernel's global
// cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period
// (10-25 ms at HZ=250) whenever the lock was idle, i.e. on nearly every
// container start. Two ways around it are cheap:
//   - v2: clone3 with CLONE_INTO_CGROUP (Dir) places the child at birth;
//   - v1: a single-threaded process writing "0" (itself) to a hierarchy's
//     "tasks" file moves without that lock (the kernel skips it when a thread
//     migrates only itself). The runtime's child does this in its C
//     constructor, before the Go runtime starts threads (internal/nsenter).
//
// The files are opened here, in the runtime's mount namespace, so the child
// never resolves a cgroupfs path itself.
type Join struct {
	// Tasks are v1 "tasks" files opened for writing, one per hierarchy.
	Tasks []TaskFile
	// Dir is the v2 directory (O_PATH) for CLONE_INTO_CGROUP, or nil.
	Dir *os.File
	// hold is the systemd scope's placeholder, released by Close once the
	// joining process is in (see placeholder.go).
	hold *Placeholder
}

// TaskFile is one hierarchy's open "tasks" file.
type TaskFile struct {
	Controller string // "memory", "name=systemd", ...
	File       *os.File
}

// OpenJoin opens the join files for paths, a Paths() map or one derived from
// it: every key but "" is a v1 hierarchy directory, "" the v2 one. The
// directories must exist (Create).
func OpenJoin(paths map[string]string) (*Join, error) {
	j := &Join{}
	var ctrls []string
	for c := range paths {
		ctrls = append(ctrls, c)
	}
	sort.Strings(ctrls)
	for _, c := range ctrls {
		dir := paths[c]
		if c == "" {
			fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				j.Close()
				return nil, fmt.Errorf("open cgroup: %w", &os.PathError{Op: "open", Path: dir, Err: err})
			}
			j.Dir = os.NewFile(uintptr(fd), dir)
			continue
		}
		p := filepath.Join(dir, "tasks")
		// A blocking fd (unix.Open, not os.OpenFile): only the child writes
		// to it, so the runtime's poller need not know it.
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			j.Close()
			return nil, fmt.Errorf("join %s cgroup: %w", c, &os.PathError{Op: "open", Path: p, Err: err})
		}
		j.Tasks = append(j.Tasks, TaskFile{Controller: c, File: os.NewFile(uintptr(fd), p)})
	}
	j.hold = takePlaceholder(paths)
	return j, nil
}

// Close closes every file; the child has its own copies. Called after the
// spawn, it also lets a new systemd scope's placeholder go once the child is
// in the cgroup. Closing twice is harmless.
func (j *Join) Close() {
	if j == nil {
		return
	}
	if j.hold != nil {
		j.hold.releaseAfterJoin()
		j.hold = nil
	}
	for _, t := range j.Tasks {
		t.File.Close()
	}
	if j.Dir != nil {
		j.Dir.Close()
	}
}
