//go:build tools

// Package tools pins modules that berth's packages use, so `go mod tidy`
// keeps them while work on those packages is in flight. Never built.
package tools

import (
	_ "github.com/cyphar/filepath-securejoin"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/nftables"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/opencontainers/go-digest"
	_ "github.com/opencontainers/image-spec/specs-go/v1"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/term"
)
