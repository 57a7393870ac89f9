package devices

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func dev(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
	return specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Major: &major, Minor: &minor, Access: access}
}

func TestFromSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		rule specs.LinuxDeviceCgroup
		want string
	}{
		{specs.LinuxDeviceCgroup{Type: "x"}, "invalid type"},
		{specs.LinuxDeviceCgroup{Type: "c", Access: "rwx"}, "invalid access"},
		{dev(true, "c", -2, 1, "r"), "invalid major"},
		{dev(true, "c", 1, -5, "r"), "invalid minor"},
		{dev(true, "a", 1, 3, "r"), "cannot have a major"},
		{dev(true, "c", 5000, 1, "r"), "out of range"},
	} {
		_, err := FromSpec([]specs.LinuxDeviceCgroup{tc.rule})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("FromSpec(%+v) = %v, want error containing %q", tc.rule, err, tc.want)
		}
	}
}

type probe struct {
	typ          byte
	major, minor int64
	access       uint32
	want         bool
}

func TestReduceAndProgram(t *testing.T) {
	denyAll := specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}
	allowAll := specs.LinuxDeviceCgroup{Allow: true, Access: "rwm"}
	for _, tc := range []struct {
		name   string
		rules  []specs.LinuxDeviceCgroup
		state  string
		probes []probe
	}{
		{
			name:  "empty list denies everything",
			state: "deny",
			probes: []probe{
				{'c', 1, 3, AccRead, false},
				{'b', 8, 0, AccWrite, false},
			},
		},
		{
			name:  "runc default whitelist",
			rules: append([]specs.LinuxDeviceCgroup{denyAll}, DefaultAllowed...),
			state: "deny c *:* m,b *:* m,c 1:3 rwm,c 1:8 rwm,c 1:7 rwm,c 5:0 rwm,c 1:5 rwm,c 1:9 rwm,c 136:* rwm,c 5:2 rwm,c 10:200 rwm",
			probes: []probe{
				{'c', 1, 3, AccRead | AccWrite, true},
				{'c', 1, 1, AccRead, false}, // /dev/mem
				{'c', 1, 1, AccMknod, true},
				{'b', 8, 0, AccMknod, true},
				{'b', 8, 0, AccRead, false},
				{'c', 136, 7, AccWrite, true},
			},
		},
		{
			name:  "partial access must cover the request",
			rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 5, "r")},
			state: "deny c 1:5 r",
			probes: []probe{
				{'c', 1, 5, AccRead, true},
				{'c', 1, 5, AccRead | AccWrite, false},
				{'c', 1, 5, AccWrite, false},
			},
		},
		{
			name:  "blacklist denies any named bit",
			rules: []specs.LinuxDeviceCgroup{allowAll, dev(false, "c", 1, 1, "w"), dev(false, "b", -1, -1, "rwm")},
			state: "allow c 1:1 w,b *:* rwm",
			probes: []probe{
				{'c', 1, 1, AccRead, true},
				{'c', 1, 1, AccRead | AccWrite, false},
				{'b', 8, 1, AccRead, false},
				{'c', 4, 1, AccRead | AccWrite | AccMknod, true},
			},
		},
		{
			name:  "later reset wins",
			rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 3, "rwm"), allowAll, dev(false, "c", 1, 1, "rwm")},
			state: "allow c 1:1 rwm",
			probes: []probe{
				{'c', 1, 3, AccRead, true},
				{'c', 1, 1, AccRead, false},
			},
		},
		{
			name:  "deny removes exact access bits",
			rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 3, "rwm"), dev(false, "c", 1, 3, "w"), dev(true, "c", 1, 5, "rw"), dev(false, "c", 1, 5, "rw")},
			state: "deny c 1:3 rm",
			probes: []probe{
				{'c', 1, 3, AccRead, true},
				{'c', 1, 3, AccWrite, false},
				{'c', 1, 5, AccRead, false},
			},
		},
		{
			name:  "wildcard deny removes covered exceptions",
			rules: []specs.LinuxDeviceCgroup{denyAll, dev(true, "c", 1, 3, "rwm"), dev(true, "b", 8, 0, "r"), {Allow: false, Type: "c", Access: "rw"}},
			state: "deny c 1:3 m,b 8:0 r",
			probes: []probe{
				{'c', 1, 3, AccRead, false},
				{'c', 1, 3, AccMknod, true},
				{'b', 8, 0, AccRead, true},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := FromSpec(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Reduce(rules)
			if err != nil {
				t.Fatal(err)
			}
			if got := render(s); got != tc.state {
				t.Errorf("state = %q, want %q", got, tc.state)
			}
			prog := Program(s)
			for _, p := range tc.probes {
				if got := s.Allowed(p.typ, p.major, p.minor, p.access); got != p.want {
					t.Errorf("Allowed(%c %d:%d %b) = %v, want %v", p.typ, p.major, p.minor, p.access, got, p.want)
				}
				r, ok := Run(prog, p.typ, uint32(p.major), uint32(p.minor), p.access)
				if !ok {
					t.Fatalf("program did not exit cleanly: %+v", prog)
				}
				if (r == 1) != p.want {
					t.Errorf("program(%c %d:%d %b) = %d, want allowed=%v", p.typ, p.major, p.minor, p.access, r, p.want)
				}
			}
		})
	}
}

func render(s State) string {
	parts := []string{}
	for _, e := range s.Exceptions {
		parts = append(parts, e.String())
	}
	head := "deny"
	if s.DefaultAllow {
		head = "allow"
	}
	if len(parts) == 0 {
		return head
	}
	return head + " " + strings.Join(parts, ",")
}

func TestReduceRejectsHoles(t *testing.T) {
	rules, err := FromSpec([]specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		dev(true, "c", -1, -1, "rwm"),
		dev(false, "c", 1, 1, "rwm"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Reduce(rules); err == nil || !strings.Contains(err.Error(), "punches a hole") {
		t.Fatalf("Reduce = %v, want a hole error", err)
	}
}

// TestProgramExhaustive compares the compiled program with State.Allowed over
// every access combination for a mixed rule set, in both default modes.
func TestProgramExhaustive(t *testing.T) {
	for _, def := range []bool{false, true} {
		s := State{DefaultAllow: def, Exceptions: []Rule{
			{Type: 'c', Major: 1, Minor: 3, Access: AccRead | AccWrite, Allow: !def},
			{Type: 'b', Major: Wildcard, Minor: 2, Access: AccMknod, Allow: !def},
			{Type: 'a', Major: Wildcard, Minor: Wildcard, Access: AccWrite, Allow: !def},
			{Type: 'c', Major: 136, Minor: Wildcard, Access: AccAll, Allow: !def},
		}}
		prog := Program(s)
		for _, typ := range []byte{'b', 'c'} {
			for _, mm := range [][2]int64{{1, 3}, {1, 2}, {8, 2}, {136, 9}, {4, 4}} {
				for acc := uint32(1); acc <= AccAll; acc++ {
					want := s.Allowed(typ, mm[0], mm[1], acc)
					r, ok := Run(prog, typ, uint32(mm[0]), uint32(mm[1]), acc)
					if !ok || (r == 1) != want {
						t.Errorf("default %v: %c %d:%d acc %b: program %d ok=%v, want %v", def, typ, mm[0], mm[1], acc, r, ok, want)
					}
				}
			}
		}
	}
}
