package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"
	"golang.org/x/sys/unix"

	"berth/internal/runtime"
)

func oneID(c *cli.Context, f func(*runtime.Runtime, string) error) error {
	if err := checkArgs(c, 1, exactArgs); err != nil {
		return err
	}
	rt, err := newRuntime(c)
	if err != nil {
		return err
	}
	return f(rt, c.Args().First())
}

func init() {
	register(cli.Command{
		Name:  "pause",
		Usage: "pause suspends all processes inside the container",
		ArgsUsage: `<container-id>

Where "<container-id>" is the name for the instance of the container to be
paused. `,
		Description: `The pause command suspends all processes in the instance of the container.

Use berth list to identify instances of containers and their current status.`,
		Action: func(c *cli.Context) error {
			return oneID(c, func(rt *runtime.Runtime, id string) error { return rt.Pause(id) })
		},
	})
	register(cli.Command{
		Name:  "resume",
		Usage: "resumes all processes that have been previously paused",
		ArgsUsage: `<container-id>

Where "<container-id>" is the name for the instance of the container to be
resumed.`,
		Description: `The resume command resumes all processes in the instance of the container.

Use berth list to identify instances of containers and their current status.`,
		Action: func(c *cli.Context) error {
			return oneID(c, func(rt *runtime.Runtime, id string) error { return rt.Resume(id) })
		},
	})
	register(cli.Command{
		Name:      "ps",
		Usage:     "ps displays the processes running inside a container",
		ArgsUsage: `<container-id> [ps options]`,
		Flags: []cli.Flag{
			cli.StringFlag{Name: "format, f", Value: "table", Usage: `select one of: table or json (default: "table")`},
		},
		SkipArgReorder: true,
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 1, minArgs); err != nil {
				return err
			}
			rt, err := newRuntime(c)
			if err != nil {
				return err
			}
			pids, err := rt.Pids(c.Args().First())
			if err != nil {
				return err
			}
			switch c.String("format") {
			case "json":
				return json.NewEncoder(os.Stdout).Encode(pids)
			case "table":
				return psTable(pids, c.Args().Tail())
			default:
				return errors.New("invalid format option")
			}
		},
	})
	register(cli.Command{
		Name:  "events",
		Usage: "display container events such as OOM notifications, cpu, memory, and IO usage statistics",
		ArgsUsage: `<container-id>

Where "<container-id>" is the name for the instance of the container.`,
		Description: `The events command displays information about the container. By default the
information is displayed once every 5 seconds.`,
		Flags: []cli.Flag{
			cli.DurationFlag{Name: "interval", Value: 5e9, Usage: "set the stats collection interval"},
			cli.BoolFlag{Name: "stats", Usage: "display the container's stats then exit"},
		},
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 1, exactArgs); err != nil {
				return err
			}
			interval := c.Duration("interval")
			if interval <= 0 {
				return errors.New("duration interval must be greater than 0")
			}
			if c.Bool("stats") {
				interval = 0
			}
			rt, err := newRuntime(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
			defer stop()
			enc := json.NewEncoder(os.Stdout)
			return rt.Events(ctx, c.Args().First(), interval, func(e runtime.Event) error { return enc.Encode(e) })
		},
	})
	register(cli.Command{
		Name:      "update",
		Usage:     "update container resource constraints",
		ArgsUsage: `<container-id>`,
		Description: `The data can be read from a file or the standard input, the
accepted format is as follow (unchanged values can be omitted):

{
  "memory": {
    "limit": 0,
    "reservation": 0,
    "swap": 0,
    "checkBeforeUpdate": true
  },
  "cpu": {
    "shares": 0,
    "quota": 0,
    "burst": 0,
    "period": 0,
    "realtimeRuntime": 0,
    "realtimePeriod": 0,
    "cpus": "",
    "mems": "",
    "idle": 0
  },
  "blockIO": {
    "weight": 0
  },
  "pids": {
    "limit": 0
  }
}

Note: if data is to be read from a file or the standard input, all
other options are ignored.`,
		Flags: []cli.Flag{
			cli.StringFlag{Name: "resources, r", Usage: `path to the file containing the resources to update or '-' to read from the standard input`},
			cli.StringFlag{Name: "blkio-weight", Usage: "Specifies per cgroup weight, range is from 10 to 1000"},
			cli.StringFlag{Name: "cpu-period", Usage: "CPU CFS period to be used for hardcapping (in usecs). 0 to use system default"},
			cli.StringFlag{Name: "cpu-quota", Usage: "CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period"},
			cli.StringFlag{Name: "cpu-burst", Usage: "CPU CFS hardcap burst limit (in usecs). Allowed accumulated cpu time additionally for burst a given period"},
			cli.StringFlag{Name: "cpu-share", Usage: "CPU shares (relative weight vs. other containers)"},
			cli.StringFlag{Name: "cpu-rt-period", Usage: "CPU realtime period to be used for hardcapping (in usecs). 0 to use system default"},
			cli.StringFlag{Name: "cpu-rt-runtime", Usage: "CPU realtime hardcap limit (in usecs). Allowed cpu time in a given period"},
			cli.StringFlag{Name: "cpuset-cpus", Usage: "CPU(s) to use"},
			cli.StringFlag{Name: "cpuset-mems", Usage: "Memory node(s) to use"},
			cli.StringFlag{Name: "memory", Usage: "Memory limit (in bytes)"},
			cli.StringFlag{Name: "cpu-idle", Usage: "set cgroup SCHED_IDLE or not, 0: default behavior, 1: SCHED_IDLE"},
			cli.StringFlag{Name: "memory-reservation", Usage: "Memory reservation or soft_limit (in bytes)"},
			cli.StringFlag{Name: "memory-swap", Usage: "Total memory usage (memory + swap); set '-1' to enable unlimited swap"},
			cli.IntFlag{Name: "pids-limit", Usage: "Maximum number of pids allowed in the container"},
			cli.StringFlag{Name: "l3-cache-schema", Usage: "The string of Intel RDT/CAT L3 cache schema"},
			cli.StringFlag{Name: "mem-bw-schema", Usage: "The string of Intel RDT/MBA memory bandwidth schema"},
			cli.StringFlag{Name: "kernel-memory", Hidden: true},
			cli.StringFlag{Name: "kernel-memory-tcp", Hidden: true},
		},
		Action: func(c *cli.Context) error {
			if err := checkArgs(c, 1, exactArgs); err != nil {
				return err
			}
			rt, err := newRuntime(c)
			if err != nil {
				return err
			}
			res, err := updateResources(c)
			if err != nil {
				return err
			}
			return rt.Update(c.Args().First(), res)
		},
	})
}

func updateResources(c *cli.Context) (*specs.LinuxResources, error) {
	if p := c.String("resources"); p != "" {
		var r io.Reader = os.Stdin
		if p != "-" {
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			r = f
		}
		var res specs.LinuxResources
		if err := json.NewDecoder(r).Decode(&res); err != nil {
			return nil, fmt.Errorf("decoding resources: %w", err)
		}
		return &res, nil
	}
	for _, k := range []string{"kernel-memory", "kernel-memory-tcp"} {
		if c.IsSet(k) {
			log.Warnf("--%s is deprecated and ignored", k)
		}
	}
	if c.IsSet("l3-cache-schema") || c.IsSet("mem-bw-schema") {
		return nil, errors.New("Intel RDT is not supported by berth") //nolint:staticcheck // a proper name starts the sentence
	}
	res := &specs.LinuxResources{}
	u64 := func(name string) (*uint64, error) {
		if !c.IsSet(name) {
			return nil, nil
		}
		v, err := strconv.ParseUint(c.String(name), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid value for %s: %w", name, err)
		}
		return &v, nil
	}
	i64 := func(name string) (*int64, error) {
		if !c.IsSet(name) {
			return nil, nil
		}
		v, err := strconv.ParseInt(c.String(name), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid value for %s: %w", name, err)
		}
		return &v, nil
	}
	// Memory sizes take units, as runc's update does: "100M", "1g", "512KiB"
	// (binary multiples), or -1 for unlimited.
	size := func(name string) (*int64, error) {
		if !c.IsSet(name) {
			return nil, nil
		}
		v, err := ramInBytes(c.String(name))
		if err != nil {
			return nil, fmt.Errorf("invalid value for %s: %w", name, err)
		}
		return &v, nil
	}
	var err error
	cpu := &specs.LinuxCPU{}
	mem := &specs.LinuxMemory{}
	if cpu.Period, err = u64("cpu-period"); err != nil {
		return nil, err
	}
	if cpu.Quota, err = i64("cpu-quota"); err != nil {
		return nil, err
	}
	if cpu.Burst, err = u64("cpu-burst"); err != nil {
		return nil, err
	}
	if cpu.Shares, err = u64("cpu-share"); err != nil {
		return nil, err
	}
	if cpu.RealtimePeriod, err = u64("cpu-rt-period"); err != nil {
		return nil, err
	}
	if cpu.RealtimeRuntime, err = i64("cpu-rt-runtime"); err != nil {
		return nil, err
	}
	if cpu.Idle, err = i64("cpu-idle"); err != nil {
		return nil, err
	}
	cpu.Cpus, cpu.Mems = c.String("cpuset-cpus"), c.String("cpuset-mems")
	if *cpu != (specs.LinuxCPU{}) {
		res.CPU = cpu
	}
	if mem.Limit, err = size("memory"); err != nil {
		return nil, err
	}
	if mem.Reservation, err = size("memory-reservation"); err != nil {
		return nil, err
	}
	if mem.Swap, err = size("memory-swap"); err != nil {
		return nil, err
	}
	if mem.Limit != nil || mem.Reservation != nil || mem.Swap != nil {
		res.Memory = mem
	}
	if w, err := u64("blkio-weight"); err != nil {
		return nil, err
	} else if w != nil {
		v := uint16(*w)
		res.BlockIO = &specs.LinuxBlockIO{Weight: &v}
	}
	if c.IsSet("pids-limit") {
		v := int64(c.Int("pids-limit"))
		res.Pids = &specs.LinuxPids{Limit: &v}
	}
	return res, nil
}

var ramSizeRE = regexp.MustCompile(`^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$`)

// ramInBytes parses a memory size as docker's units.RAMInBytes does (what
// runc update uses): a number, an optional k/m/g/t/p (binary multiples,
// case-insensitive) and an optional "i"/"b"; "-1" is unlimited.
func ramInBytes(s string) (int64, error) {
	if s == "-1" {
		return -1, nil
	}
	m := ramSizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("invalid size: %q", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size: %q", s)
	}
	mult := map[string]float64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}[strings.ToLower(m[2])]
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q out of range", s)
	}
	return int64(v), nil
}

// psTable runs the host's ps (default -ef) and keeps the header and the rows
// whose PID column is one of the container's.
func psTable(pids []int, args []string) error {
	if len(args) == 0 {
		args = []string{"-ef"}
	}
	out, err := exec.Command("ps", args...).Output()
	if err != nil {
		return fmt.Errorf("%s: %w", strings.Join(append([]string{"ps"}, args...), " "), err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	if !sc.Scan() {
		return nil
	}
	header := sc.Text()
	col := -1
	for i, f := range strings.Fields(header) {
		if f == "PID" {
			col = i
		}
	}
	if col < 0 {
		return errors.New("couldn't find PID field in ps output")
	}
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	fmt.Println(header)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) <= col {
			continue
		}
		if p, err := strconv.Atoi(f[col]); err == nil && want[p] {
			fmt.Println(sc.Text())
		}
	}
	return nil
}
