// dir: containers/image's directory format (skopeo's dir:), one file per
// blob and the manifest beside them.

package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"berth/internal/image/layout"
	"berth/internal/image/manifest"
)

const dirVersion = "Directory Transport Version: 1.1\n"

type dirSource struct{ dir string }

func openDirSource(dir string) (source, error) {
	b, err := os.ReadFile(filepath.Join(dir, "version"))
	if err != nil {
		return nil, notFound(fmt.Errorf("dir %s: %w", dir, err))
	}
	if !strings.HasPrefix(string(b), "Directory Transport Version: 1.") {
		return nil, fmt.Errorf("dir %s: unsupported version file %q", dir, strings.TrimSpace(string(b)))
	}
	return &dirSource{dir: dir}, nil
}

func (s *dirSource) Manifest(ctx context.Context, d digest.Digest) ([]byte, string, error) {
	top := filepath.Join(s.dir, "manifest.json")
	if d == "" {
		b, err := readLimited(top, manifest.MaxSize)
		return b, "", err
	}
	// An index's children are DIGEST.manifest.json; the top manifest is
	// manifest.json only, asked for by its digest too.
	b, err := readLimited(filepath.Join(s.dir, d.Encoded()+".manifest.json"), manifest.MaxSize)
	if errors.Is(err, fs.ErrNotExist) {
		if tb, terr := readLimited(top, manifest.MaxSize); terr == nil && d.Validate() == nil && d.Algorithm().FromBytes(tb) == d {
			return tb, "", nil
		}
	}
	return b, "", err
}

func (s *dirSource) Blob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(s.dir, desc.Digest.Encoded()))
	if err != nil {
		return nil, fmt.Errorf("dir %s: blob %s: %w", s.dir, desc.Digest, err)
	}
	return f, nil
}

func (s *dirSource) Close() error { return nil }

func readLimited(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, notFound(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is more than %d bytes", p, limit)
	}
	return b, nil
}

// dirDest builds the directory next to its final place and swaps it in at
// Commit.
type dirDest struct {
	dir, tmp string
}

func newDirDest(dir string) (destination, error) {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("dir %s: not a directory", dir)
		}
		ents, _ := os.ReadDir(dir)
		if _, verr := os.Stat(filepath.Join(dir, "version")); verr != nil && len(ents) > 0 {
			return nil, fmt.Errorf("dir %s: not empty and not an image directory; refusing to overwrite it", dir)
		}
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(dir)), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dir)), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return nil, err
	}
	return &dirDest{dir: dir, tmp: tmp}, nil
}

func (d *dirDest) HasBlob(context.Context, ocispec.Descriptor) (bool, error) { return false, nil }

func (d *dirDest) PutBlob(ctx context.Context, desc ocispec.Descriptor, open func() (io.ReadCloser, error)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	return writeVerified(filepath.Join(d.tmp, desc.Digest.Encoded()), layout.NewVerifier(rc, desc, "blob "+desc.Digest.String()))
}

func writeVerified(p string, r io.Reader) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
	}
	return err
}

func (d *dirDest) PutManifest(ctx context.Context, m *manifest.Parsed) error {
	return os.WriteFile(filepath.Join(d.tmp, m.Digest.Encoded()+".manifest.json"), m.Raw, 0o644)
}

func (d *dirDest) Commit(ctx context.Context, m *manifest.Parsed) error {
	if err := os.WriteFile(filepath.Join(d.tmp, "manifest.json"), m.Raw, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.tmp, "version"), []byte(dirVersion), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(d.tmp, 0o755); err != nil {
		return err
	}
	old := ""
	if _, err := os.Stat(d.dir); err == nil {
		old = d.tmp + ".old"
		if err := os.Rename(d.dir, old); err != nil {
			return err
		}
	}
	if err := os.Rename(d.tmp, d.dir); err != nil {
		if old != "" {
			os.Rename(old, d.dir)
		}
		return err
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

func (d *dirDest) Abort() { os.RemoveAll(d.tmp) }

func (d *dirDest) OCIOnly() bool { return false }

func (d *dirDest) Index() bool { return true }
