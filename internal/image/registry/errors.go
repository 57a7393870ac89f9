// The client's errors and its retry policy: which failures are worth
// another try, how long to wait, and the registry's own answers.

package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrNotFound is wrapped when the registry says a manifest, blob or
// repository does not exist.
var ErrNotFound = errors.New("not found")

// StatusError is a registry answer with an unexpected HTTP status.
type StatusError struct {
	Op      string // "fetch manifest docker.io/library/alpine:latest"
	Code    int
	Details string // the registry's error codes and messages, if any
	Hint    string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s: %d %s", e.Op, e.Code, http.StatusText(e.Code))
	if e.Details != "" {
		s += ": " + e.Details
	}
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Is makes errors.Is(err, ErrNotFound) true for 404s.
func (e *StatusError) Is(target error) bool {
	return target == ErrNotFound && e.Code == http.StatusNotFound
}

// Temporary reports whether retrying may help.
func (e *StatusError) Temporary() bool { return retryableStatus(e.Code) }

func retryableStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

func shortTransportErr(te *transport.Error) string {
	var parts []string
	for _, d := range te.Errors {
		parts = append(parts, string(d.Code)+": "+d.Message)
	}
	return strings.Join(parts, "; ")
}

// retry runs op until it succeeds, fails permanently, or retries run out.
func (c *Client) retry(ctx context.Context, op func() error) error {
	var err error
	for attempt := 0; ; attempt++ {
		err = op()
		if err == nil || attempt >= c.opts.Retries || !Temporary(err) || ctx.Err() != nil {
			return err
		}
		if err := c.sleep(ctx, attempt, err); err != nil {
			return err
		}
	}
}

// retryAfterError carries a Retry-After delay with the error it came with.
type retryAfterError struct {
	error
	after time.Duration
}

func (e *retryAfterError) Unwrap() error { return e.error }

// backoff is RetryDelay * 2^attempt, ±10% jitter, capped at a minute;
// a Retry-After from the registry (up to a minute) takes precedence.
func (c *Client) backoff(attempt int, err error) time.Duration {
	var ra *retryAfterError
	if errors.As(err, &ra) && ra.after > 0 {
		return min(ra.after, time.Minute)
	}
	d := c.opts.RetryDelay << min(attempt, 10)
	d = time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
	return min(d, time.Minute)
}

func (c *Client) sleep(ctx context.Context, attempt int, err error) error {
	t := time.NewTimer(c.backoff(attempt, err))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Temporary reports whether err is worth retrying: a retryable HTTP status,
// or a network failure that is not the caller's cancellation.
func Temporary(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return retryableStatus(te.StatusCode)
	}
	// Certificate and name problems do not heal by waiting.
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		ci  x509.CertificateInvalidError
		he  x509.HostnameError
		dns *net.DNSError
	)
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &he) {
		return false
	}
	if errors.As(err, &dns) && dns.IsNotFound {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, errShortBody)
}

var errShortBody = errors.New("connection closed before the whole blob arrived")

// statusError turns a bad answer into a StatusError with the registry's
// own error messages, and closes the body.
func (c *Client) statusError(what string, r *http.Response) error {
	defer r.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	se := &StatusError{Op: what, Code: r.StatusCode}
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		var parts []string
		for _, e := range body.Errors {
			parts = append(parts, strings.TrimSpace(e.Code+": "+e.Message))
		}
		se.Details = strings.Join(parts, "; ")
	}
	switch r.StatusCode {
	case http.StatusUnauthorized:
		se.Hint = c.authHint()
	case http.StatusForbidden:
		se.Hint = "access denied for these credentials"
	case http.StatusTooManyRequests:
		se.Hint = "rate limited by the registry"
	}
	var err error = se
	if s := r.Header.Get("Retry-After"); s != "" {
		if secs, perr := strconv.Atoi(s); perr == nil && secs >= 0 {
			err = &retryAfterError{error: se, after: time.Duration(secs) * time.Second}
		} else if t, perr := http.ParseTime(s); perr == nil {
			err = &retryAfterError{error: se, after: time.Until(t)}
		}
	}
	return err
}
