package demo

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces live (as with `ip netns`).
const NetnsDir = "/var/run/netns"

// CreateNetns makes a new named network namespace, the way `ip netns add`
// does: unshare on a throwaway thread and bind-mount its namespace file.
func CreateNetns(name string) (string, error) {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(NetnsDir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return "", err
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies in the new namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, ""); err != nil {
			errc <- err
			return
		}
		// Bring up loopback so local services work inside.
		errc <- exec.Command("/proc/self/exe", "demo-payload", "--lo-up").Run()
	}()
	if err := <-errc; err != nil {
		DeleteNetns(name)
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	return path, nil
}

// DeleteNetns removes a named network namespace; a missing one is fine.
func DeleteNetns(name string) error {
	path := filepath.Join(NetnsDir, name)
	_ = unix.Unmount(path, unix.MNT_DETACH)
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// InNetns runs f on a thread inside the network namespace at path. Sockets
// and processes f creates belong to that namespace.
func InNetns(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see CreateNetns
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Peer is a TCP service in a namespace that greets whoever connects; it is
// what the demo container proves it can reach.
type Peer struct{ ln net.Listener }

// StartPeer listens on addr inside the network namespace at nsPath.
func StartPeer(nsPath, addr, greeting string) (*Peer, error) {
	var ln net.Listener
	err := InNetns(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s (you are %s)\n", greeting, c.RemoteAddr())
			c.Close()
		}
	}()
	return &Peer{ln: ln}, nil
}

// Close stops the peer.
func (p *Peer) Close() error { return p.ln.Close() }
