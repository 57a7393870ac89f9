package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// writeFile writes data to the control file name inside dir.
//
// The file is never created: on cgroupfs every valid control file already
// exists, so ENOENT means "this kernel or this hierarchy has no such knob",
// which we report instead of silently creating a regular file (the fake
// cgroupfs in the tests relies on the same rule to catch writes to files a
// driver should not touch). O_APPEND keeps every write of a multi-write file
// (devices.allow, io.max, ...) visible in the fake; kernfs ignores the offset.
func writeFile(dir, name, data string) error {
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(data)
	cerr := f.Close()
	if werr != nil {
		// Wrap the bare errno the kernel gives (EINVAL, EBUSY, ...) with what was written.
		return fmt.Errorf("write %q to %s: %w", data, p, unwrapPathErr(werr))
	}
	return cerr
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func readFile(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	return string(b), err
}

// readUint reads a single-number file. "max" reads as math.MaxUint64.
func readUint(dir, name string) (uint64, error) {
	s, err := readFile(dir, name)
	if err != nil {
		return 0, err
	}
	return parseUint(strings.TrimSpace(s), filepath.Join(dir, name))
}

func parseUint(s, what string) (uint64, error) {
	if s == "max" {
		return math.MaxUint64, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// Some counters can go transiently negative in the kernel; runc reads them as 0.
		if i, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && i < 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("parse %s: %q is not a number", what, s)
	}
	return v, nil
}

// readKV parses "key value" lines (memory.stat, cpu.stat, memory.events ...).
func readKV(dir, name string) (map[string]uint64, error) {
	s, err := readFile(dir, name)
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := parseUint(f[1], filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		m[f[0]] = v
	}
	return m, nil
}

// readPids reads cgroup.procs of dir and of every descendant.
func readPids(dir string) ([]int, error) {
	var pids []int
	walk := func(d string) error {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			return err
		}
		for _, line := range bytes.Fields(b) {
			pid, err := strconv.Atoi(string(line))
			if err != nil {
				return fmt.Errorf("parse %s: %w", filepath.Join(d, "cgroup.procs"), err)
			}
			pids = append(pids, pid)
		}
		return nil
	}
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			// A sub-cgroup removed while we walk is not an error.
			if errors.Is(err, os.ErrNotExist) && p != dir {
				return nil
			}
			return err
		}
		if !de.IsDir() {
			return nil
		}
		if err := walk(p); err != nil && !(errors.Is(err, os.ErrNotExist) && p != dir) {
			return err
		}
		return nil
	})
	return pids, err
}

// parsePSI reads a *.pressure file; a missing file (PSI disabled) gives nil.
func parsePSI(dir, name string) (*PSIStats, error) {
	s, err := readFile(dir, name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			return nil, nil
		}
		return nil, err
	}
	var ps PSIStats
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var d *PSIData
		switch f[0] {
		case "some":
			d = &ps.Some
		case "full":
			d = &ps.Full
		default:
			continue
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("parse %s: bad field %q", name, kv)
			}
			var perr error
			switch k {
			case "avg10":
				d.Avg10, perr = strconv.ParseFloat(v, 64)
			case "avg60":
				d.Avg60, perr = strconv.ParseFloat(v, 64)
			case "avg300":
				d.Avg300, perr = strconv.ParseFloat(v, 64)
			case "total":
				d.Total, perr = strconv.ParseUint(v, 10, 64)
			}
			if perr != nil {
				return nil, fmt.Errorf("parse %s: bad field %q", name, kv)
			}
		}
	}
	return &ps, nil
}

// parseCPUList parses "0-3,5" into [0 1 2 3 5].
func parseCPUList(s string) ([]uint16, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []uint16
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("bad cpu list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
				return nil, fmt.Errorf("bad cpu list %q", s)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, uint16(i))
		}
	}
	return out, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
