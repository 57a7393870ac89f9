// Package mobyprofile holds only tests: they compile and load docker's real
// default seccomp profile (github.com/moby/profiles/seccomp) with berth's
// compiler. The dependency lives here, in a test-only package, so that the
// seccomp package itself keeps importing nothing but the standard library,
// x/sys and runtime-spec.
package mobyprofile
