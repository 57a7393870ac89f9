package mobyprofile

import (
	"testing"

	"berth/internal/linux/seccomp"
)

// BenchmarkCompileMobyDefault: compiling docker's real default profile, as
// the runtime does once per container start.
func BenchmarkCompileMobyDefault(b *testing.B) {
	p := dockerProfile(b, dockerCaps)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := seccomp.Compile(p); err != nil {
			b.Fatal(err)
		}
	}
}
