package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"berth/internal/atomicfile"
)

// Txn stages blobs for one copy into a layout. Blobs are safe to write from
// several goroutines at once; Commit and Abort end the transaction.
type Txn struct {
	dir     string
	stage   string
	stageFd *os.File // holds the staging dir's flock while the txn lives
	created bool     // Begin created the layout directory
	mu      sync.Mutex
	staged  map[digest.Digest]int64
	done    bool
	noSync  bool
}

// Option configures Begin.
type Option func(*Txn)

// NoSync skips fsync of blobs and index.json (default: sync, so a layout
// survives a crash right after a copy). For scratch layouts only.
func NoSync() Option { return func(t *Txn) { t.noSync = true } }

// Begin starts a transaction on dir, creating the directory (but not yet
// the layout files) if it does not exist. Staging directories that crashed
// copies left behind are removed.
func Begin(dir string, opts ...Option) (_ *Txn, retErr error) {
	t := &Txn{dir: dir, staged: map[digest.Digest]int64{}}
	for _, o := range opts {
		o(t)
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create layout: %w", err)
		}
		t.created = true
	case err != nil:
		return nil, fmt.Errorf("open layout: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("open layout %s: not a directory", dir)
	}
	defer func() {
		if retErr != nil && t.created {
			os.Remove(dir)
		}
	}()
	// Under the layout lock, so cleanStale cannot remove another
	// transaction's staging directory between its mkdir and its flock.
	unlock, err := Lock(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// A failed first copy next door removed the directory it had
		// created, between our mkdir and our lock: make it again.
		if err = os.MkdirAll(dir, 0o755); err == nil {
			t.created = true
			unlock, err = Lock(dir)
		}
	}
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Checked under the lock: a concurrent first copy into the same new
	// directory commits (blobs, index.json, oci-layout) while holding it.
	if !t.created {
		if err := checkLayoutDir(dir); err != nil {
			return nil, err
		}
	}
	t.cleanStale()
	stage, err := os.MkdirTemp(dir, stagePrefix)
	if err != nil {
		return nil, fmt.Errorf("create staging directory: %w", err)
	}
	f, err := os.Open(stage)
	if err != nil {
		os.RemoveAll(stage)
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.RemoveAll(stage)
		return nil, fmt.Errorf("lock staging directory: %w", err)
	}
	t.stage, t.stageFd = stage, f
	return t, nil
}

// checkLayoutDir refuses an existing non-empty directory that is not
// already a layout: writing blobs into some other tree would scatter files.
func checkLayoutDir(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, ocispec.ImageLayoutFile)); err == nil {
		_, err := Open(dir)
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("open layout: %w", err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), stagePrefix) && !atomicfile.IsTemp(e.Name()) {
			return fmt.Errorf("open layout %s: directory is not empty and has no %s file; refusing to write an OCI layout into it", dir, ocispec.ImageLayoutFile)
		}
	}
	return nil
}

// cleanStale removes staging directories whose owner is gone: a live
// transaction holds a flock on its directory, so one we can lock is dead.
func (t *Txn) cleanStale() {
	ents, _ := os.ReadDir(t.dir)
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), stagePrefix) {
			continue
		}
		p := filepath.Join(t.dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p)
		}
		f.Close()
	}
}

// Dir is the layout directory.
func (t *Txn) Dir() string { return t.dir }

// HasBlob reports whether the blob is already in the layout or staged.
func (t *Txn) HasBlob(d digest.Digest, size int64) bool {
	t.mu.Lock()
	_, ok := t.staged[d]
	t.mu.Unlock()
	if ok {
		return true
	}
	return (&Layout{dir: t.dir}).HasBlob(d, size)
}

// OpenBlob reads a blob from the staging area or the layout, verified.
func (t *Txn) OpenBlob(desc ocispec.Descriptor) (io.ReadCloser, error) {
	t.mu.Lock()
	_, ok := t.staged[desc.Digest]
	t.mu.Unlock()
	if ok {
		f, err := os.Open(filepath.Join(t.stage, desc.Digest.Encoded()))
		if err != nil {
			return nil, err
		}
		return NewVerifier(f, desc, "staged blob "+desc.Digest.String()), nil
	}
	return (&Layout{dir: t.dir}).OpenBlob(desc)
}

// WriteBlob stores r as the blob desc, verifying digest and size while it
// streams; on any mismatch nothing is staged. A blob the layout already has
// is drained and verified anyway when r is given, because the caller
// decided to fetch it; callers skip the fetch with HasBlob.
func (t *Txn) WriteBlob(desc ocispec.Descriptor, r io.Reader) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("blob digest %q: %w", desc.Digest, err)
	}
	if desc.Digest.Algorithm() != digest.SHA256 && desc.Digest.Algorithm() != digest.SHA512 {
		return fmt.Errorf("blob %s: unsupported digest algorithm", desc.Digest)
	}
	f, err := os.CreateTemp(t.stage, ".tmp-")
	if err != nil {
		return fmt.Errorf("stage blob: %w", err)
	}
	// CreateTemp makes 0600 files; blobs are public content that other
	// users' tools (umoci --rootless, skopeo) must be able to read.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("stage blob: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	v := NewVerifier(io.NopCloser(r), desc, "blob "+desc.Digest.String())
	if err := t.copyOut(f, v); err != nil {
		return err
	}
	if !t.noSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("stage blob: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("stage blob: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(t.stage, desc.Digest.Encoded()+"."+desc.Digest.Algorithm().String())); err != nil {
		return fmt.Errorf("stage blob: %w", err)
	}
	ok = true
	t.mu.Lock()
	t.staged[desc.Digest] = desc.Size
	t.mu.Unlock()
	return nil
}

// copyBufs recycles the large copy buffers: large reads mean few syscalls
// per layer on both the socket and the file side.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// writebackChunk is how much is written before the kernel is asked to
// start writing it back (sync_file_range). Writeback then overlaps the
// download instead of all happening in the final fsync, which is what
// makes a synced copy nearly as fast as an unsynced one.
const writebackChunk = 8 << 20

// copyOut copies r to f with a large buffer (os.File's ReadFrom would fall
// back to 32 KiB chunks for a non-file source), starting writeback as it
// goes unless syncing is off.
func (t *Txn) copyOut(f *os.File, r io.Reader) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var off, flushed int64
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return fmt.Errorf("stage blob: %w", err)
			}
			off += int64(n)
			if !t.noSync && off-flushed >= writebackChunk {
				// Advisory: an error here only loses the overlap.
				_ = unix.SyncFileRange(int(f.Fd()), flushed, off-flushed, unix.SYNC_FILE_RANGE_WRITE)
				flushed = off
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// WriteBytes stages a small blob held in memory.
func (t *Txn) WriteBytes(desc ocispec.Descriptor, b []byte) error {
	return t.WriteBlob(desc, strings.NewReader(string(b)))
}

// Entry is one index.json change: desc is tagged tag ("" for an untagged
// entry).
type Entry struct {
	Tag  string
	Desc ocispec.Descriptor
}

// Commit moves the staged blobs into the layout and records entries in
// index.json, replacing an entry with the same tag and keeping the others.
// Every entry's manifest must be staged or already present. On error the
// layout is left as it was before Commit.
func (t *Txn) Commit(entries ...Entry) (retErr error) {
	if t.done {
		return errors.New("layout transaction already finished")
	}
	defer t.finish()
	for _, e := range entries {
		switch e.Desc.MediaType {
		case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex:
		default:
			// The layout stays pure OCI: conversion is the caller's job.
			return fmt.Errorf("layout %s: refusing to tag a %q manifest; only OCI manifests and indexes go in an OCI layout", t.dir, e.Desc.MediaType)
		}
		if !t.HasBlob(e.Desc.Digest, e.Desc.Size) {
			return fmt.Errorf("layout %s: manifest %s for %q was never written", t.dir, e.Desc.Digest, e.Tag)
		}
	}
	unlock, err := Lock(t.dir)
	if err != nil {
		return err
	}
	defer unlock()
	// What a commit killed while holding the lock left.
	atomicfile.RemoveTemps(t.dir, ocispec.ImageLayoutFile, ocispec.ImageIndexFile)

	var moved []string
	var madeDirs []string
	defer func() {
		if retErr != nil {
			for _, p := range moved {
				os.Remove(p)
			}
			for i := len(madeDirs) - 1; i >= 0; i-- {
				os.Remove(madeDirs[i])
			}
		}
	}()
	// Layout skeleton: a fresh layout gets its files only now, so a copy
	// that failed earlier never leaves an empty layout behind.
	layoutFile := filepath.Join(t.dir, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layoutFile); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := t.writeFile(layoutFile, b); err != nil {
			return err
		}
		moved = append(moved, layoutFile)
	}
	ix := &ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	if _, err := os.Stat(filepath.Join(t.dir, ocispec.ImageIndexFile)); err == nil {
		if ix, err = readIndex(t.dir); err != nil {
			return err
		}
	}
	t.mu.Lock()
	staged := make(map[digest.Digest]int64, len(t.staged))
	for d, s := range t.staged {
		staged[d] = s
	}
	t.mu.Unlock()
	for _, p := range []string{filepath.Join(t.dir, ocispec.ImageBlobsDir)} {
		if err := os.Mkdir(p, 0o755); err == nil {
			madeDirs = append(madeDirs, p)
		} else if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("commit layout: %w", err)
		}
	}
	syncDirs := map[string]bool{}
	for d := range staged {
		algDir := filepath.Join(t.dir, ocispec.ImageBlobsDir, d.Algorithm().String())
		if err := os.Mkdir(algDir, 0o755); err == nil {
			madeDirs = append(madeDirs, algDir)
		} else if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("commit layout: %w", err)
		}
		dst := filepath.Join(algDir, d.Encoded())
		if fi, err := os.Stat(dst); err == nil && fi.Size() == staged[d] {
			// Another copy committed the same content first.
			continue
		}
		if err := os.Rename(filepath.Join(t.stage, d.Encoded()+"."+d.Algorithm().String()), dst); err != nil {
			return fmt.Errorf("commit layout: %w", err)
		}
		moved = append(moved, dst)
		syncDirs[algDir] = true
	}
	if !t.noSync {
		for d := range syncDirs {
			if err := syncDir(d); err != nil {
				return err
			}
		}
	}
	for _, e := range entries {
		ix.Manifests = tagEntry(ix.Manifests, e)
	}
	b, err := json.Marshal(ix)
	if err != nil {
		return err
	}
	return t.writeFile(filepath.Join(t.dir, ocispec.ImageIndexFile), b)
}

// tagEntry puts e into manifests: an entry carrying the same tag is
// replaced in place (so tag order is stable), other tags stay. Untagged
// entries are added once per digest.
func tagEntry(ms []ocispec.Descriptor, e Entry) []ocispec.Descriptor {
	d := e.Desc
	d.Annotations = nil
	for k, v := range e.Desc.Annotations {
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[k] = v
	}
	if e.Tag != "" {
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[RefName] = e.Tag
	}
	out := ms[:0:0]
	replaced := false
	for _, m := range ms {
		name, tagged := m.Annotations[RefName]
		switch {
		case e.Tag != "" && tagged && name == e.Tag:
			if !replaced {
				out = append(out, d)
				replaced = true
			}
			continue
		case e.Tag == "" && !tagged && m.Digest == d.Digest:
			replaced = true
		}
		out = append(out, m)
	}
	if !replaced {
		out = append(out, d)
	}
	return out
}

func (t *Txn) writeFile(path string, b []byte) error {
	var opts []atomicfile.Option
	if t.noSync {
		opts = append(opts, atomicfile.NoSync())
	}
	if err := atomicfile.Write(path, b, 0o644, opts...); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Abort drops everything staged. If Begin created the layout directory and
// nothing was ever committed to it, the directory goes too.
func (t *Txn) Abort() error {
	if t.done {
		return nil
	}
	t.finish()
	return nil
}

func (t *Txn) finish() {
	t.done = true
	os.RemoveAll(t.stage)
	t.stageFd.Close()
	if t.created {
		t.removeIfUnused()
	}
}

// removeIfUnused undoes Begin's mkdir when nothing was ever committed and
// no other transaction is staging or committing there. The check runs
// under the layout lock, taken without waiting: a held lock means someone
// is committing, so the directory stays.
func (t *Txn) removeIfUnused() {
	f, err := os.Open(t.dir)
	if err != nil {
		return
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return
	}
	// Remove fails on a non-empty directory, which is what we want.
	os.Remove(t.dir)
}

// Lock takes the layout's exclusive lock, waiting for other writers. Call
// the returned function to release it.
func Lock(dir string) (func(), error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lock layout: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock layout %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
