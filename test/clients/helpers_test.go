package clients

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/linux/rootfs"
	"berth/internal/testutil"
)

// imageTag is the name the offline test image is loaded under.
const imageTag = "localhost/berth-clients:latest"

// buildImageArchive writes a docker-archive (the `docker save` layout that
// both `ctr images import` and `podman load` read) holding one layer: the
// busybox-static rootfs, plus /bin/notexec, a file without the exec bit for
// the permission-denied case.
func buildImageArchive(t *testing.T, path string) {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	testutil.BusyboxRootfs(t, rootfs)
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "notexec"), []byte("#!/bin/sh\necho no\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeDockerArchive(t, path, []archiveImage{{
		tags:   []string{imageTag},
		config: map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, "Cmd": []string{"sh"}},
		layers: [][]byte{tarDir(t, rootfs)},
	}})
}

// archiveImage is one image of a docker-archive: its tags, the "config"
// object of its image config (Env, Cmd, Entrypoint, User, WorkingDir,
// ExposedPorts, ...) and its layers, uncompressed tars, bottom first.
type archiveImage struct {
	tags   []string
	config map[string]any
	layers [][]byte
}

// writeDockerArchive writes images as one docker-archive; a layer shared by
// several images is stored once.
func writeDockerArchive(t *testing.T, path string, images []archiveImage) {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	add := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	written := map[string]bool{}
	var manifest []map[string]any
	for _, img := range images {
		var diffIDs, files []string
		for _, layer := range img.layers {
			sum := sha256.Sum256(layer)
			hx := hex.EncodeToString(sum[:])
			diffIDs = append(diffIDs, "sha256:"+hx)
			files = append(files, hx+"/layer.tar")
			if written[hx] {
				continue
			}
			written[hx] = true
			if err := tw.WriteHeader(&tar.Header{Name: hx + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)}); err != nil {
				t.Fatal(err)
			}
			add(hx+"/layer.tar", layer)
		}
		cfg, err := json.Marshal(map[string]any{
			"architecture": runtime.GOARCH,
			"os":           "linux",
			"created":      "2026-01-01T00:00:00Z",
			"config":       img.config,
			"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		})
		if err != nil {
			t.Fatal(err)
		}
		csum := sha256.Sum256(cfg)
		chex := hex.EncodeToString(csum[:])
		if !written[chex] {
			written[chex] = true
			add(chex+".json", cfg)
		}
		manifest = append(manifest, map[string]any{"Config": chex + ".json", "RepoTags": img.tags, "Layers": files})
	}
	mb, err := json.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	add("manifest.json", mb)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tarDir archives dir's tree (dirs, regular files, symlinks) in name order.
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				t.Fatal(err)
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			t.Fatal(err)
		}
		h.Name = rel
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write(b); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// unmountUnder lazily unmounts every mount point at or below dir, deepest
// first, so a failed test never leaves mounts behind that RemoveAll would
// trip over.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := rootfs.UnescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, mp := range mps {
		_ = unix.Unmount(mp, unix.MNT_DETACH)
	}
}

// pidsWithArg lists the processes whose command line contains arg, used to
// find the shims and conmons a suite started (they outlive their client).
func pidsWithArg(arg string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte(arg)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killPids SIGKILLs the given processes.
func killPids(pids []int) {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cgroupFile reads a cgroup v1 controller file of pid's cgroup, e.g.
// ("memory", "memory.limit_in_bytes").
func cgroupFile(pid int, controller, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, parts[2], file))
				return strings.TrimSpace(string(v)), err
			}
		}
	}
	return "", os.ErrNotExist
}

// removeIfCreated arranges for the listed host directories that do not exist
// yet to be removed again at the end of t, if they are empty then: clients
// create a few fixed directories (containerd's shim socket dir, podman's
// network run dir) outside the locations a test can choose.
func removeIfCreated(t *testing.T, dirs ...string) {
	var missing []string
	for _, d := range dirs {
		if _, err := os.Lstat(d); os.IsNotExist(err) {
			missing = append(missing, d)
		}
	}
	t.Cleanup(func() {
		// Deepest first, so a parent is empty by the time it is tried.
		sort.Slice(missing, func(i, j int) bool { return len(missing[i]) > len(missing[j]) })
		for _, d := range missing {
			_ = os.Remove(d)
		}
	})
}

// cgroupDirs lists name under every mounted cgroup hierarchy, for
// removeIfCreated: runtimes remove a container's own cgroup but not the
// parents a client put it under (containerd's /<namespace>, podman's
// /libpod_parent).
func cgroupDirs(name string) []string {
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil
	}
	var dirs []string
	for _, e := range ents {
		// Skip the cpu -> cpu,cpuacct style symlinks: the real dir is listed too.
		if e.IsDir() {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name(), name))
		}
	}
	return dirs
}

// berthArchive writes the test image under tag as a docker-archive made by
// berth copy, the way a user brings an image to a daemon without a registry:
// the hand-built archive goes into an OCI layout, and from the layout to
// docker-archive:FILE:TAG.
func berthArchive(t *testing.T, dir, tag string) string {
	t.Helper()
	src := filepath.Join(dir, "src.tar")
	buildImageArchive(t, src)
	layout := filepath.Join(dir, "layout")
	out := filepath.Join(dir, "image.tar")
	for _, args := range [][]string{
		{"copy", "--quiet", "docker-archive:" + src, "oci:" + layout + ":latest"},
		{"copy", "--quiet", "oci:" + layout + ":latest", "docker-archive:" + out + ":" + tag},
	} {
		if b, err := exec.Command(berthBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	return out
}

// stopDaemon sends SIGTERM to a daemon the suite started and waits for it,
// killing it after grace.
func stopDaemon(cmd *exec.Cmd, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// logTail is the last n lines of a daemon's log file, for failure messages.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// deleteRuntimeContainers force-deletes every container the runtime bin
// still lists under root: what a killed shim or client left behind.
func deleteRuntimeContainers(bin, root string) {
	out, err := exec.Command(bin, "--root", root, "list", "-q").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		_ = exec.Command(bin, "--root", root, "delete", "--force", id).Run()
	}
}

// startLogged starts argv (a daemon) with a clean environment and its
// output in logPath, which is closed at the end of t, after the cleanups
// registered later (the ones that stop the daemon).
func startLogged(t *testing.T, logPath string, argv ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}
