package main

import (
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestUnescapeMount(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/plain", "/plain"},
		{`/with\040space`, "/with space"},
		{`/tab\011x\134y`, "/tab\tx\\y"},
		{`/trailing\04`, `/trailing\04`},
		{`/bad\09x`, `/bad\09x`},
	}
	for _, tt := range tests {
		if got := unescapeMount(tt.in); got != tt.want {
			t.Errorf("unescapeMount(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFilterEnv(t *testing.T) {
	got := filterEnv([]string{"A=1", "RUNTIME=runc", "RUNTIMEX=2", "TMPDIR=/x", "B=3"}, "RUNTIME", "TMPDIR")
	if want := []string{"A=1", "RUNTIMEX=2", "B=3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestWrapperPassesArgs checks that the generated RUNTIME wrapper adds
// --root and passes every argument through unchanged, quoting included.
func TestWrapperPassesArgs(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "fake runtime's")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "runtime")
	if err := os.WriteFile(wrapper, []byte(wrapperScript(fake, "/run/x y")), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(wrapper, "delete", "--force", "id with 'quote'").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "[--root][/run/x y][delete][--force][id with 'quote']"; string(out) != want {
		t.Errorf("wrapper ran %s, want %s", out, want)
	}
}

func TestIndentClip(t *testing.T) {
	got := indentClip("a\nbbbbbb\nc\nd\n", "  ", 2, 3)
	if want := "  a\n  bbb...\n  ... (2 more lines in the logs)\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no runtime", nil, "-runtime is required"},
		{"stray argument", []string{"-runtime", "x", "runc"}, "unexpected arguments"},
		{"bad timeout", []string{"-runtime", "x", "-timeout", "0s"}, "must be positive"},
		{"ok", []string{"-runtime", "x", "-run", "kill"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if o.logs != filepath.Join(o.cache, "last-run") {
					t.Errorf("logs default %q", o.logs)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); err != flag.ErrHelp {
		t.Errorf("-h: %v", err)
	}
}
