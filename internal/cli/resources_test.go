package cli

import "testing"

func TestRAMInBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"100": 100, "100M": 100 << 20, "100m": 100 << 20, "1g": 1 << 30, "512KiB": 512 << 10, "1.5k": 1536,
		"2 GB": 2 << 30, "-1": -1, "0": 0,
	} {
		if got, err := ramInBytes(in); err != nil || got != want {
			t.Errorf("ramInBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "-2", "1x", "1MM", "abc", "99999999999p"} {
		if _, err := ramInBytes(bad); err == nil {
			t.Errorf("ramInBytes(%q) accepted", bad)
		}
	}
}
