package registry

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"berth/internal/atomicfile"
)

// Credentials are what a registry login needs: a user and password, an
// identity (refresh) token, or a ready registry bearer token.
type Credentials struct {
	Username, Password string
	IdentityToken      string
	RegistryToken      string
	// Source says where they came from ("--creds", a file path, or
	// "docker-credential-NAME"), for debug output.
	Source string
}

// Empty reports whether c carries no credentials (anonymous access).
func (c Credentials) Empty() bool {
	return c.Username == "" && c.Password == "" && c.IdentityToken == "" && c.RegistryToken == ""
}

func (c Credentials) authenticator() authn.Authenticator {
	if c.Empty() {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken})
}

// ParseCreds parses skopeo's --creds USERNAME[:PASSWORD].
func ParseCreds(s string) (Credentials, error) {
	if s == "" {
		return Credentials{}, errors.New("credentials are empty; write USERNAME[:PASSWORD]")
	}
	u, p, _ := strings.Cut(s, ":")
	if u == "" {
		return Credentials{}, errors.New("credentials have an empty username; write USERNAME[:PASSWORD]")
	}
	return Credentials{Username: u, Password: p, Source: "--creds"}, nil
}

// AuthFiles lists the credential files in containers-auth.json(5) search
// order: the containers files (the first of which is also where login
// writes), then docker's. A non-empty authFile (--authfile or
// REGISTRY_AUTH_FILE) replaces the list.
func AuthFiles(authFile string) []string {
	if authFile == "" {
		authFile = os.Getenv("REGISTRY_AUTH_FILE")
	}
	if authFile != "" {
		return []string{authFile}
	}
	files := []string{DefaultAuthFile("")}
	cfg := os.Getenv("XDG_CONFIG_HOME")
	home, _ := os.UserHomeDir()
	if cfg == "" && home != "" {
		cfg = filepath.Join(home, ".config")
	}
	if cfg != "" {
		files = append(files, filepath.Join(cfg, "containers", "auth.json"))
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		files = append(files, filepath.Join(d, "config.json"))
	} else if home != "" {
		files = append(files, filepath.Join(home, ".docker", "config.json"))
	}
	if home != "" {
		files = append(files, filepath.Join(home, ".dockercfg"))
	}
	return files
}

// DefaultAuthFile is the file login writes: authFile if set, else
// REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json, or
// /run/containers/UID/auth.json when XDG_RUNTIME_DIR is unset (as podman
// and skopeo do for root).
func DefaultAuthFile(authFile string) string {
	if authFile != "" {
		return authFile
	}
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		return f
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "containers", "auth.json")
	}
	return filepath.Join("/run/containers", fmt.Sprint(os.Getuid()), "auth.json")
}

// authFile is the JSON shared by containers auth.json and docker's
// config.json.
type authFile struct {
	Auths       map[string]authEntry `json:"auths"`
	CredHelpers map[string]string    `json:"credHelpers,omitempty"`
	CredsStore  string               `json:"credsStore,omitempty"`
}

type authEntry struct {
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

// normaliseKey turns the spellings found in auth files into
// "host[/path]": docker writes "https://index.docker.io/v1/", containers
// tools write "docker.io" or "quay.io/namespace".
func normaliseKey(k string) string {
	hadScheme := false
	for _, p := range []string{"https://", "http://"} {
		if strings.HasPrefix(k, p) {
			k, hadScheme = k[len(p):], true
		}
	}
	if hadScheme {
		// A URL key is legacy docker style: only its host counts.
		k, _, _ = strings.Cut(k, "/")
	}
	k = strings.TrimSuffix(k, "/")
	if k == "index.docker.io" || k == "registry-1.docker.io" {
		k = "docker.io"
	}
	return k
}

// lookupKeys are the auth.json keys that apply to registry/repository, most
// specific first: "reg/ns/repo", "reg/ns", "reg".
func lookupKeys(registry, repository string) []string {
	keys := []string{}
	p := registry + "/" + repository
	for {
		keys = append(keys, p)
		i := strings.LastIndex(p, "/")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return keys
}

// ErrHelper is wrapped when a credential helper program fails.
var ErrHelper = errors.New("credential helper failed")

// Lookup finds credentials for registry/repository in files (see
// AuthFiles). Per file, as docker and containers tools do: a credHelpers
// entry for the registry wins, then the auths entries (most specific key
// first), then the file's credsStore. No match anywhere is anonymous, not
// an error; a malformed file or a failing helper is an error.
func Lookup(ctx context.Context, files []string, registry, repository string) (Credentials, error) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Credentials{}, fmt.Errorf("read auth file: %w", err)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var af authFile
		if filepath.Base(f) == ".dockercfg" {
			// The legacy format is the auths map itself.
			if err := json.Unmarshal(b, &af.Auths); err != nil {
				return Credentials{}, fmt.Errorf("parse auth file %s: %w", f, err)
			}
		} else if err := json.Unmarshal(b, &af); err != nil {
			return Credentials{}, fmt.Errorf("parse auth file %s: %w", f, err)
		}
		for k, h := range af.CredHelpers {
			if normaliseKey(k) == registry {
				return helperGet(ctx, h, registry)
			}
		}
		entries := map[string]authEntry{}
		for k, e := range af.Auths {
			entries[normaliseKey(k)] = e
		}
		for _, k := range lookupKeys(registry, repository) {
			e, ok := entries[k]
			if !ok {
				continue
			}
			c := Credentials{IdentityToken: e.IdentityToken, Source: f}
			if e.Auth != "" {
				raw, err := base64.StdEncoding.DecodeString(e.Auth)
				if err != nil {
					return Credentials{}, fmt.Errorf("auth file %s: entry %q: auth is not base64: %w", f, k, err)
				}
				u, p, ok := strings.Cut(string(raw), ":")
				if !ok {
					return Credentials{}, fmt.Errorf("auth file %s: entry %q: auth is not base64 of user:password", f, k)
				}
				c.Username, c.Password = u, p
			}
			if !c.Empty() {
				return c, nil
			}
		}
		if af.CredsStore != "" {
			c, err := helperGet(ctx, af.CredsStore, registry)
			if err != nil || !c.Empty() {
				return c, err
			}
		}
	}
	return Credentials{}, nil
}

// helperServers are the server names a helper may have stored a registry
// under: docker itself stores Docker Hub as its v1 URL.
func helperServers(registry string) []string {
	if registry == "docker.io" {
		return []string{"https://index.docker.io/v1/", "docker.io", "index.docker.io"}
	}
	return []string{registry, "https://" + registry}
}

// helperGet runs docker-credential-NAME get (the docker credential helper
// protocol: server URL on stdin, JSON on stdout). "credentials not found"
// means anonymous, as it does for docker.
func helperGet(ctx context.Context, name, registry string) (Credentials, error) {
	prog := "docker-credential-" + name
	for _, server := range helperServers(registry) {
		out, err := runHelper(ctx, prog, "get", server)
		if err != nil {
			if strings.Contains(strings.ToLower(out), "credentials not found") {
				continue
			}
			return Credentials{}, fmt.Errorf("%w: %s get %s: %w: %s", ErrHelper, prog, server, err, strings.TrimSpace(out))
		}
		var r struct{ Username, Secret string }
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return Credentials{}, fmt.Errorf("%w: %s get %s: output is not JSON: %w", ErrHelper, prog, server, err)
		}
		c := Credentials{Source: prog}
		if r.Username == "<token>" {
			c.IdentityToken = r.Secret
		} else {
			c.Username, c.Password = r.Username, r.Secret
		}
		return c, nil
	}
	return Credentials{}, nil
}

func runHelper(ctx context.Context, prog, verb, input string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, verb)
	cmd.Stdin = strings.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// SaveLogin records credentials for key (a registry, or registry/namespace)
// in the auth file, keeping every other entry, written atomically with mode
// 0600 (it holds a password).
func SaveLogin(file, key string, c Credentials) error {
	return editAuthFile(file, func(m map[string]json.RawMessage, auths map[string]json.RawMessage) (bool, error) {
		e, _ := json.Marshal(authEntry{Auth: base64.StdEncoding.EncodeToString([]byte(c.Username + ":" + c.Password))})
		for k := range auths {
			if normaliseKey(k) == key {
				delete(auths, k)
			}
		}
		auths[key] = e
		return true, nil
	})
}

// ErrNotLoggedIn is returned by RemoveLogin when the file has no entry.
var ErrNotLoggedIn = errors.New("not logged in")

// RemoveLogin deletes key's entry (every entry when key is "").
func RemoveLogin(file, key string) error {
	return editAuthFile(file, func(m map[string]json.RawMessage, auths map[string]json.RawMessage) (bool, error) {
		found := false
		for k := range auths {
			if key == "" || normaliseKey(k) == key {
				delete(auths, k)
				found = true
			}
		}
		if !found && key != "" {
			return false, fmt.Errorf("%w to %s (no entry in %s)", ErrNotLoggedIn, key, file)
		}
		return found, nil
	})
}

// editAuthFile rewrites the auth file's "auths" object, preserving the
// other top-level keys (credHelpers, credsStore, anything docker adds).
func editAuthFile(file string, edit func(top, auths map[string]json.RawMessage) (bool, error)) error {
	top := map[string]json.RawMessage{}
	b, err := os.ReadFile(file)
	switch {
	case err == nil && len(bytes.TrimSpace(b)) > 0:
		if err := json.Unmarshal(b, &top); err != nil {
			return fmt.Errorf("parse auth file %s: %w", file, err)
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read auth file: %w", err)
	}
	auths := map[string]json.RawMessage{}
	if raw, ok := top["auths"]; ok {
		if err := json.Unmarshal(raw, &auths); err != nil {
			return fmt.Errorf("parse auth file %s: auths: %w", file, err)
		}
	}
	changed, err := edit(top, auths)
	if err != nil || !changed {
		return err
	}
	top["auths"], _ = json.Marshal(auths)
	out, err := json.MarshalIndent(top, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("write auth file: %w", err)
	}
	if err := atomicfile.Write(file, append(out, '\n'), 0o600); err != nil {
		return fmt.Errorf("write auth file: %w", err)
	}
	return nil
}
