// berth's image store (an OCI layout whose tags are full references) and
// pull, which copies into it.

package image

import (
	"context"
	"fmt"
	"os"

	"berth/internal/image/ref"
)

// DefaultStore is berth's image store: an OCI layout whose tags are full
// normalised references ("docker.io/library/alpine:latest").
const DefaultStore = "/var/lib/berth/images"

// DefaultOptions are the CLI's defaults: host platform, 6 parallel blobs,
// 3 retries with exponential backoff from 1s on both sides.
func DefaultOptions() Options {
	o := Options{Jobs: 6}
	o.Src.Retries, o.Dest.Retries = 3, 3
	return o
}

// StorePath picks the store directory: flag if set, else $BERTH_STORE,
// else DefaultStore.
func StorePath(flag string) string {
	if flag != "" {
		return flag
	}
	if s := os.Getenv("BERTH_STORE"); s != "" {
		return s
	}
	return DefaultStore
}

// StoreRef is the store reference an image is pulled to.
func StoreRef(store string, n ref.Named) ref.Ref {
	return ref.Ref{Transport: ref.OCI, Path: store, Tag: n.String(), Index: -1}
}

// Pull copies image (a Docker name like "alpine", or any transport
// reference) into the store and returns the reference it is stored under,
// which `run` then unpacks. A non-registry source needs a name; give dst
// (any transport reference) to store it elsewhere.
func Pull(ctx context.Context, image, store, dst string, opts Options) (*Result, ref.Ref, error) {
	src, err := ref.ParseImage(image)
	if err != nil {
		return nil, ref.Ref{}, err
	}
	var d ref.Ref
	switch {
	case dst != "":
		if d, err = ref.Parse(dst); err != nil {
			return nil, ref.Ref{}, err
		}
	case src.Named != nil:
		d = StoreRef(StorePath(store), *src.Named)
	case src.Tag != "":
		d = ref.Ref{Transport: ref.OCI, Path: StorePath(store), Tag: src.Tag, Index: -1}
	default:
		return nil, ref.Ref{}, fmt.Errorf("pull %s: the source names no image; give a destination", image)
	}
	res, err := Copy(ctx, src, d, opts)
	return res, d, err
}
