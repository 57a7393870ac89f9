package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func writeJSON(t *testing.T, p string, v any) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	b, _ := json.Marshal(v)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeHelper installs docker-credential-NAME on PATH: it answers "get" for
// server with user/secret and "credentials not found" otherwise.
func fakeHelper(t *testing.T, bin, name, server, user, secret string) {
	t.Helper()
	script := "#!/bin/sh\nread s\nif [ \"$1\" = get ] && [ \"$s\" = '" + server + "' ]; then\n" +
		"  printf '{\"ServerURL\":\"%s\",\"Username\":\"" + user + "\",\"Secret\":\"" + secret + "\"}' \"$s\"\n  exit 0\nfi\n" +
		"echo 'credentials not found in native keychain'\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-"+name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestLookupOrderAndKeys(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(dir, "run"))
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	fakeHelper(t, bin, "pass", "helper.example", "hu", "hs")
	fakeHelper(t, bin, "store", "https://index.docker.io/v1/", "<token>", "refresh-token")

	files := AuthFiles("")
	want := []string{
		filepath.Join(dir, "run", "containers", "auth.json"),
		filepath.Join(dir, "home", ".config", "containers", "auth.json"),
		filepath.Join(dir, "home", ".docker", "config.json"),
		filepath.Join(dir, "home", ".dockercfg"),
	}
	if strings.Join(files, " ") != strings.Join(want, " ") {
		t.Fatalf("AuthFiles = %v, want %v", files, want)
	}
	// Containers runtime file: a namespace key and a host key.
	writeJSON(t, files[0], map[string]any{"auths": map[string]any{
		"quay.io/team":  map[string]string{"auth": b64("team:tpw")},
		"quay.io":       map[string]string{"auth": b64("any:apw")},
		"both.example":  map[string]string{"auth": b64("first:1")},
		"http://legacy": map[string]string{"auth": b64("bad")},
	}})
	// Docker's config: a URL-style key, a credHelper, a credsStore.
	writeJSON(t, files[2], map[string]any{
		"auths":       map[string]any{"https://old.example/v1/": map[string]string{"auth": b64("old:opw")}, "both.example": map[string]string{"auth": b64("second:2")}},
		"credHelpers": map[string]string{"helper.example": "pass"},
		"credsStore":  "store",
	})
	tests := []struct {
		reg, repo   string
		user, pass  string
		token, from string
	}{
		{"quay.io", "team/app", "team", "tpw", "", files[0]},
		{"quay.io", "other/app", "any", "apw", "", files[0]},
		{"both.example", "x", "first", "1", "", files[0]}, // the containers file wins
		{"old.example", "x", "old", "opw", "", files[2]},
		{"helper.example", "x", "hu", "hs", "", "docker-credential-pass"},
		{"docker.io", "library/alpine", "", "", "refresh-token", "docker-credential-store"},
		{"nowhere.example", "x", "", "", "", ""},
	}
	for _, tt := range tests {
		c, err := Lookup(context.Background(), files, tt.reg, tt.repo)
		if err != nil {
			t.Errorf("%s/%s: %v", tt.reg, tt.repo, err)
			continue
		}
		if c.Username != tt.user || c.Password != tt.pass || c.IdentityToken != tt.token || c.Source != tt.from {
			t.Errorf("%s/%s = %+v, want %s:%s token %q from %s", tt.reg, tt.repo, c, tt.user, tt.pass, tt.token, tt.from)
		}
	}
	// Only the given file with --authfile.
	if got := AuthFiles("/x/auth.json"); len(got) != 1 || got[0] != "/x/auth.json" {
		t.Fatalf("AuthFiles(--authfile) = %v", got)
	}
}

func TestLookupErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o600)
	if _, err := Lookup(context.Background(), []string{bad}, "r", "x"); err == nil || !strings.Contains(err.Error(), "parse auth file") {
		t.Errorf("malformed file: %v", err)
	}
	notb64 := filepath.Join(dir, "b.json")
	writeJSON(t, notb64, map[string]any{"auths": map[string]any{"r": map[string]string{"auth": "%%%"}}})
	if _, err := Lookup(context.Background(), []string{notb64}, "r", "x"); err == nil || !strings.Contains(err.Error(), "not base64") {
		t.Errorf("bad auth field: %v", err)
	}
	helper := filepath.Join(dir, "h.json")
	writeJSON(t, helper, map[string]any{"credHelpers": map[string]string{"r": "berth-test-missing-helper"}})
	if _, err := Lookup(context.Background(), []string{helper}, "r", "x"); !errors.Is(err, ErrHelper) {
		t.Errorf("missing helper program: %v", err)
	}
}

func TestSaveAndRemoveLogin(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sub", "auth.json")
	writeJSON(t, f, map[string]any{"credHelpers": map[string]string{"x": "y"}, "auths": map[string]any{"https://index.docker.io/v1/": map[string]string{"auth": b64("old:1")}}})
	if err := SaveLogin(f, "docker.io", Credentials{Username: "u", Password: "p:w"}); err != nil {
		t.Fatal(err)
	}
	if err := SaveLogin(f, "localhost:5000", Credentials{Username: "a", Password: "b"}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(f)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("auth file mode %v, want 0600", fi.Mode().Perm())
	}
	c, err := Lookup(context.Background(), []string{f}, "docker.io", "library/x")
	if err != nil || c.Username != "u" || c.Password != "p:w" {
		t.Fatalf("after login: %+v %v", c, err)
	}
	var top map[string]json.RawMessage
	b, _ := os.ReadFile(f)
	json.Unmarshal(b, &top)
	if _, ok := top["credHelpers"]; !ok || strings.Contains(string(top["auths"]), "index.docker.io") {
		t.Fatalf("login lost other keys or kept the stale docker.io spelling: %s", b)
	}
	if err := RemoveLogin(f, "docker.io"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveLogin(f, "docker.io"); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("second logout: %v", err)
	}
	if c, _ := Lookup(context.Background(), []string{f}, "localhost:5000", "x"); c.Username != "a" {
		t.Fatalf("logout removed another registry: %+v", c)
	}
	if err := RemoveLogin(f, ""); err != nil {
		t.Fatal(err)
	}
	if c, _ := Lookup(context.Background(), []string{f}, "localhost:5000", "x"); !c.Empty() {
		t.Fatalf("logout --all kept %+v", c)
	}
}

func TestParseCreds(t *testing.T) {
	if c, err := ParseCreds("u:p:q"); err != nil || c.Username != "u" || c.Password != "p:q" {
		t.Errorf("ParseCreds(u:p:q) = %+v, %v", c, err)
	}
	for _, s := range []string{"", ":p"} {
		if _, err := ParseCreds(s); err == nil {
			t.Errorf("ParseCreds(%q) accepted", s)
		}
	}
}
