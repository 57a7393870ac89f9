package unpack

import (
	"bufio"
	"bytes"
	"context"
	_ "crypto/sha256" // digest algorithms go-digest resolves at run time
	_ "crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// Layer is one compressed layer blob to apply.
type Layer struct {
	// Open returns the blob as stored (compressed or not).
	Open func() (io.ReadCloser, error)
	// MediaType picks the decompressor; unknown or empty types fall back to
	// the magic bytes.
	MediaType string
	// Digest is the blob digest; when set the blob is verified.
	Digest digest.Digest
	// DiffID is the digest of the uncompressed tar; when set it is verified.
	DiffID digest.Digest
	// Size is the blob size from its descriptor; when > 0 a blob of any
	// other size is refused (and never read past Size+1 bytes).
	Size int64
}

var (
	gzipMagic = []byte{0x1f, 0x8b, 0x08}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Compression names a layer compression.
type Compression string

const (
	None Compression = "none"
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// detect picks the compression from the media type, then from the magic
// bytes: some registries label zstd layers as gzip and vice versa, and the
// bytes never lie.
func detect(mediaType string, head []byte) Compression {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return Gzip
	case bytes.HasPrefix(head, zstdMagic):
		return Zstd
	}
	switch {
	case strings.HasSuffix(mediaType, "+gzip"), strings.HasSuffix(mediaType, ".tar.gzip"):
		return Gzip
	case strings.HasSuffix(mediaType, "+zstd"), strings.HasSuffix(mediaType, ".tar.zstd"):
		return Zstd
	}
	return None
}

// zstd decoder bounds: a frame declaring a larger window is refused before
// any allocation (a zstd bomb), instead of reserving gigabytes.
const (
	zstdMaxWindow = 1 << 27
	zstdMaxMemory = 1 << 30
)

// Decompress wraps r in the decompressor its media type or magic bytes call
// for. The returned closer releases decoder resources, not r.
func Decompress(r io.Reader, mediaType string) (io.ReadCloser, Compression, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, err := br.Peek(4)
	if err != nil && err != io.EOF {
		return nil, None, err
	}
	c := detect(mediaType, head)
	switch c {
	case Gzip:
		if p := igzipPath(); p != "" {
			zr, err := startIgzip(p, br)
			if err != nil {
				return nil, c, err
			}
			return zr, c, nil
		}
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, c, fmt.Errorf("gzip: %w", err)
		}
		return zr, c, nil
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(zstdMaxMemory), zstd.WithDecoderConcurrency(2))
		if err != nil {
			return nil, c, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), c, nil
	}
	return io.NopCloser(br), c, nil
}

// ErrTooLarge is returned when a layer exceeds the byte or entry limits.
var ErrTooLarge = errors.New("layer exceeds unpack limits")

const chunkSize = 1 << 20

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// pipe carries one layer's uncompressed bytes from its decoder goroutine to
// the applier through a bounded queue of chunks, so decoding (and hashing)
// runs ahead of, and in parallel with, the file system work.
//
// The pipe also computes the DiffID of what it delivers: hashing on the
// reading side keeps it off the decoder goroutine, which is the bottleneck
// (inflate is serial), while the applier mostly waits for data.
type pipe struct {
	h    hash.Hash     // nil: no DiffID to check
	want digest.Digest // expected DiffID
	ch   chan *[]byte
	done chan struct{} // closed when the producer has finished
	err  error         // producer's result, valid after done
	cur  *[]byte
	off  int
	stop chan struct{}
	once sync.Once
}

func newPipe(depth int, diffID digest.Digest) *pipe {
	p := &pipe{ch: make(chan *[]byte, depth), done: make(chan struct{}), stop: make(chan struct{}), want: diffID}
	if diffID.Validate() == nil {
		p.h = diffID.Algorithm().Hash()
	} // else produce fails on the invalid DiffID before sending anything

	return p
}

func (p *pipe) Read(b []byte) (int, error) {
	for p.cur == nil {
		c, ok := <-p.ch
		if !ok {
			<-p.done
			if p.err != nil {
				return 0, p.err
			}
			if p.h != nil {
				if got := digest.NewDigest(p.want.Algorithm(), p.h); got != p.want {
					return 0, fmt.Errorf("layer diff id mismatch: uncompressed tar is %s, expected %s", got, p.want)
				}
				p.h = nil
			}
			return 0, io.EOF
		}
		if len(*c) == 0 {
			chunkPool.Put(c)
			continue
		}
		if p.h != nil {
			p.h.Write(*c)
		}
		p.cur, p.off = c, 0
	}
	n := copy(b, (*p.cur)[p.off:])
	p.off += n
	if p.off == len(*p.cur) {
		full := (*p.cur)[:cap(*p.cur)]
		chunkPool.Put(&full)
		p.cur = nil
	}
	return n, nil
}

// Close tells the producer to give up (on an apply error).
func (p *pipe) Close() { p.once.Do(func() { close(p.stop) }) }

// produce decodes one layer into p, verifying Digest (p checks the DiffID) and bounding
// the uncompressed size by limit. The verification error, if any, is what the
// applier reads after the tar end, so a layer is never reported applied
// unless every byte matched.
func (l *Layer) produce(ctx context.Context, p *pipe, limit int64) {
	defer close(p.done)
	defer close(p.ch)
	p.err = func() error {
		if l.Digest != "" {
			if err := l.Digest.Validate(); err != nil {
				return fmt.Errorf("layer digest %q: %w", l.Digest, err)
			}
		}
		if l.DiffID != "" {
			if err := l.DiffID.Validate(); err != nil {
				return fmt.Errorf("layer diff id %q: %w", l.DiffID, err)
			}
		}
		blob, err := l.Open()
		if err != nil {
			return err
		}
		defer blob.Close()
		var src io.Reader = blob
		if l.Size > 0 {
			src = &sizeChecked{r: io.LimitReader(blob, l.Size+1), want: l.Size}
		}
		if l.Digest != "" {
			// Read and hash the blob in its own goroutine, so the serial
			// inflate loop does nothing but inflate.
			raw := newPipe(4, "")
			go readVerified(ctx, src, raw, l.Digest)
			defer raw.drain()
			src = raw
		}
		dr, _, err := Decompress(src, l.MediaType)
		if err != nil {
			return err
		}
		defer dr.Close()
		var total int64
		for {
			if err := ctx.Err(); err != nil {
				return err // checked every chunk: a ready channel must not outrun a cancel
			}
			bp := chunkPool.Get().(*[]byte)
			b := (*bp)[:chunkSize]
			n, rerr := fill(dr, b)
			if n > 0 {
				total += int64(n)
				if total > limit {
					chunkPool.Put(bp)
					return fmt.Errorf("%w: more than %d uncompressed bytes", ErrTooLarge, limit)
				}
				*bp = b[:n]
				select {
				case p.ch <- bp:
				case <-p.stop:
					chunkPool.Put(bp)
					return errors.New("unpack aborted")
				case <-ctx.Done():
					chunkPool.Put(bp)
					return ctx.Err()
				}
			} else {
				chunkPool.Put(bp)
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				return fmt.Errorf("decompressing layer: %w", rerr)
			}
		}
		// Trailing bytes after the compressed stream are part of the blob and
		// must match its digest too; reading to the end returns the digest
		// check's verdict.
		if _, err := io.Copy(io.Discard, src); err != nil {
			return fmt.Errorf("reading layer: %w", err)
		}
		return nil
	}()
}

// fill reads into b until it is full or the stream ends. Unlike
// io.ReadFull it keeps io.EOF (a clean end) apart from
// io.ErrUnexpectedEOF (a truncated stream, which is an error).
func fill(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readVerified copies blob into p in chunks, hashing as it goes; the
// digest verdict is p's final error.
func readVerified(ctx context.Context, blob io.Reader, p *pipe, want digest.Digest) {
	defer close(p.done)
	defer close(p.ch)
	h := want.Algorithm().Hash()
	p.err = func() error {
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			bp := chunkPool.Get().(*[]byte)
			b := (*bp)[:chunkSize]
			n, rerr := fill(blob, b)
			if n > 0 {
				h.Write(b[:n])
				*bp = b[:n]
				select {
				case p.ch <- bp:
				case <-p.stop:
					chunkPool.Put(bp)
					return errors.New("unpack aborted")
				case <-ctx.Done():
					chunkPool.Put(bp)
					return ctx.Err()
				}
			} else {
				chunkPool.Put(bp)
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				return fmt.Errorf("reading layer blob: %w", rerr)
			}
		}
		if got := digest.NewDigest(want.Algorithm(), h); got != want {
			return fmt.Errorf("layer digest mismatch: blob is %s, expected %s", got, want)
		}
		return nil
	}()
}

// drain stops the producer and waits for it to finish.
func (p *pipe) drain() {
	p.Close()
	for c := range p.ch {
		chunkPool.Put(c)
	}
	<-p.done
}

// sizeChecked fails a blob whose length differs from its descriptor's.
type sizeChecked struct {
	r    io.Reader
	n    int64
	want int64
}

func (s *sizeChecked) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if s.n > s.want {
		return n, fmt.Errorf("layer blob is larger than its descriptor's %d bytes", s.want)
	}
	if err == io.EOF && s.n != s.want {
		return n, fmt.Errorf("layer blob is %d bytes, its descriptor says %d", s.n, s.want)
	}
	return n, err
}
