package image_test

import (
	"context"
	"fmt"

	"berth/internal/image"
)

// A one-shot run pulls into the store and hands the stored reference (an
// oci: layout path and tag) to the unpacker.
func ExamplePull() {
	res, stored, err := image.Pull(context.Background(), "localhost:5000/app:v1", "", "", image.DefaultOptions())
	if err != nil {
		fmt.Println("pull:", err)
		return
	}
	fmt.Println(stored.Path, stored.Tag, res.Digest)
}
