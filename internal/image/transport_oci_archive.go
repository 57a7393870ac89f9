// oci-archive: a tar of an OCI layout, unpacked to a scratch layout to
// read, and written from one in a single atomic replace.

package image

import (
	"archive/tar"
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"berth/internal/atomicfile"
	"berth/internal/image/layout"
	"berth/internal/image/ref"
)

func openOCIArchive(r ref.Ref) (source, error) {
	tmp, err := os.MkdirTemp("", "berth-oci-archive-")
	if err != nil {
		return nil, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	if err := extractLayoutTar(r.Path, tmp); err != nil {
		cleanup()
		return nil, err
	}
	l, err := layout.Open(tmp)
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("oci-archive %s: %w", r.Path, err)
	}
	return newLayoutSource(l, r.Tag, cleanup)
}

// extractLayoutTar unpacks an OCI layout tar. Only plain files and
// directories with local names are accepted: a layout has nothing else, and
// a link or "../" entry in an archive someone handed us could write outside
// dir.
func extractLayoutTar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return notFound(fmt.Errorf("oci-archive: %w", err))
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("oci-archive %s: %w", file, err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("oci-archive %s: entry %q escapes the archive", file, h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return fmt.Errorf("oci-archive %s: %w", file, err)
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("oci-archive %s: %w", file, err)
			}
		default:
			return fmt.Errorf("oci-archive %s: entry %q has type %q; a layout holds only files and directories", file, h.Name, string(h.Typeflag))
		}
	}
}

func newOCIArchiveDest(r ref.Ref, opts Options) (destination, error) {
	tmp, err := os.MkdirTemp("", "berth-oci-archive-")
	if err != nil {
		return nil, err
	}
	opts.NoSync = true // scratch: the archive file is what must be durable
	d, err := newLayoutDest(filepath.Join(tmp, "layout"), r.Tag, opts, nil)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	d.cleanup = func() { os.RemoveAll(tmp) }
	d.onCommit = func() error {
		defer os.RemoveAll(tmp)
		return writeTarAtomic(r.Path, filepath.Join(tmp, "layout"), func(rel string) bool {
			return !strings.HasPrefix(rel, ".berth")
		})
	}
	return d, nil
}

// writeTarAtomic tars dir's tree (entries keep() accepts) into file via a
// temporary file renamed into place, so a reader never sees half an
// archive and a failure leaves any previous file intact.
func writeTarAtomic(file, dir string, keep func(rel string) bool) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if !keep(rel) {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	err = atomicfile.WriteFunc(file, 0o644, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		tw := tar.NewWriter(bw)
		for _, rel := range paths {
			if err := tarFile(tw, dir, rel); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	return nil
}

// tarFile writes dir/rel (a directory or a regular file) to tw.
func tarFile(tw *tar.Writer, dir, rel string) error {
	p := filepath.Join(dir, rel)
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if fi.IsDir() {
		h.Name += "/"
		h.Mode, h.Size, h.Typeflag = 0o755, 0, tar.TypeDir
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if fi.IsDir() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}
