package seccomp

import (
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// BenchmarkCompileDockerDefault measures what container start pays once
// per container: compiling a docker-default-like profile for x86_64+x86+x32.
func BenchmarkCompileDockerDefault(b *testing.B) {
	cfg := dockerDefaultLike()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		f, err := Compile(cfg, WithNativeArch(specs.ArchX86_64))
		if err != nil {
			b.Fatal(err)
		}
		n = f.Len()
	}
	b.ReportMetric(float64(n), "insns")
}

// BenchmarkFilterRun is the per-syscall cost of the program, interpreted
// (the kernel JITs it, so this only compares layouts): a mix of allowed,
// conditional and denied numbers.
func BenchmarkFilterRun(b *testing.B) {
	f, err := Compile(dockerDefaultLike(), WithNativeArch(specs.ArchX86_64))
	if err != nil {
		b.Fatal(err)
	}
	var datas [][]byte
	for _, n := range []uint32{0, 1, 56, 110, 165, 202, 257, 435, 999} {
		datas = append(datas, seccompData{nr: n, arch: 0xc000003e}.bytes(false))
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := run(f.prog, datas[i%len(datas)], false); err != nil {
			b.Fatal(err)
		}
	}
}
