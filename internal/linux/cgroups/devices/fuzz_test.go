package devices

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// FuzzProgramMatchesState decodes bytes into a rule list and checks that the
// compiled BPF program answers exactly like State.Allowed for a spread of
// requests: the program generator and the reference evaluator must agree on
// every rule set Reduce accepts.
func FuzzProgramMatchesState(f *testing.F) {
	f.Add([]byte{0, 7, 1, 0x23, 1, 3, 7})
	f.Add([]byte{1, 7, 0, 0x23, 1, 1, 2, 0, 0x12, 8, 0, 7})
	f.Add([]byte{0, 7, 1, 0x13, 5, 0, 6, 1, 0x22, 136, 255, 7})
	f.Fuzz(func(t *testing.T, data []byte) {
		var in []specs.LinuxDeviceCgroup
		for len(data) >= 4 && len(in) < 16 {
			flags, kind, maj, min := data[0], data[1], int64(data[2]), int64(data[3])
			data = data[4:]
			d := specs.LinuxDeviceCgroup{Allow: flags&1 == 1, Type: []string{"a", "b", "c"}[int(kind>>4)%3]}
			acc := ""
			for i, ch := range "rwm" {
				if kind&(1<<i) != 0 {
					acc += string(ch)
				}
			}
			if acc == "" {
				acc = "rwm"
			}
			d.Access = acc
			if d.Type != "a" {
				if maj == 255 {
					maj = Wildcard
				}
				if min == 255 {
					min = Wildcard
				}
				d.Major, d.Minor = &maj, &min
			}
			in = append(in, d)
		}
		rules, err := FromSpec(in)
		if err != nil {
			t.Fatalf("FromSpec(%+v): %v", in, err) // the decoder only builds valid rules
		}
		st, err := Reduce(rules)
		if err != nil {
			return // a hole: rejected by design
		}
		prog := Program(st)
		for _, typ := range []byte{'b', 'c'} {
			for _, maj := range []int64{0, 1, 5, 8, 136, 254} {
				for _, min := range []int64{0, 1, 3, 5, 254} {
					for acc := uint32(1); acc <= AccAll; acc++ {
						want := st.Allowed(typ, maj, min, acc)
						r, ok := Run(prog, typ, uint32(maj), uint32(min), acc)
						if !ok || (r == 1) != want {
							t.Fatalf("rules %+v state %+v: %c %d:%d acc %b: program %d (ok %v), state says %v", in, st, typ, maj, min, acc, r, ok, want)
						}
					}
				}
			}
		}
	})
}
