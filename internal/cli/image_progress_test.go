package cli

import (
	"bytes"
	"strings"
	"testing"

	"berth/internal/image"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func progressDesc(s string, size int64) ocispec.Descriptor {
	return ocispec.Descriptor{Digest: digest.FromString(s), Size: size}
}

func TestProgressPlain(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, blobs: map[digest.Digest]*blobProgress{}, stopCh: make(chan struct{})}
	a, b := progressDesc("a", 2048), progressDesc("b", 10)
	p.event(image.Event{Kind: image.BlobStart, Desc: a})
	p.event(image.Event{Kind: image.BlobBytes, Desc: a, N: 1024})
	p.event(image.Event{Kind: image.BlobSkipped, Desc: b})
	p.tick()
	p.event(image.Event{Kind: image.BlobDone, Desc: a})
	p.tick() // nothing active: no summary line
	got := buf.String()
	want := []string{
		"Copying blob " + short(a.Digest) + " (2.0 KiB)",
		"Copying blob " + short(b.Digest) + " skipped: already exists",
		"Progress: 1/2 blobs, 1.0 KiB / 2.0 KiB",
		"Copying blob " + short(a.Digest) + " done 2.0 KiB",
	}
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, lines[i], want[i])
		}
	}
	if strings.Contains(got, "\x1b") {
		t.Error("escape sequences on a non-terminal")
	}
}

func TestProgressTerminalBars(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, tty: true, width: 100, blobs: map[digest.Digest]*blobProgress{}, stopCh: make(chan struct{})}
	a := progressDesc("a", 4096)
	p.event(image.Event{Kind: image.BlobStart, Desc: a})
	p.event(image.Event{Kind: image.BlobBytes, Desc: a, N: 2048})
	p.tick()
	first := buf.String()
	if !strings.Contains(first, "["+strings.Repeat("=", 15)+strings.Repeat(" ", 15)+"] 2.0 KiB / 4.0 KiB") || strings.Contains(first, "\x1b[1A") {
		t.Fatalf("first frame: %q", first)
	}
	buf.Reset()
	p.event(image.Event{Kind: image.BlobDone, Desc: a})
	p.tick()
	if second := buf.String(); !strings.HasPrefix(second, "\x1b[1A") || !strings.Contains(second, "4.0 KiB / 4.0 KiB done") {
		t.Fatalf("redraw: %q", second)
	}
}

func TestHuman(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := human(n); got != want {
			t.Errorf("human(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestProgressLabelsConfig(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, blobs: map[digest.Digest]*blobProgress{}, stopCh: make(chan struct{})}
	c := progressDesc("cfg", 300)
	c.MediaType = "application/vnd.oci.image.config.v1+json"
	p.event(image.Event{Kind: image.BlobStart, Desc: c})
	if got := buf.String(); got != "Copying config "+short(c.Digest)+" (300 B)\n" {
		t.Fatalf("config line %q", got)
	}
}
