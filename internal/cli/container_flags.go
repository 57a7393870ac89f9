// The flags of container run and create: docker's and podman's, read into
// oneshot.Options; the ones berth does not support are refused by name.

package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/urfave/cli"

	"berth/internal/oneshot"
)

// refusedFlag is a podman/docker run flag berth does not carry out: it is
// accepted by the parser so the user gets the reason, not "flag provided
// but not defined".
type refusedFlag struct {
	name, why string
	bool      bool
}

var refusedRunFlags = []refusedFlag{
	{"attach, a", "berth has no attach: run in the foreground, or detached (-d) and follow the output with `berth container logs -f`", false},
	{"detach-keys", "berth has no attach, so there is nothing to detach from", false},
	{"health-cmd", "berth runs no health checks: there is no daemon to run them", false},
	{"health-interval", "berth runs no health checks: there is no daemon to run them", false},
	{"health-retries", "berth runs no health checks: there is no daemon to run them", false},
	{"health-timeout", "berth runs no health checks: there is no daemon to run them", false},
	{"health-start-period", "berth runs no health checks: there is no daemon to run them", false},
	{"log-opt", "berth keeps the container log itself (k8s-file format, no rotation)", false},
	{"userns", "user namespaces are not supported by `container run` yet (a bundle can have one: berth bundle edit)", false},
	{"uidmap", "user namespaces are not supported by `container run` yet", false},
	{"gidmap", "user namespaces are not supported by `container run` yet", false},
	{"pod", "berth has no pods", false},
	{"gpus", "berth has no GPU support", false},
	{"runtime", "berth is the runtime", false},
	{"link", "legacy links are not supported: containers on one network reach each other by address", false},
	{"network-alias", "the network's DNS has no aliases", false},
	{"volumes-from", "--volumes-from is not supported: name the volumes with -v", false},
	{"cgroup-parent", "containers get berth's own cgroup layout", false},
	{"systemd", "there is no systemd integration (no systemd on this host either)", false},
	{"isolation", "only Linux namespaces are supported", false},
	{"storage-opt", "the writable layer is an overlay upper directory without options", false},
	{"kernel-memory", "kernel memory limits are deprecated in docker and gone from cgroup v2", false},
	{"rmi", "images stay in the store; remove them with the store's tools", true},
	{"sig-proxy", "signals are always forwarded to a foreground container", false},
	{"tz", "set TZ with -e and mount the zone file with -v", false},
	{"http-proxy", "set the proxy variables with -e", false},
	{"ip6", "berth's networks are IPv4 unless created dual-stack, and then the address is assigned", false},
	{"link-local-ip", "no link-local addresses are assigned", false},
	{"secret", "there are no secrets: mount the file with -v ...:ro", false},
	{"pidfile", "read the pid with `berth container inspect -f '{{.State.Pid}}' NAME`", false},
	{"pod-id-file", "berth has no pods", false},
	{"sdnotify", "there is no systemd notify support", false},
	{"personality", "the execution domain is not set", false},
	{"rootfs", "containers run from images; run a root directory with `berth run -b BUNDLE`", true},
	{"preserve-fds", "fds are not passed to `container run` (berth run --preserve-fds does it)", false},
	{"hostuser", "host users are not copied into the container's /etc/passwd", false},
	{"passwd-entry", "/etc/passwd is the image's", false},
	{"group-entry", "/etc/group is the image's", false},
	{"image-volume", "image volumes are always anonymous volumes", false},
	{"init-ctr", "berth has no pods", false},
	{"requires", "containers have no dependencies", false},
	{"seccomp-policy", "use --security-opt seccomp=FILE", false},
	{"timeout", "there is no run timeout", false},
	{"env-host", "pass variables with -e NAME", true},
	{"env-merge", "set variables with -e", false},
	{"subuidname", "user namespaces are not supported by `container run` yet", false},
	{"subgidname", "user namespaces are not supported by `container run` yet", false},
	{"arch", "use --platform; only the host's platform runs here", false},
	{"os", "use --platform; only the host's platform runs here", false},
	{"variant", "use --platform; only the host's platform runs here", false},
	{"authfile", "log in with `berth login`; its credentials are used", false},
	{"creds", "log in with `berth login`; its credentials are used", false},
	{"cert-dir", "use the host's trust store (or --tls-verify=false for a local registry)", false},
	{"decryption-key", "encrypted images are not supported", false},
	{"unsetenv-all", "name the variables with --unsetenv", true},
	{"use-api-socket", "there is no API socket", true},
	{"cpu-count", "a Windows option", false},
	{"cpu-percent", "a Windows option", false},
	{"io-maxbandwidth", "a Windows option", false},
	{"io-maxiops", "a Windows option", false},
}

var refusedStartFlags = []refusedFlag{
	{"attach, a", "berth has no attach: follow the output with `berth container logs -f`", true},
	{"interactive, i", "berth has no attach: a started container's stdin is /dev/null", true},
}

func refusedFlags(list []refusedFlag) []cli.Flag {
	var out []cli.Flag
	for _, r := range list {
		if r.bool {
			out = append(out, cli.BoolFlag{Name: r.name, Hidden: true})
		} else {
			out = append(out, cli.StringFlag{Name: r.name, Hidden: true})
		}
	}
	return out
}

func checkRefused(c *cli.Context, list []refusedFlag) error {
	for _, r := range list {
		name, _, _ := strings.Cut(r.name, ",")
		if c.IsSet(name) {
			if name == "sig-proxy" && c.String(name) == "true" {
				continue
			}
			return fmt.Errorf("--%s: %s", name, r.why)
		}
	}
	return nil
}

var runFlags = append([]cli.Flag{
	homeFlag,
	volumeDirFlag,
	cli.StringFlag{Name: "name", Usage: "container name (default: berth-<id>)"},
	cli.BoolFlag{Name: "tty, t", Usage: "allocate a pseudo-terminal"},
	cli.BoolFlag{Name: "interactive, i", Usage: "keep stdin open"},
	cli.BoolFlag{Name: "detach, d", Usage: "run in the background and print the container id; output goes to the container's log"},
	cli.BoolFlag{Name: "rm", Usage: "remove the container, its anonymous volumes and everything it holds when it exits"},
	cli.BoolFlag{Name: "replace", Usage: "remove a container of the same name first"},
	cli.StringSliceFlag{Name: "env, e", Usage: "set an environment variable NAME=VALUE, or NAME to pass the host's value (repeatable)"},
	cli.StringSliceFlag{Name: "env-file", Usage: "read NAME=VALUE lines (and NAME, # comments) from a file (repeatable)"},
	cli.StringSliceFlag{Name: "unsetenv", Usage: "remove a variable the image sets (repeatable)"},
	cli.StringSliceFlag{Name: "label, l", Usage: "set a container label KEY=VALUE (repeatable)"},
	cli.StringSliceFlag{Name: "label-file", Usage: "read KEY=VALUE labels from a file (repeatable)"},
	cli.StringSliceFlag{Name: "annotation", Usage: "set an OCI annotation KEY=VALUE in config.json (repeatable)"},
	cli.StringSliceFlag{Name: "volume, v", Usage: "mount /host/path:/ctr/path[:ro], a named volume NAME:/ctr/path[:ro] (created if missing), or an anonymous volume /ctr/path (repeatable)"},
	cli.StringSliceFlag{Name: "mount", Usage: "type=bind|volume|tmpfs,source=...,destination=...[,ro][,tmpfs-size=N] (repeatable)"},
	cli.StringSliceFlag{Name: "tmpfs", Usage: "mount a tmpfs at /ctr/path[:options] (repeatable)"},
	cli.StringSliceFlag{Name: "publish, p", Usage: "publish a port [hostIP:]hostPort:containerPort[/tcp|udp] (repeatable)"},
	cli.BoolFlag{Name: "publish-all, P", Usage: "publish every exposed port on a free host port"},
	cli.StringSliceFlag{Name: "expose", Usage: "expose a port or range PORT[-PORT][/proto] (for -P)"},
	cli.StringFlag{Name: "workdir, w", Usage: "working directory inside the container (created if missing)"},
	cli.StringFlag{Name: "user, u", Usage: "user[:group] to run as: names or numbers, resolved in the image"},
	cli.StringSliceFlag{Name: "group-add", Usage: "add a supplementary group (name or gid; repeatable)"},
	cli.StringFlag{Name: "entrypoint", Usage: "override the image's entrypoint (a command, or a JSON array); clears the image's cmd"},
	cli.StringFlag{Name: "network, net", Value: "berth", Usage: "network name, none (loopback only) or host"},
	cli.StringFlag{Name: "ip", Usage: "the container's IPv4 address on its network"},
	cli.StringFlag{Name: "mac-address", Usage: "the container's MAC address"},
	cli.StringFlag{Name: "hostname", Usage: "container hostname (default: its name)"},
	cli.StringFlag{Name: "domainname", Usage: "container NIS domain name"},
	cli.StringSliceFlag{Name: "dns", Usage: "nameserver for the container's resolv.conf (repeatable)"},
	cli.StringSliceFlag{Name: "dns-search", Usage: "search domain for resolv.conf (repeatable)"},
	cli.StringSliceFlag{Name: "dns-option", Usage: "resolv.conf option (repeatable)"},
	cli.StringSliceFlag{Name: "add-host", Usage: "add NAME:IP to /etc/hosts (repeatable)"},
	cli.StringFlag{Name: "pid", Usage: "host: share the host's pid namespace"},
	cli.StringFlag{Name: "ipc", Usage: "host: share the host's ipc namespace"},
	cli.StringFlag{Name: "uts", Usage: "host: share the host's uts namespace"},
	cli.StringFlag{Name: "cgroupns", Usage: "host or private (default)"},
	cli.BoolFlag{Name: "read-only", Usage: "mount the root filesystem read-only (with tmpfs on /run, /tmp, /var/tmp unless --read-only-tmpfs=false)"},
	cli.BoolTFlag{Name: "read-only-tmpfs", Usage: "with --read-only, mount tmpfs on /run, /tmp and /var/tmp"},
	cli.StringSliceFlag{Name: "cap-add", Usage: "add a capability, or ALL (repeatable)"},
	cli.StringSliceFlag{Name: "cap-drop", Usage: "drop a capability, or ALL (repeatable)"},
	cli.BoolFlag{Name: "privileged", Usage: "every capability berth holds, no seccomp, no masked paths, /sys writable, the host's devices"},
	cli.StringSliceFlag{Name: "security-opt", Usage: "no-new-privileges, seccomp=unconfined, seccomp=FILE (docker's JSON format), label=disable, apparmor=unconfined"},
	cli.StringSliceFlag{Name: "device", Usage: "add a host device /dev/HOST[:/dev/CONTAINER[:rwm]] (repeatable)"},
	cli.StringSliceFlag{Name: "device-cgroup-rule", Usage: `allow a device in the device cgroup, e.g. "c 1:3 rwm" (repeatable)`},
	cli.StringSliceFlag{Name: "ulimit", Usage: "NAME=SOFT[:HARD] resource limit, e.g. nofile=1024:2048 (repeatable)"},
	cli.StringSliceFlag{Name: "sysctl", Usage: "namespaced kernel parameter KEY=VALUE (repeatable)"},
	cli.StringFlag{Name: "shm-size", Usage: "size of /dev/shm, e.g. 256m (default 64m)"},
	cli.StringFlag{Name: "memory, m", Usage: "memory limit, e.g. 256m or 1g"},
	cli.StringFlag{Name: "memory-swap", Usage: "memory plus swap limit (-1: unlimited swap)"},
	cli.StringFlag{Name: "memory-reservation", Usage: "memory soft limit"},
	cli.BoolFlag{Name: "oom-kill-disable", Usage: "disable the OOM killer (cgroup v1)"},
	cli.IntFlag{Name: "oom-score-adj", Usage: "the container process's OOM score adjustment"},
	cli.Float64Flag{Name: "cpus", Usage: "number of CPUs (CFS quota), e.g. 1.5"},
	cli.Uint64Flag{Name: "cpu-period", Usage: "CFS period in microseconds"},
	cli.Int64Flag{Name: "cpu-quota", Usage: "CFS quota in microseconds"},
	cli.Uint64Flag{Name: "cpu-shares, c", Usage: "CPU shares (relative weight)"},
	cli.StringFlag{Name: "cpuset-cpus", Usage: "CPUs the container may use, e.g. 0-1"},
	cli.StringFlag{Name: "cpuset-mems", Usage: "memory nodes the container may use"},
	cli.UintFlag{Name: "blkio-weight", Usage: "block I/O weight, 10 to 1000"},
	cli.StringSliceFlag{Name: "blkio-weight-device", Usage: "block I/O weight of a device, /dev/DEVICE:WEIGHT (repeatable)"},
	cli.StringSliceFlag{Name: "device-read-bps", Usage: "read rate limit of a device, /dev/DEVICE:RATE (e.g. 1mb; repeatable)"},
	cli.StringSliceFlag{Name: "device-write-bps", Usage: "write rate limit of a device, /dev/DEVICE:RATE (repeatable)"},
	cli.StringSliceFlag{Name: "device-read-iops", Usage: "read operations per second of a device, /dev/DEVICE:RATE (repeatable)"},
	cli.StringSliceFlag{Name: "device-write-iops", Usage: "write operations per second of a device, /dev/DEVICE:RATE (repeatable)"},
	cli.Uint64Flag{Name: "cpu-rt-period", Usage: "realtime period in microseconds"},
	cli.Int64Flag{Name: "cpu-rt-runtime", Usage: "realtime runtime in microseconds"},
	cli.StringFlag{Name: "memory-swappiness", Usage: "memory swappiness, 0 to 100 (cgroup v1)"},
	cli.Int64Flag{Name: "pids-limit", Usage: "maximum number of processes"},
	cli.StringFlag{Name: "umask", Usage: "umask of the container process, e.g. 0022"},
	cli.BoolFlag{Name: "init", Usage: "run berth itself as the container's pid 1: it forwards signals and reaps orphans"},
	cli.StringFlag{Name: "init-path", Usage: "the (static) binary --init binds at /dev/init (default: this berth)"},
	cli.StringFlag{Name: "restart", Value: "no", Usage: "restart policy: no, on-failure[:MAX-RETRIES], always, unless-stopped (carried out by the container's runner)"},
	cli.StringFlag{Name: "stop-signal", Usage: "signal `stop` sends first (default: the image's StopSignal, else SIGTERM)"},
	cli.IntFlag{Name: "stop-timeout", Value: 10, Usage: "seconds `stop` waits before SIGKILL"},
	cli.StringFlag{Name: "log-driver", Value: "k8s-file", Usage: "k8s-file only: berth keeps the log itself"},
	cli.BoolFlag{Name: "no-healthcheck", Usage: "accepted: berth runs no health checks"},
	cli.StringFlag{Name: "cidfile", Usage: "write the container id to this file"},
	cli.StringFlag{Name: "platform", Usage: "the image platform; only the host's (" + runtime.GOOS + "/" + runtime.GOARCH + ") runs here"},
	cli.StringFlag{Name: "pull", Value: "missing", Usage: "pull the image: missing, always or never"},
	cli.BoolFlag{Name: "quiet, q", Usage: "accepted: berth prints no pull progress"},
	cli.StringFlag{Name: "volume-driver", Value: "local", Usage: "local only"},
	cli.BoolTFlag{Name: "disable-content-trust", Usage: "accepted: berth does not verify image signatures"},
	cli.BoolTFlag{Name: "tls-verify", Usage: "require HTTPS and verified certificates from the registry (--tls-verify=false for a local plain-HTTP registry)"},
}, refusedFlags(refusedRunFlags)...)

func containerOptions(c *cli.Context) (oneshot.Options, error) {
	if err := checkRefused(c, refusedRunFlags); err != nil {
		return oneshot.Options{}, err
	}
	if c.NArg() < 1 {
		return oneshot.Options{}, errors.New("an IMAGE is required")
	}
	if d := c.String("log-driver"); d != "k8s-file" {
		return oneshot.Options{}, fmt.Errorf("--log-driver %q: berth keeps the container log itself, in k8s-file format", d)
	}
	if d := c.String("volume-driver"); d != "local" {
		return oneshot.Options{}, fmt.Errorf("--volume-driver %q: only local volumes (directories) are supported", d)
	}
	if c.IsSet("disable-content-trust") && !c.BoolT("disable-content-trust") {
		return oneshot.Options{}, errors.New("--disable-content-trust=false: berth does not verify image signatures")
	}
	if p := c.String("platform"); p != "" && p != runtime.GOOS+"/"+runtime.GOARCH {
		return oneshot.Options{}, fmt.Errorf("--platform %s: only %s/%s images run on this host", p, runtime.GOOS, runtime.GOARCH)
	}
	sizes := map[string]*int64{}
	var mem, swap, memRes, shm int64
	for name, dst := range map[string]*int64{"memory": &mem, "memory-swap": &swap, "memory-reservation": &memRes, "shm-size": &shm} {
		sizes[name] = dst
		v := c.String(name)
		if name == "memory-swap" && v == "-1" {
			*dst = -1
			continue
		}
		n, err := parseSize(v)
		if err != nil {
			return oneshot.Options{}, fmt.Errorf("--%s: %w", name, err)
		}
		*dst = n
	}
	env, err := envFromFlags(c.StringSlice("env-file"), c.StringSlice("env"))
	if err != nil {
		return oneshot.Options{}, err
	}
	labels, err := labelsFromFlags(c.StringSlice("label-file"), c.StringSlice("label"))
	if err != nil {
		return oneshot.Options{}, err
	}
	vols, tmpfs := c.StringSlice("volume"), c.StringSlice("tmpfs")
	for _, m := range c.StringSlice("mount") {
		v, t, err := parseMountFlag(m)
		if err != nil {
			return oneshot.Options{}, err
		}
		if v != "" {
			vols = append(vols, v)
		}
		if t != "" {
			tmpfs = append(tmpfs, t)
		}
	}
	o := oneshot.Options{
		Image: c.Args().First(), Name: c.String("name"), Cmd: c.Args().Tail(), Env: env, Labels: labels,
		Annotations: c.StringSlice("annotation"), Volumes: vols, Tmpfs: tmpfs, Devices: c.StringSlice("device"),
		Publish: c.StringSlice("publish"), PublishAll: c.Bool("publish-all"), Expose: c.StringSlice("expose"),
		Workdir: c.String("workdir"), User: c.String("user"), GroupAdd: c.StringSlice("group-add"),
		Network: c.String("network"), IP: c.String("ip"), MAC: c.String("mac-address"),
		Hostname: c.String("hostname"), Domainname: c.String("domainname"),
		PID: c.String("pid"), IPC: c.String("ipc"), UTS: c.String("uts"), Cgroupns: c.String("cgroupns"),
		DNS: c.StringSlice("dns"), DNSSearch: c.StringSlice("dns-search"), DNSOptions: c.StringSlice("dns-option"),
		AddHosts: c.StringSlice("add-host"), ReadOnly: c.Bool("read-only"),
		CapAdd: c.StringSlice("cap-add"), CapDrop: c.StringSlice("cap-drop"), Privileged: c.Bool("privileged"),
		SecurityOpt: c.StringSlice("security-opt"), Ulimits: c.StringSlice("ulimit"), Sysctls: c.StringSlice("sysctl"),
		ShmSize: shm, Memory: mem, MemorySwap: swap, MemoryReservation: memRes, OOMKillDisable: c.Bool("oom-kill-disable"),
		CPUs: c.Float64("cpus"), CPUPeriod: c.Uint64("cpu-period"), CPUQuota: c.Int64("cpu-quota"),
		CPUShares: c.Uint64("cpu-shares"), CpusetCpus: c.String("cpuset-cpus"), CpusetMems: c.String("cpuset-mems"),
		BlkioWeight: uint16(c.Uint("blkio-weight")), DeviceCgroupRules: c.StringSlice("device-cgroup-rule"),
		PidsLimit: c.Int64("pids-limit"), Umask: c.String("umask"),
		Init: c.Bool("init"), InitBinary: c.String("init-path"), Restart: c.String("restart"),
		StopSignal: c.String("stop-signal"), StopTimeout: c.Int("stop-timeout"),
		TTY: c.Bool("tty"), Interactive: c.Bool("interactive"), Detach: c.Bool("detach"), Remove: c.Bool("rm"),
		Pull: c.String("pull"), TLSVerify: c.BoolT("tls-verify"), Home: c.String("home"), VolumeDir: c.String("volume-dir"),
		Root: c.GlobalString("root"),
	}
	if c.IsSet("read-only-tmpfs") {
		v := c.BoolT("read-only-tmpfs")
		o.ReadOnlyTmpfs = &v
	}
	o.Unsetenv = c.StringSlice("unsetenv")
	o.BlkioWeightDevice, o.DeviceReadBps, o.DeviceWriteBps = c.StringSlice("blkio-weight-device"), c.StringSlice("device-read-bps"), c.StringSlice("device-write-bps")
	o.DeviceReadIOps, o.DeviceWriteIOps = c.StringSlice("device-read-iops"), c.StringSlice("device-write-iops")
	o.CPURtPeriod, o.CPURtRuntime = c.Uint64("cpu-rt-period"), c.Int64("cpu-rt-runtime")
	if v := c.String("memory-swappiness"); v != "" && v != "-1" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, fmt.Errorf("--memory-swappiness %q: want 0 to 100", v)
		}
		o.MemorySwappiness = &n
	}
	if c.IsSet("oom-score-adj") {
		v := c.Int("oom-score-adj")
		o.OOMScoreAdj = &v
	}
	if c.IsSet("entrypoint") {
		e := c.String("entrypoint")
		o.Entrypoint = &e
	}
	if o.InitBinary != "" && !o.Init {
		return o, errors.New("--init-path needs --init")
	}
	return o, nil
}

func parseSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	switch strings.ToLower(s[len(s)-1:]) {
	case "b":
		s = s[:len(s)-1]
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 256m)", s)
	}
	return n * mult, nil
}

// readKVFile reads docker's env/label file format: KEY=VALUE or KEY lines,
// blank lines and # comments skipped, values verbatim (no quotes removed).
func readKVFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, _ := strings.Cut(line, "=")
		if k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("%s:%d: %q is not NAME=VALUE", path, n, line)
		}
		out = append(out, line)
	}
	return out, sc.Err()
}

// envFromFlags is --env-file then -e; a NAME without "=" takes the host's
// value, and is dropped when the host has none (docker's rule).
func envFromFlags(files, flags []string) ([]string, error) {
	var all []string
	for _, f := range files {
		kv, err := readKVFile(f)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		all = append(all, kv...)
	}
	all = append(all, flags...)
	var out []string
	for _, kv := range all {
		if strings.Contains(kv, "=") {
			out = append(out, kv)
		} else if v, ok := os.LookupEnv(kv); ok {
			out = append(out, kv+"="+v)
		}
	}
	return out, nil
}

func labelsFromFlags(files, flags []string) (map[string]string, error) {
	var all []string
	for _, f := range files {
		kv, err := readKVFile(f)
		if err != nil {
			return nil, fmt.Errorf("--label-file: %w", err)
		}
		all = append(all, kv...)
	}
	out := map[string]string{}
	for _, kv := range append(all, flags...) {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("--label %q: want KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

// parseMountFlag translates --mount into the -v or --tmpfs form.
func parseMountFlag(s string) (vol, tmpfs string, err error) {
	kv := map[string]string{}
	ro := false
	for _, f := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(f, "=")
		switch {
		case k == "ro" || k == "readonly":
			ro = !ok || v == "true" || v == "1"
		case !ok:
			return "", "", fmt.Errorf("--mount %q: %q is not KEY=VALUE", s, f)
		default:
			switch k {
			case "src":
				k = "source"
			case "dst", "target":
				k = "destination"
			}
			kv[k] = v
		}
	}
	dst := kv["destination"]
	if dst == "" {
		return "", "", fmt.Errorf("--mount %q: no destination", s)
	}
	switch kv["type"] {
	case "bind", "volume":
		src := kv["source"]
		if kv["type"] == "bind" && !strings.HasPrefix(src, "/") {
			return "", "", fmt.Errorf("--mount %q: a bind needs an absolute source", s)
		}
		v := dst
		if src != "" {
			v = src + ":" + dst
		}
		if ro {
			if src == "" {
				return "", "", fmt.Errorf("--mount %q: a read-only anonymous volume would stay empty", s)
			}
			v += ":ro"
		}
		return v, "", nil
	case "tmpfs":
		t := dst
		var opts []string
		if sz := kv["tmpfs-size"]; sz != "" {
			opts = append(opts, "size="+sz)
		}
		if m := kv["tmpfs-mode"]; m != "" {
			opts = append(opts, "mode="+m)
		}
		if len(opts) > 0 {
			t += ":" + strings.Join(opts, ",")
		}
		return "", t, nil
	}
	return "", "", fmt.Errorf("--mount %q: type must be bind, volume or tmpfs", s)
}
