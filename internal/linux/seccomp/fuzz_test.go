package seccomp

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// FuzzCompile feeds arbitrary profiles (JSON, as in config.json) to the
// compiler. Compile must never panic; an error must be a clear seccomp:
// error; a compiled program must pass the structural checks, and for the
// probes derived from the profile and from the second input, the BPF must
// return exactly what the reference model (expect) says.
func FuzzCompile(f *testing.F) {
	docker, err := json.Marshal(dockerDefaultLike())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(docker, []byte("\x00\x00\x00\x00\x01\x02"))
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":4294967296,"op":"SCMP_CMP_GT"},{"index":1,"value":7,"op":"SCMP_CMP_NE"}]}]}`), []byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, profile, probes []byte) {
		var cfg specs.LinuxSeccomp
		if err := json.Unmarshal(profile, &cfg); err != nil {
			return
		}
		flt, err := Compile(&cfg, WithNativeArch(specs.ArchX86_64))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "seccomp: ") {
				t.Fatalf("error without context: %v", err)
			}
			return
		}
		if err := verify(flt.prog); err != nil {
			t.Fatalf("invalid program: %v", err)
		}
		// The model is linear in the profile size: keep each input cheap.
		names := 0
		for _, sc := range cfg.Syscalls {
			names += len(sc.Names) * (1 + len(sc.Args))
		}
		var datas []seccompData
		if names <= 600 {
			datas = probesFor(&cfg, specs.ArchX86_64)
			if len(datas) > 4000 {
				datas = datas[:4000]
			}
		}
		datas = append(datas, probesFromBytes(&cfg, probes)...)
		for _, d := range datas {
			got, err := run(flt.prog, d.bytes(false), false)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if want := expect(&cfg, specs.ArchX86_64, d); got != want {
				t.Fatalf("nr %#x arch %#x args %#x: program %#x, model %#x", d.nr, d.arch, d.args, got, want)
			}
		}
	})
}

// probesFromBytes turns fuzz bytes into seccomp_data: each 8-byte chunk
// picks an ABI of the profile, a syscall number near one the profile names,
// and argument values near the profile's constants.
func probesFromBytes(cfg *specs.LinuxSeccomp, b []byte) []seccompData {
	audits := []uint32{unix.AUDIT_ARCH_X86_64, unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_AARCH64}
	for _, a := range cfg.Architectures {
		if ai := lookupArch(a); ai != nil {
			audits = append(audits, ai.audit)
		}
	}
	var consts []uint64
	for _, sc := range cfg.Syscalls {
		for _, a := range sc.Args {
			consts = append(consts, a.Value, a.ValueTwo)
		}
	}
	consts = append(consts, 0, 1, ^uint64(0), 1<<32)
	var out []seccompData
	for len(b) >= 8 && len(out) < 256 {
		chunk := binary.LittleEndian.Uint64(b)
		b = b[8:]
		d := seccompData{arch: audits[int(chunk&0xff)%len(audits)]}
		d.nr = uint32(chunk>>8) & 0x3ff
		if chunk&(1<<40) != 0 {
			d.nr |= x32SyscallBit
		}
		for i := range d.args {
			c := consts[int(chunk>>(41+i*3))%len(consts)]
			switch (chunk >> (20 + i*3)) & 7 {
			case 1:
				c++
			case 2:
				c--
			case 3:
				c ^= 1 << 32
			}
			d.args[i] = c
		}
		out = append(out, d)
	}
	return out
}
