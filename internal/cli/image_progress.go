package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"berth/internal/image"
	"berth/internal/image/manifest"

	"github.com/opencontainers/go-digest"
	"golang.org/x/term"
)

// progress renders copy events on stderr: redrawn per-blob bars when stderr
// is a terminal, otherwise one line per blob event plus a periodic summary
// line (logs and CI output stay readable). It never writes to stdout.
type progress struct {
	w      io.Writer
	quiet  bool
	tty    bool
	width  int
	mu     sync.Mutex
	blobs  map[digest.Digest]*blobProgress
	order  []digest.Digest
	drawn  int // lines of the last redraw
	stopCh chan struct{}
	wg     sync.WaitGroup
	start  time.Time
}

type blobProgress struct {
	size, done int64
	state      string // "", "done", "skipped"
	kind       string // "blob" or "config", as skopeo labels them
}

// plainInterval is how often the non-terminal summary line is printed.
const plainInterval = 2 * time.Second

func startProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet, blobs: map[digest.Digest]*blobProgress{}, stopCh: make(chan struct{}), start: time.Now()}
	if quiet {
		return p
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
		if wd, _, err := term.GetSize(int(f.Fd())); err == nil {
			p.width = wd
		}
	}
	if p.width <= 0 {
		p.width = 80
	}
	fmt.Fprintln(w, "Getting image source signatures")
	interval := plainInterval
	if p.tty {
		interval = 150 * time.Millisecond
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stopCh:
				return
			case <-t.C:
				p.tick()
			}
		}
	}()
	return p
}

func (p *progress) event(e image.Event) {
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.blobs[e.Desc.Digest]
	if b == nil && e.Kind != image.ManifestDone {
		b = &blobProgress{size: e.Desc.Size, kind: "blob"}
		if e.Desc.MediaType == manifest.OCIConfig || e.Desc.MediaType == manifest.DockerConfig {
			b.kind = "config"
		}
		p.blobs[e.Desc.Digest] = b
		p.order = append(p.order, e.Desc.Digest)
	}
	switch e.Kind {
	case image.BlobBytes:
		b.done += e.N
	case image.BlobDone:
		b.done, b.state = b.size, "done"
		if !p.tty {
			fmt.Fprintf(p.w, "Copying %s %s done %s\n", b.kind, short(e.Desc.Digest), human(b.size))
		}
	case image.BlobSkipped:
		b.state = "skipped"
		if !p.tty {
			fmt.Fprintf(p.w, "Copying %s %s skipped: already exists\n", b.kind, short(e.Desc.Digest))
		}
	case image.BlobStart:
		if !p.tty {
			fmt.Fprintf(p.w, "Copying %s %s (%s)\n", b.kind, short(e.Desc.Digest), human(b.size))
		}
	}
}

func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.redraw()
		return
	}
	var done, total int64
	active, finished := 0, 0
	for _, b := range p.blobs {
		done += b.done
		total += b.size
		if b.state == "" {
			active++
		} else {
			finished++
		}
	}
	if active > 0 {
		fmt.Fprintf(p.w, "Progress: %d/%d blobs, %s / %s\n", finished, len(p.blobs), human(done), human(total))
	}
}

// redraw moves the cursor back over the previous bars and draws them
// again; the caller holds p.mu.
func (p *progress) redraw() {
	var sb strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&sb, "\x1b[%dA", p.drawn)
	}
	for _, d := range p.order {
		b := p.blobs[d]
		sb.WriteString("\x1b[2K")
		label := "Copying " + b.kind + " " + short(d)
		switch b.state {
		case "skipped":
			sb.WriteString(label + " skipped: already exists\n")
			continue
		}
		frac := 1.0
		if b.size > 0 {
			frac = min(float64(b.done)/float64(b.size), 1)
		}
		status := fmt.Sprintf(" %s / %s", human(b.done), human(b.size))
		if b.state == "done" {
			status += " done"
		}
		// The same width for every bar (status texts differ in length),
		// narrower only when the terminal is.
		barW := min(30, p.width-len(label)-len(" [] 1023.9 MiB / 1023.9 MiB done"))
		if barW < 5 {
			sb.WriteString(label + status + "\n")
			continue
		}
		n := int(frac * float64(barW))
		sb.WriteString(label + " [" + strings.Repeat("=", n) + strings.Repeat(" ", barW-n) + "]" + status + "\n")
	}
	p.drawn = len(p.order)
	io.WriteString(p.w, sb.String())
}

// stop ends the ticker and draws the final state.
func (p *progress) stop(ok bool) {
	if p.quiet {
		return
	}
	close(p.stopCh)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.redraw()
	}
	if ok {
		fmt.Fprintln(p.w, "Writing manifest to image destination")
	}
}

func (p *progress) summary(res *image.Result) {
	if p.quiet {
		return
	}
	el := time.Since(p.start).Round(time.Millisecond)
	fmt.Fprintf(p.w, "Copied %s: %d blobs fetched (%s), %d already present, in %s\n", res.Digest, res.Fetched, human(res.Bytes), res.Skipped, el)
}

func short(d digest.Digest) string {
	s := d.String()
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, u := float64(n), 0
	for f >= unit && u < 4 {
		f /= unit
		u++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[u-1])
}
