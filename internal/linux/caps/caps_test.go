package caps

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"CAP_CHOWN", 0, true}, {"cap_net_raw", 13, true}, {"NET_ADMIN", 12, true},
		{"CAP_CHECKPOINT_RESTORE", 40, true}, {"CAP_BOGUS", 0, false}, {"", 0, false},
	} {
		got, ok := Parse(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Parse(%q) = %d,%v want %d,%v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFromSpec(t *testing.T) {
	s := FromSpec(&specs.LinuxCapabilities{
		Bounding:  []string{"CAP_KILL", "CAP_NOPE"},
		Effective: []string{"CAP_KILL"},
		Ambient:   []string{"CAP_NOPE"},
	}, 40)
	if !s.Bounding.Has(5) || s.Bounding.Has(0) || !s.Effective.Has(5) {
		t.Fatalf("sets wrong: %+v", s)
	}
	if s.Inheritable != 0 {
		t.Fatalf("inheritable must stay empty when not configured: %b", s.Inheritable)
	}
	if len(s.Unknown) != 1 || s.Unknown[0] != "CAP_NOPE" {
		t.Fatalf("unknown = %v", s.Unknown)
	}
}
