package rootfs

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	p := ParseOptions([]string{"nosuid", "strictatime", "mode=755", "size=65536k", "rbind", "ro", "rw", "rslave", "rro"})
	want := uintptr(unix.MS_NOSUID | unix.MS_STRICTATIME | unix.MS_BIND | unix.MS_REC)
	if p.Flags != want {
		t.Errorf("flags = %#x want %#x", p.Flags, want)
	}
	if p.Data != "mode=755,size=65536k" {
		t.Errorf("data = %q", p.Data)
	}
	if len(p.Propagation) != 1 || p.Propagation[0] != unix.MS_SLAVE|unix.MS_REC {
		t.Errorf("propagation = %v", p.Propagation)
	}
	if p.RecAttrSet != unix.MOUNT_ATTR_RDONLY {
		t.Errorf("recursive attrs = %#x", p.RecAttrSet)
	}
}
