// Manifests, blobs (with resumable reads and cross-repository mounts) and
// tags: the calls a copy makes.

package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"berth/internal/image/manifest"
)

// GetManifest fetches a manifest by tag or digest ("" means Named's own),
// refusing bodies over manifest.MaxSize and verifying a digest reference.
func (c *Client) GetManifest(ctx context.Context, id string) (raw []byte, mediaType string, err error) {
	if id == "" {
		id = c.Named.Identifier()
	}
	what := "fetch manifest " + c.Named.Name() + refSep(id) + id
	hdr := http.Header{"Accept": {manifest.AcceptHeader}}
	err = c.retry(ctx, func() error {
		resp, err := c.requestOnce(ctx, what, http.MethodGet, c.url("/manifests/%s", id), hdr, nil, 0, http.StatusOK)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.ContentLength > manifest.MaxSize {
			return fmt.Errorf("%s: manifest is %d bytes, more than the %d byte limit", what, resp.ContentLength, manifest.MaxSize)
		}
		raw, err = io.ReadAll(io.LimitReader(resp.Body, manifest.MaxSize+1))
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if len(raw) > manifest.MaxSize {
			return fmt.Errorf("%s: manifest is more than the %d byte limit", what, manifest.MaxSize)
		}
		mediaType = resp.Header.Get("Content-Type")
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if d, perr := digest.Parse(id); perr == nil {
		if got := d.Algorithm().FromBytes(raw); got != d {
			return nil, "", fmt.Errorf("%s: registry returned content with digest %s", what, got)
		}
	}
	return raw, mediaType, nil
}

func refSep(id string) string {
	if strings.Contains(id, ":") {
		return "@"
	}
	return ":"
}

// HasBlob asks the registry whether it has the blob (HEAD).
func (c *Client) HasBlob(ctx context.Context, d digest.Digest) (bool, error) {
	what := "check blob " + d.String()
	resp, err := c.request(ctx, what, http.MethodHead, c.url("/blobs/%s", d), nil, nil, 0, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// OpenBlob streams a blob. If the connection breaks, the stream continues
// transparently from where it stopped with a ranged request (or, if the
// registry ignores ranges, by re-reading and skipping what was already
// delivered). The caller verifies digest and size.
func (c *Client) OpenBlob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	r := &resumer{c: c, ctx: ctx, desc: desc, what: "fetch blob " + desc.Digest.String()}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

type resumer struct {
	c        *Client
	ctx      context.Context
	desc     ocispec.Descriptor
	what     string
	body     io.ReadCloser
	off      int64
	attempts int
}

func (r *resumer) open() error {
	hdr := http.Header{}
	if r.off > 0 {
		// A closed range: some registries (ggcr's among them) reject
		// open-ended ones.
		hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", r.off, r.desc.Size-1))
	}
	resp, err := r.c.request(r.ctx, r.what, http.MethodGet, r.c.url("/blobs/%s", r.desc.Digest), hdr, nil, 0, http.StatusOK, http.StatusPartialContent)
	if err != nil {
		return err
	}
	switch {
	case r.off == 0:
	case resp.StatusCode == http.StatusPartialContent && resp.Header.Get("Content-Range") == fmt.Sprintf("bytes %d-%d/%d", r.off, r.desc.Size-1, r.desc.Size):
	default:
		// No (usable) range support: restart and skip what the caller
		// already has.
		if resp.StatusCode == http.StatusPartialContent {
			resp.Body.Close()
			return fmt.Errorf("%s: registry answered a range request with Content-Range %q", r.what, resp.Header.Get("Content-Range"))
		}
		if _, err := io.CopyN(io.Discard, resp.Body, r.off); err != nil {
			resp.Body.Close()
			return fmt.Errorf("%s: %w", r.what, err)
		}
	}
	r.body = resp.Body
	return nil
}

func (r *resumer) Read(p []byte) (int, error) {
	for {
		n, err := r.body.Read(p)
		r.off += int64(n)
		if err == io.EOF && r.off < r.desc.Size {
			err = errShortBody
		}
		if err == nil || err == io.EOF || n > 0 {
			if err != nil && err != io.EOF {
				// Deliver the bytes now; the error recurs on the next
				// read and is handled then.
				return n, nil
			}
			return n, err
		}
		if r.attempts >= r.c.opts.Retries || !Temporary(err) || r.ctx.Err() != nil {
			return 0, fmt.Errorf("%s: after %d of %d bytes: %w", r.what, r.off, r.desc.Size, err)
		}
		r.body.Close()
		if serr := r.c.sleep(r.ctx, r.attempts, err); serr != nil {
			return 0, serr
		}
		r.attempts++
		if oerr := r.open(); oerr != nil {
			return 0, oerr
		}
	}
}

func (r *resumer) Close() error { return r.body.Close() }

// MountBlob asks the registry to link blob d from repository from into
// this one (cross-repository mount), which moves no data. It reports
// whether the registry did; a registry that declines starts an ordinary
// upload instead, which is cancelled here so PutBlob can start its own.
func (c *Client) MountBlob(ctx context.Context, d digest.Digest, from string) (bool, error) {
	what := "mount blob " + d.String() + " from " + from
	u := c.url("/blobs/uploads/?mount=%s&from=%s", url.QueryEscape(d.String()), url.QueryEscape(from))
	resp, err := c.request(ctx, what, http.MethodPost, u, nil, nil, 0, http.StatusCreated, http.StatusAccepted)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		return true, nil
	}
	if loc, err := resp.Request.URL.Parse(resp.Header.Get("Location")); err == nil && resp.Header.Get("Location") != "" {
		// Best effort: an abandoned upload session expires anyway.
		if req, err := http.NewRequestWithContext(ctx, http.MethodDelete, loc.String(), nil); err == nil {
			if r, err := c.hc.Do(req); err == nil {
				r.Body.Close()
			}
		}
	}
	return false, nil
}

// PutBlob uploads a blob in one PUT (monolithic upload). open is called
// for each attempt and must return the blob from its start.
func (c *Client) PutBlob(ctx context.Context, desc ocispec.Descriptor, open func() (io.ReadCloser, error)) error {
	what := "upload blob " + desc.Digest.String()
	return c.retry(ctx, func() error {
		resp, err := c.requestOnce(ctx, what, http.MethodPost, c.url("/blobs/uploads/"), nil, nil, 0, http.StatusAccepted, http.StatusCreated)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated {
			return nil
		}
		loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil || resp.Header.Get("Location") == "" {
			return fmt.Errorf("%s: registry gave no valid upload Location", what)
		}
		q := loc.Query()
		q.Set("digest", desc.Digest.String())
		loc.RawQuery = q.Encode()
		rc, err := open()
		if err != nil {
			return err
		}
		defer rc.Close()
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), rc)
		if err != nil {
			return err
		}
		req.ContentLength = desc.Size
		req.Header.Set("Content-Type", "application/octet-stream")
		r, err := c.hc.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if r.StatusCode != http.StatusCreated {
			return c.statusError(what, r)
		}
		r.Body.Close()
		return nil
	})
}

// PutManifest uploads a manifest under tag or digest id.
func (c *Client) PutManifest(ctx context.Context, id, mediaType string, raw []byte) error {
	what := "upload manifest " + c.Named.Name() + refSep(id) + id
	resp, err := c.request(ctx, what, http.MethodPut, c.url("/manifests/%s", id), http.Header{"Content-Type": {mediaType}},
		func() io.Reader { return bytes.NewReader(raw) }, int64(len(raw)), http.StatusCreated, http.StatusOK, http.StatusAccepted)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// ListTags lists the repository's tags, following pagination links.
func (c *Client) ListTags(ctx context.Context) ([]string, error) {
	var tags []string
	u := c.url("/tags/list?n=1000")
	for u != "" {
		what := "list tags of " + c.Named.Name()
		resp, err := c.request(ctx, what, http.MethodGet, u, nil, nil, 0, http.StatusOK)
		if err != nil {
			return nil, err
		}
		var page struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: malformed answer: %w", what, err)
		}
		tags = append(tags, page.Tags...)
		u = ""
		if link := resp.Header.Get("Link"); link != "" {
			// Link: </v2/name/tags/list?last=x&n=1000>; rel="next"
			if i, j := strings.Index(link, "<"), strings.Index(link, ">"); i >= 0 && j > i && strings.Contains(link[j:], `rel="next"`) {
				next, err := resp.Request.URL.Parse(link[i+1 : j])
				if err != nil {
					return nil, fmt.Errorf("%s: bad Link header %q", what, link)
				}
				u = next.String()
			}
		}
	}
	return tags, nil
}
