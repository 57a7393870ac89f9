package ref

import (
	"errors"
	"strings"
	"testing"
)

func TestParseNamed(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		in, want string
		reg      string
	}{
		{"alpine", "docker.io/library/alpine:latest", "docker.io"},
		{"alpine:3.20", "docker.io/library/alpine:3.20", "docker.io"},
		{"library/alpine", "docker.io/library/alpine:latest", "docker.io"},
		{"docker.io/alpine", "docker.io/library/alpine:latest", "docker.io"},
		{"index.docker.io/library/alpine:edge", "docker.io/library/alpine:edge", "docker.io"},
		{"user/app", "docker.io/user/app:latest", "docker.io"},
		{"localhost/app", "localhost/app:latest", "localhost"},
		{"localhost:5000/a/b/c:v1", "localhost:5000/a/b/c:v1", "localhost:5000"},
		{"127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest", "127.0.0.1:5000"},
		{"[::1]:5000/busybox:1", "[::1]:5000/busybox:1", "[::1]:5000"},
		{"quay.io/a_b/c-d__e.f", "quay.io/a_b/c-d__e.f:latest", "quay.io"},
		{"alpine@" + d, "docker.io/library/alpine@" + d, "docker.io"},
		{"alpine:3@" + d, "docker.io/library/alpine:3@" + d, "docker.io"},
	}
	for _, tt := range tests {
		n, err := ParseNamed(tt.in)
		if err != nil {
			t.Errorf("ParseNamed(%q): %v", tt.in, err)
			continue
		}
		if n.String() != tt.want || n.Registry != tt.reg {
			t.Errorf("ParseNamed(%q) = %q (registry %q), want %q (%q)", tt.in, n.String(), n.Registry, tt.want, tt.reg)
		}
	}
}

func TestParseNamedErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", "empty"},
		{"Alpine", "lowercase"},
		{"alpine:", "tag"},
		{"alpine:-x", "tag"},
		{"alpine@sha256:abc", "digest"},
		{"alpine@md5:" + strings.Repeat("a", 32), "digest"},
		{"a//b", "repository component"},
		{"host.com:x/app", "registry"},
		{"docker.io/", "no repository"},
		{"a/" + strings.Repeat("b", 300), "255"},
	}
	for _, tt := range tests {
		_, err := ParseNamed(tt.in)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseNamed(%q) error = %v, want one mentioning %q", tt.in, err, tt.msg)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Ref
		str  string
	}{
		{"oci:./images/alpine:latest", Ref{Transport: OCI, Path: "./images/alpine", Tag: "latest", Index: -1}, ""},
		{"oci:/var/lib/berth/images:docker.io/library/alpine:latest", Ref{Transport: OCI, Path: "/var/lib/berth/images", Tag: "docker.io/library/alpine:latest", Index: -1}, ""},
		{"oci:layout", Ref{Transport: OCI, Path: "layout", Index: -1}, ""},
		{"oci-archive:a.tar:v1", Ref{Transport: OCIArchive, Path: "a.tar", Tag: "v1", Index: -1}, ""},
		{"dir:/tmp/x:y", Ref{Transport: Dir, Path: "/tmp/x:y", Index: -1}, ""},
		{"docker-archive:a.tar", Ref{Transport: DockerArchive, Path: "a.tar", Index: -1}, ""},
		{"docker-archive:a.tar:@2", Ref{Transport: DockerArchive, Path: "a.tar", Index: 2}, ""},
	}
	for _, tt := range tests {
		r, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if r.Transport != tt.want.Transport || r.Path != tt.want.Path || r.Tag != tt.want.Tag || r.Index != tt.want.Index || r.Named != nil {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, r, tt.want)
		}
		if r.String() != tt.in {
			t.Errorf("Parse(%q).String() = %q", tt.in, r.String())
		}
	}
	r, err := Parse("docker://busybox")
	if err != nil || r.Transport != Docker || r.Named.String() != "docker.io/library/busybox:latest" || r.String() != "docker://docker.io/library/busybox:latest" {
		t.Errorf("Parse(docker://busybox) = %+v, %v", r, err)
	}
	r, err = Parse("docker-archive:a.tar:app:v2")
	if err != nil || r.Named == nil || r.Named.String() != "docker.io/library/app:v2" {
		t.Errorf("Parse(docker-archive:a.tar:app:v2) = %+v, %v", r, err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"alpine", "no transport"},
		{"docker:alpine", "docker://"},
		{"docker://", "empty"},
		{"foo:bar", "unknown transport"},
		{"oci:", "needs a path"},
		{"oci::tag", "needs a path"},
		{"oci:x:-bad", "must be letters"},
		{"oci:x:a b", "must be letters"},
		{"dir:", "needs a path"},
		{"docker-archive:a.tar:@x", "manifest index"},
		{"docker-archive:a.tar:app@sha256:" + strings.Repeat("0", 64), "digest"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Parse(%q) error = %v, want one mentioning %q", tt.in, err, tt.msg)
		}
	}
}

func TestParseImage(t *testing.T) {
	for in, want := range map[string]string{
		"alpine":                    "docker://docker.io/library/alpine:latest",
		"localhost:5000/x":          "docker://localhost:5000/x:latest",
		"docker://quay.io/a/b:1":    "docker://quay.io/a/b:1",
		"oci:/tmp/l:v1":             "oci:/tmp/l:v1",
		"docker-archive:/tmp/a.tar": "docker-archive:/tmp/a.tar",
	} {
		r, err := ParseImage(in)
		if err != nil || r.String() != want {
			t.Errorf("ParseImage(%q) = %q, %v; want %q", in, r.String(), err, want)
		}
	}
}
