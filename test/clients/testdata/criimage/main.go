// Command criimage is the one program of the images the CRI suite builds
// offline in place of the ones critest pulls from registry.k8s.io. What it
// does depends on the name it is installed under:
//
//   - pause: the sandbox's pause process. Reaps children, exits 0 on
//     SIGINT or SIGTERM.
//   - nginx: a web server answering 200 on $NGINX_PORT (default 80). As
//     nginx does, it writes /var/run/nginx.pid and shows itself as
//     "nginx: master process ..." in its command line (critest reads pid
//     1's cmdline to tell whether the pod shares its pid namespace).
//   - httpd: a web server answering 200 on port 80, logging "httpd" first.
//   - nonewprivs: installed setuid root, prints "Effective uid: N".
//   - pgrep PATTERN and ipcs -m: the busybox applets Debian's
//     busybox-static lacks (process names matching PATTERN; the IPC
//     namespace's shared memory segments, from /proc/sysvipc/shm).
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	switch filepath.Base(exe) {
	case "pause":
		pause()
	case "nginx":
		if !strings.Contains(os.Args[0], "master process") {
			argv := append([]string{"nginx: master process " + strings.Join(os.Args, " ")}, os.Args[1:]...)
			err := syscall.Exec(exe, argv, os.Environ())
			fmt.Fprintln(os.Stderr, "nginx: re-exec:", err)
			os.Exit(1)
		}
		if err := os.WriteFile("/var/run/nginx.pid", []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "nginx:", err)
			os.Exit(1)
		}
		port := os.Getenv("NGINX_PORT")
		if port == "" {
			port = "80"
		}
		serve("nginx", port, "<html><body><h1>Welcome to nginx!</h1></body></html>\n")
	case "httpd":
		fmt.Fprintln(os.Stderr, "httpd: listening on port 80")
		serve("httpd", "80", "<html><body><h1>It works!</h1></body></html>\n")
	case "nonewprivs":
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
	case "pgrep":
		os.Exit(pgrep(os.Args[1:]))
	case "ipcs":
		os.Exit(ipcs())
	default:
		fmt.Fprintf(os.Stderr, "criimage: unknown name %q\n", filepath.Base(exe))
		os.Exit(2)
	}
}

// pause waits for a stop signal; SIGCHLD reaps whatever died.
func pause() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}

// serve answers every request with page until SIGTERM or SIGINT.
func serve(name, port, page string) {
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
		<-sigs
		os.Exit(0)
	}()
	err := http.ListenAndServe(":"+port, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = fmt.Fprint(w, page)
	}))
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(1)
}

// pgrep prints the pid of every other process whose name matches the
// pattern (an extended regular expression), as procps' pgrep does; exit 1
// when none does.
func pgrep(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: pgrep PATTERN")
		return 2
	}
	re, err := regexp.Compile(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgrep:", err)
		return 2
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgrep:", err)
		return 3
	}
	code := 1
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err == nil && re.MatchString(strings.TrimSpace(string(comm))) {
			fmt.Println(pid)
			code = 0
		}
	}
	return code
}

// ipcs lists the shared memory segments of the caller's IPC namespace in
// util-linux's layout.
func ipcs() int {
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipcs:", err)
		return 1
	}
	fmt.Printf("\n------ Shared Memory Segments --------\n%-10s %-10s %-10s %-10s %-10s %-10s %-6s\n", "key", "shmid", "owner", "perms", "bytes", "nattch", "status")
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 8 {
			continue
		}
		key, _ := strconv.ParseInt(f[0], 10, 64)
		fmt.Printf("0x%08x %-10s %-10s %-10s %-10s %-10s\n", uint32(key), f[1], f[7], f[2], f[3], f[6])
	}
	fmt.Println()
	return 0
}
