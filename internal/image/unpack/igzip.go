package unpack

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Inflating is the serial step of unpacking a gzip layer: no Go inflater comes
// close to ISA-L's igzip (on this project's 2-core bench machine klauspost's
// inflate does 155 MB/s, igzip 530 MB/s). When igzip is installed (Debian
// package "isal"), gzip layers are inflated by it in a child process, the way
// containerd hands gzip layers to unpigz. Everything else stays here: the
// blob digest is checked on the bytes fed to igzip, the DiffID on the bytes
// it returns, the size limit on its output (it is killed past it), and a
// failing igzip fails the layer. EnvNoIgzip=1 turns it off.
const EnvNoIgzip = "BERTH_NO_IGZIP"

// igzipPath is the igzip found at first use, or "" (not installed, or
// turned off). Only an absolute path from PATH is taken.
var igzipPath = sync.OnceValue(func() string {
	if os.Getenv(EnvNoIgzip) == "1" {
		return ""
	}
	p, err := exec.LookPath("igzip")
	if err != nil || !filepath.IsAbs(p) {
		return ""
	}
	return p
})

// igzipReader is the decompressed stream of an igzip child fed from src.
type igzipReader struct {
	cmd    *exec.Cmd
	src    *srcErr
	fed    chan struct{} // closed when the feeding goroutine is done
	out    io.ReadCloser
	stderr bytes.Buffer
	err    error // set once the stream has ended: io.EOF or why it failed
}

func startIgzip(path string, src io.Reader) (*igzipReader, error) {
	z := &igzipReader{cmd: exec.Command(path, "-d", "-c", "-q"), src: &srcErr{r: src}, fed: make(chan struct{})}
	z.cmd.Stderr = &z.stderr
	out, err := z.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	z.out = out
	in, feed, err := os.Pipe()
	if err != nil {
		out.Close()
		return nil, err
	}
	z.cmd.Stdin = in
	// Room for each side to run ahead of the other (64 KiB by default):
	// both pipes at 1 MiB take a third off a big layer's unpack time.
	_, _ = unix.FcntlInt(feed.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	if f, ok := out.(*os.File); ok {
		_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	}
	err = z.cmd.Start()
	in.Close()
	if err != nil {
		feed.Close()
		return nil, fmt.Errorf("gzip: starting %s: %w", path, err)
	}
	go func() {
		defer close(z.fed)
		_, _ = io.Copy(feed, z.src) // a write error means igzip stopped: its exit says why
		feed.Close()
	}()
	return z, nil
}

func (z *igzipReader) Read(b []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	n, err := z.out.Read(b)
	if errors.Is(err, io.EOF) {
		// The output ended: only a clean exit makes it a whole stream
		// (a truncated or corrupt one makes igzip exit 1).
		z.err = io.EOF
		werr := z.cmd.Wait()
		<-z.fed
		if z.src.err != nil {
			// What fed igzip failed (a digest mismatch, a cancel): that,
			// not igzip's view of a cut stream, is the reason.
			z.err = z.src.err
		} else if werr != nil {
			msg := strings.TrimSpace(z.stderr.String())
			if msg == "" {
				msg = werr.Error()
			}
			z.err = fmt.Errorf("gzip: %s (igzip %w)", strings.TrimPrefix(msg, "igzip: "), werr)
		}
		return n, z.err
	}
	return n, err
}

// srcErr remembers why the input stopped, if not at its end.
type srcErr struct {
	r   io.Reader
	err error
}

func (s *srcErr) Read(b []byte) (int, error) {
	n, err := s.r.Read(b)
	if err != nil && !errors.Is(err, io.EOF) {
		s.err = err
	}
	return n, err
}

// Close stops igzip if the stream was not read to its end.
func (z *igzipReader) Close() error {
	if z.err == nil {
		z.err = errors.New("gzip: stream closed")
		z.cmd.Process.Kill()
		z.out.Close()
		z.cmd.Wait()
		<-z.fed // its next write fails: igzip is gone
	}
	return nil
}
