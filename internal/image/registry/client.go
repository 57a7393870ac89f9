// Package registry talks the OCI distribution (Docker registry v2) protocol
// for one repository. go-containerregistry's transport does the auth
// handshake (ping, Basic or Bearer token exchange, re-challenge on new
// scopes, no token leaks across redirects); this package adds what skopeo
// parity needs on top: containers-order credential lookup, per-registry
// certificate directories, retries with exponential backoff that honour
// Retry-After, ranged resume of interrupted blob downloads, and errors that
// say what went wrong in registry terms.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"berth/internal/image/ref"
)

// Options configure a Client. The zero value is anonymous-or-auth.json
// access over verified TLS with no retries.
type Options struct {
	// Creds, when set, are used instead of looking up auth files.
	Creds *Credentials
	// AuthFile replaces the auth file search (--authfile).
	AuthFile string
	// Insecure skips TLS verification and allows plain HTTP
	// (--tls-verify=false).
	Insecure bool
	// CertDir holds ca.crt / *.crt CA files and client.cert/client.key
	// pairs (--cert-dir). Default: /etc/containers/certs.d/HOST and
	// /etc/docker/certs.d/HOST when they exist.
	CertDir string
	// Retries is how many times a failed request (network error, 408,
	// 429, 5xx, or a blob stream cut short) is retried (--retry-times).
	Retries int
	// RetryDelay is the first backoff, doubled per attempt with jitter
	// (default 1s); a Retry-After header overrides it.
	RetryDelay time.Duration
	// UserAgent defaults to "berth".
	UserAgent string
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
	// Debugf, if set, is told which credential source was used (the
	// file or helper program), never the secret itself.
	Debugf func(format string, a ...any)
	// MountFrom names a repository on the same registry that blobs may be
	// mounted from instead of uploaded (a registry-to-registry copy
	// within one host); its pull scope is requested too.
	MountFrom string
}

// Client accesses one repository of one registry.
type Client struct {
	Named ref.Named
	creds Credentials
	base  string // "https://host"
	hc    *http.Client
	opts  Options
}

// New connects to named's registry: it pings it, learns the auth scheme,
// and for Bearer registries fetches a token with pull (and, if push,
// push) scope for the repository.
func New(ctx context.Context, named ref.Named, push bool, opts Options) (*Client, error) {
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "berth"
	}
	c := &Client{Named: named, opts: opts}
	if opts.Creds != nil {
		c.creds = *opts.Creds
	} else {
		cr, err := Lookup(ctx, AuthFiles(opts.AuthFile), named.Registry, named.Repository)
		if err != nil {
			return nil, err
		}
		c.creds = cr
	}
	if opts.Debugf != nil {
		if c.creds.Empty() {
			opts.Debugf("registry %s: no credentials found, accessing anonymously", named.Registry)
		} else {
			opts.Debugf("registry %s: using credentials from %s", named.Registry, c.creds.Source)
		}
	}
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(named.Registry, nopts...)
	if err != nil {
		return nil, fmt.Errorf("registry %q: %w", named.Registry, err)
	}
	c.base = "https://" + reg.RegistryStr()
	base := opts.Transport
	if base == nil {
		tr, err := newTransport(named.Registry, opts)
		if err != nil {
			return nil, err
		}
		base = tr
	}
	base = transport.NewUserAgent(base, opts.UserAgent)
	scope := transport.PullScope
	if push {
		scope = transport.PushScope
	}
	// No repository (login) means no scope: token servers then check
	// the credentials alone, as `docker login` does.
	var scopes []string
	if named.Repository != "" {
		scopes = append(scopes, "repository:"+named.Repository+":"+scope)
	}
	if opts.MountFrom != "" && opts.MountFrom != named.Repository {
		scopes = append(scopes, "repository:"+opts.MountFrom+":"+transport.PullScope)
	}
	var rt http.RoundTripper
	err = c.retry(ctx, func() error {
		var err error
		rt, err = transport.NewWithContext(ctx, reg, c.creds.authenticator(), base, scopes)
		return err
	})
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			return nil, &StatusError{Op: "authenticate to " + named.Registry, Code: te.StatusCode, Details: shortTransportErr(te), Hint: c.authHint()}
		}
		return nil, fmt.Errorf("connect to %s: %w", named.Registry, err)
	}
	c.hc = &http.Client{Transport: rt}
	return c, nil
}

func (c *Client) authHint() string {
	if c.creds.Empty() {
		return "no credentials found for " + c.Named.Registry + "; use --creds, --authfile or berth login"
	}
	return "credentials from " + c.creds.Source + " were rejected"
}

// CredentialSource says where the credentials came from ("" when anonymous).
func (c *Client) CredentialSource() string {
	if c.creds.Empty() {
		return ""
	}
	return c.creds.Source
}

func (c *Client) url(format string, a ...any) string {
	return c.base + "/v2/" + c.Named.Repository + fmt.Sprintf(format, a...)
}

// request sends one request with retries; body, if set, is called per
// attempt. It returns the response when its status is in ok, else an error
// (the body already closed).
func (c *Client) request(ctx context.Context, what, method, u string, hdr http.Header, body func() io.Reader, size int64, ok ...int) (*http.Response, error) {
	var resp *http.Response
	err := c.retry(ctx, func() error {
		var err error
		resp, err = c.requestOnce(ctx, what, method, u, hdr, body, size, ok...)
		return err
	})
	return resp, err
}

// requestOnce is request without retries, for callers that retry a larger
// unit (reading the body too, or a whole upload).
func (c *Client) requestOnce(ctx context.Context, what, method, u string, hdr http.Header, body func() io.Reader, size int64, ok ...int) (*http.Response, error) {
	var resp *http.Response
	err := func() error {
		var rd io.Reader
		if body != nil {
			rd = body()
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return err
		}
		if body != nil {
			req.ContentLength = size
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(body()), nil }
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		r, err := c.hc.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for _, code := range ok {
			if r.StatusCode == code {
				resp = r
				return nil
			}
		}
		return c.statusError(what, r)
	}()
	return resp, err
}

// Ping checks that the credentials are accepted for the repository (login
// uses it): New already did the handshake, so one authenticated request
// settles it.
func (c *Client) Ping(ctx context.Context) error {
	what := "log in to " + c.Named.Registry
	resp, err := c.request(ctx, what, http.MethodGet, c.base+"/v2/", nil, nil, 0, http.StatusOK)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// CheckLogin verifies that opts.Creds are accepted by the registry at host:
// it runs the auth handshake (a Bearer token exchange, or Basic) and one
// authenticated GET /v2/, as `skopeo login` does.
func CheckLogin(ctx context.Context, host string, opts Options) error {
	if opts.Creds == nil {
		return errors.New("login: no credentials given")
	}
	c, err := New(ctx, ref.Named{Registry: host}, false, opts)
	if err != nil {
		return err
	}
	return c.Ping(ctx)
}
