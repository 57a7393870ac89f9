package oneshot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// The container log is in podman's (and the CRI's) k8s-file format, one
// record per line:
//
//	2024-05-06T07:08:09.123456789Z stdout F a whole line
//	2024-05-06T07:08:09.223456789Z stderr P the start of a line without a newline
//
// F ends a line, P is a part of one (output that ended without a newline
// when it was read). Each record is written with one write(2) on an
// O_APPEND file, so records never interleave.

const logTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

type logWriter struct {
	mu sync.Mutex
	f  *os.File
}

func newLogWriter(f *os.File) *logWriter { return &logWriter{f: f} }

// stream returns a writer whose output is recorded as stream.
func (w *logWriter) stream(name string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		ts := time.Now().UTC().Format(logTimeFormat)
		var buf bytes.Buffer
		rest := p
		for len(rest) > 0 {
			i := bytes.IndexByte(rest, '\n')
			tag, line := "P", rest
			if i >= 0 {
				tag, line, rest = "F", rest[:i], rest[i+1:]
			} else {
				rest = nil
			}
			fmt.Fprintf(&buf, "%s %s %s ", ts, name, tag)
			buf.Write(line)
			buf.WriteByte('\n')
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, err := w.f.Write(buf.Bytes()); err != nil {
			return 0, err
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// LogEntry is one line of output (or the unfinished end of the output).
type LogEntry struct {
	Time   time.Time
	Stream string // stdout or stderr
	Text   string // with its newline, unless the line is unfinished
}

// logReader turns records back into lines, joining the parts of a line.
type logReader struct {
	partial map[string]*LogEntry
}

// parse takes one record; it returns a finished line, or nil.
func (lr *logReader) parse(rec string) *LogEntry {
	f := strings.SplitN(rec, " ", 4)
	if len(f) < 3 {
		return nil
	}
	ts, err := time.Parse(time.RFC3339Nano, f[0])
	if err != nil {
		return nil
	}
	text := ""
	if len(f) == 4 {
		text = f[3]
	}
	stream := f[1]
	e := lr.partial[stream]
	if e == nil {
		e = &LogEntry{Time: ts, Stream: stream}
	}
	e.Text += text
	if f[2] == "P" {
		lr.partial[stream] = e
		return nil
	}
	delete(lr.partial, stream)
	e.Text += "\n"
	return e
}

// LogOptions are logs' flags.
type LogOptions struct {
	Follow bool
	Tail   int // <0: all
	Since  time.Time
}

// Logs calls emit for each line of the container's log: the last Tail
// lines, then with Follow the new ones until the container's runner is
// gone (or ctx ends).
func (c *Container) Logs(ctx context.Context, o LogOptions, emit func(LogEntry) error) error {
	f, err := os.Open(c.Paths.Log)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // never run: no output yet
		}
		return err
	}
	defer f.Close()
	lr := &logReader{partial: map[string]*LogEntry{}}
	br := bufio.NewReaderSize(f, 64<<10)
	var pending string
	// read returns the finished lines now in the file.
	read := func() ([]LogEntry, error) {
		var out []LogEntry
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				pending += line // a record still being written
				if err == io.EOF {
					return out, nil
				}
				return out, err
			}
			line, pending = pending+line, ""
			if e := lr.parse(strings.TrimSuffix(line, "\n")); e != nil && !e.Time.Before(o.Since) {
				out = append(out, *e)
			}
		}
	}
	first, err := read()
	if err != nil {
		return err
	}
	if !o.Follow {
		// An unfinished last line counts as a line.
		first = append(first, lr.unfinished()...)
	}
	if o.Tail >= 0 && len(first) > o.Tail {
		first = first[len(first)-o.Tail:]
	}
	for _, e := range first {
		if err := emit(e); err != nil {
			return err
		}
	}
	if !o.Follow {
		return nil
	}
	for {
		if err := c.Reload(); err != nil {
			return nil // removed
		}
		done := !c.RunnerAlive() && !c.Running()
		es, err := read()
		if err != nil {
			return err
		}
		for _, e := range es {
			if err := emit(e); err != nil {
				return err
			}
		}
		if done {
			for _, e := range lr.unfinished() {
				if err := emit(e); err != nil {
					return err
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// unfinished returns the lines still without their end (the output
// stopped without a newline).
func (lr *logReader) unfinished() []LogEntry {
	var out []LogEntry
	for _, s := range []string{"stdout", "stderr"} {
		if e := lr.partial[s]; e != nil {
			out = append(out, *e)
		}
	}
	return out
}
