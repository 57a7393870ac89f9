// Command mkimage builds an OCI image layout from local directories or tar
// files, offline: one layer per -layer argument. The unpack benchmark and
// the integration tests use it to make test images (no registry needed).
//
//	mkimage -o ./layout -ref latest -layer /usr/bin:gzip -layer extra.tar:zstd \
//	    -config '{"Cmd":["sh"],"User":"1000"}'
package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var layers multi
	out := flag.String("o", "", "output OCI layout directory (created or extended)")
	ref := flag.String("ref", "latest", "org.opencontainers.image.ref.name of the image")
	config := flag.String("config", "{}", "image config (the \"config\" object) as JSON")
	flag.Var(&layers, "layer", "layer source: FILE.tar, or DIR[@PREFIX][+DIR[@PREFIX]...] (directories under PREFIX in one layer), optionally :gzip|:zstd|:none (default gzip); repeatable")
	flag.Parse()
	if *out == "" || len(layers) == 0 {
		fmt.Fprintln(os.Stderr, "usage: mkimage -o LAYOUT [-ref NAME] [-config JSON] -layer SRC[:gzip|zstd|none]...")
		os.Exit(2)
	}
	if err := run(*out, *ref, *config, layers); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out, ref, config string, layers []string) error {
	if err := os.MkdirAll(filepath.Join(out, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	var img imgspec.Image
	if err := json.Unmarshal([]byte(config), &img.Config); err != nil {
		return fmt.Errorf("-config: %w", err)
	}
	img.OS, img.Architecture = "linux", "amd64"
	img.RootFS.Type = "layers"
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	img.Created = &now
	man := imgspec.Manifest{MediaType: imgspec.MediaTypeImageManifest}
	man.SchemaVersion = 2
	for _, l := range layers {
		src, comp := l, "gzip"
		if i := strings.LastIndex(l, ":"); i > 0 {
			switch l[i+1:] {
			case "gzip", "zstd", "none":
				src, comp = l[:i], l[i+1:]
			}
		}
		desc, diffID, err := writeLayer(out, src, comp)
		if err != nil {
			return fmt.Errorf("layer %s: %w", src, err)
		}
		man.Layers = append(man.Layers, desc)
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, diffID)
	}
	cfgDesc, err := writeJSON(out, img, imgspec.MediaTypeImageConfig)
	if err != nil {
		return err
	}
	man.Config = cfgDesc
	manDesc, err := writeJSON(out, man, imgspec.MediaTypeImageManifest)
	if err != nil {
		return err
	}
	manDesc.Annotations = map[string]string{imgspec.AnnotationRefName: ref}
	var idx imgspec.Index
	if b, err := os.ReadFile(filepath.Join(out, "index.json")); err == nil {
		if err := json.Unmarshal(b, &idx); err != nil {
			return fmt.Errorf("index.json: %w", err)
		}
	}
	idx.SchemaVersion, idx.MediaType = 2, imgspec.MediaTypeImageIndex
	var keep []imgspec.Descriptor
	for _, d := range idx.Manifests {
		if d.Annotations[imgspec.AnnotationRefName] != ref {
			keep = append(keep, d)
		}
	}
	idx.Manifests = append(keep, manDesc)
	b, _ := json.Marshal(idx)
	tmp := filepath.Join(out, "index.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(out, "index.json"))
}

func writeJSON(out string, v any, mt string) (imgspec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return imgspec.Descriptor{}, err
	}
	s := sha256.Sum256(b)
	h := hex.EncodeToString(s[:])
	if err := os.WriteFile(filepath.Join(out, "blobs", "sha256", h), b, 0o644); err != nil {
		return imgspec.Descriptor{}, err
	}
	return imgspec.Descriptor{MediaType: mt, Digest: digestOf(h), Size: int64(len(b))}, nil
}

type counter struct {
	h hash.Hash
	n int64
}

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return c.h.Write(p) }

func writeLayer(out, src, comp string) (imgspec.Descriptor, digest.Digest, error) {
	tmp, err := os.CreateTemp(filepath.Join(out, "blobs"), "layer-")
	if err != nil {
		return imgspec.Descriptor{}, "", err
	}
	defer os.Remove(tmp.Name())
	blob := &counter{h: sha256.New()}
	bw := bufio.NewWriterSize(io.MultiWriter(tmp, blob), 1<<20)
	var cw io.WriteCloser
	mt := imgspec.MediaTypeImageLayer
	switch comp {
	case "gzip":
		cw, _ = gzip.NewWriterLevel(bw, gzip.DefaultCompression)
		mt = imgspec.MediaTypeImageLayerGzip
	case "zstd":
		cw, err = zstd.NewWriter(bw)
		if err != nil {
			return imgspec.Descriptor{}, "", err
		}
		mt = imgspec.MediaTypeImageLayerZstd
	default:
		cw = nopCloser{bw}
	}
	diff := &counter{h: sha256.New()}
	w := io.MultiWriter(cw, diff)
	if fi, err := os.Stat(src); err == nil && !fi.IsDir() {
		f, err := os.Open(src)
		if err != nil {
			return imgspec.Descriptor{}, "", err
		}
		_, err = io.Copy(w, f)
		f.Close()
		if err != nil {
			return imgspec.Descriptor{}, "", err
		}
	} else {
		tw := tar.NewWriter(w)
		seen := map[string]bool{}
		for _, part := range strings.Split(src, "+") {
			dir, prefix, _ := strings.Cut(part, "@")
			if err := tarDir(tw, dir, strings.Trim(prefix, "/"), seen); err != nil {
				return imgspec.Descriptor{}, "", err
			}
		}
		if err := tw.Close(); err != nil {
			return imgspec.Descriptor{}, "", err
		}
	}
	if err := cw.Close(); err != nil {
		return imgspec.Descriptor{}, "", err
	}
	if err := bw.Flush(); err != nil {
		return imgspec.Descriptor{}, "", err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return imgspec.Descriptor{}, "", err
	}
	if err := tmp.Close(); err != nil {
		return imgspec.Descriptor{}, "", err
	}
	h := hex.EncodeToString(blob.h.Sum(nil))
	if err := os.Rename(tmp.Name(), filepath.Join(out, "blobs", "sha256", h)); err != nil {
		return imgspec.Descriptor{}, "", err
	}
	return imgspec.Descriptor{MediaType: mt, Digest: digestOf(h), Size: blob.n}, digest.Digest("sha256:" + hex.EncodeToString(diff.h.Sum(nil))), nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// tarDir writes dir into a layer under prefix ("" = the layer root):
// sorted names without a leading "./", owners, modes, mtimes, xattrs,
// hardlinks (by inode), symlinks, devices. Parents of prefix are written
// once (seen) as root-owned 0755 directories.
func tarDir(tw *tar.Writer, dir, prefix string, seen map[string]bool) error {
	if prefix != "" {
		parts := strings.Split(prefix, "/")
		for i := 1; i < len(parts); i++ {
			p := strings.Join(parts[:i], "/") + "/"
			if !seen[p] {
				seen[p] = true
				if err := tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(1.7e9, 0), Format: tar.FormatPAX}); err != nil {
					return err
				}
			}
		}
	}
	links := map[[2]uint64]string{}
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Format = tar.FormatPAX
		hdr.Uname, hdr.Gname = "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.ModTime = fi.ModTime().Truncate(time.Second)
		switch {
		case rel == "." && prefix == "":
			hdr.Name = "./"
		case rel == ".":
			hdr.Name = prefix + "/"
		default:
			hdr.Name = filepath.ToSlash(filepath.Join(prefix, rel))
			if fi.IsDir() {
				hdr.Name += "/"
			}
		}
		if fi.Mode()&os.ModeSocket != 0 {
			continue // sockets cannot be in a layer
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[key] = hdr.Name
			}
		}
		if x := xattrs(p); len(x) > 0 {
			hdr.PAXRecords = map[string]string{}
			for k, v := range x {
				hdr.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
	}
	return nil
}

func xattrs(p string) map[string]string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return nil
	}
	out := map[string]string{}
	for _, k := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(p, k, v)
		if err == nil {
			out[k] = string(v[:m])
		}
	}
	return out
}

func digestOf(hexSum string) digest.Digest { return digest.Digest("sha256:" + hexSum) }
