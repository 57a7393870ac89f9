package unpack

import (
	"bytes"
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"berth/internal/testutil"
)

// The package's tests inflate with klauspost/compress unless they ask for
// igzip (TestIgzip), so both inflaters go through the same hostile cases.
func init() { igzipPath = func() string { return "" } }

func useIgzip(t *testing.T) {
	t.Helper()
	p, err := exec.LookPath("igzip")
	testutil.Require(t, err == nil, "igzip (Debian package isal) is not installed")
	old := igzipPath
	igzipPath = func() string { return p }
	t.Cleanup(func() { igzipPath = old })
}

// TestIgzip runs the verification, limit, cancel and attribute suites with
// igzip inflating, and checks it agrees with the Go inflater byte for byte.
func TestIgzip(t *testing.T) {
	useIgzip(t)
	t.Run("Hostile", TestHostileLayers)
	t.Run("Bombs", TestBombs)
	t.Run("Verification", TestVerification)
	t.Run("Cancel", TestCancel)
	t.Run("Attributes", TestAttributes)

	big := tarOf(t, file("a", strings.Repeat("berth ", 300000)), file("b", "x"))
	multi := append(gz(t, big[:len(big)/2]), gz(t, big[len(big)/2:])...)
	crc := append([]byte(nil), gz(t, big)...)
	crc[len(crc)-6] ^= 0xff
	for _, c := range []struct {
		name string
		blob []byte
		ok   bool
	}{
		{"Whole", gz(t, big), true},
		{"MultiMember", multi, true},
		{"Truncated", gz(t, big)[:1000], false},
		{"BadCRC", crc, false},
		{"BadHeader", append([]byte{0x1f, 0x8b, 0x08, 0xff, 0xff}, make([]byte, 64)...), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, comp, err := Decompress(bytes.NewReader(c.blob), "application/vnd.oci.image.layer.v1.tar+gzip")
			if err != nil || comp != Gzip {
				t.Fatalf("Decompress: %v %v", comp, err)
			}
			if _, ok := r.(*igzipReader); !ok {
				t.Fatalf("inflating with %T, not igzip", r)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if c.ok && (err != nil || !bytes.Equal(got, big)) {
				t.Fatalf("igzip: %d bytes, %v; want the %d bytes of the tar", len(got), err, len(big))
			}
			if !c.ok && err == nil {
				t.Fatalf("igzip accepted a %s stream", c.name)
			}
		})
	}
	t.Run("ClosedEarly", func(t *testing.T) {
		r, _, err := Decompress(bytes.NewReader(gz(t, big)), "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		r.Close() // kills igzip and reaps it: no leaked child
		if _, err := r.Read(make([]byte, 10)); err == nil {
			t.Fatal("read after close succeeded")
		}
	})
	t.Run("Unpack", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "rootfs")
		if _, err := Unpack(context.Background(), root, []Layer{layerOf(gz(t, big), big)}, Options{Rootless: true}); err != nil {
			t.Fatal(err)
		}
	})
}
