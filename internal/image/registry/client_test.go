package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestTemporary(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&StatusError{Code: 429}, true},
		{&StatusError{Code: 503}, true},
		{&StatusError{Code: 408}, true},
		{&StatusError{Code: 404}, false},
		{&StatusError{Code: 401}, false},
		{fmt.Errorf("wrapped: %w", &retryAfterError{error: &StatusError{Code: 500}}), true},
		{io.ErrUnexpectedEOF, true},
		{errShortBody, true},
		{&url.Error{Op: "Get", URL: "x", Err: &net.OpError{Op: "dial", Err: fmt.Errorf("connection refused")}}, true},
		{&url.Error{Op: "Get", URL: "x", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, false},
		{&url.Error{Op: "Get", URL: "x", Err: &net.DNSError{Err: "no such host", IsNotFound: true}}, false},
		{context.Canceled, false},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), false},
	}
	for _, tt := range tests {
		if got := Temporary(tt.err); got != tt.want {
			t.Errorf("Temporary(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	c := &Client{opts: Options{RetryDelay: 100 * time.Millisecond}}
	for attempt, base := range []time.Duration{100, 200, 400, 800} {
		d := c.backoff(attempt, &StatusError{Code: 500})
		base *= time.Millisecond
		if d < base*9/10 || d > base*11/10 {
			t.Errorf("attempt %d: backoff %v, want %v ±10%%", attempt, d, base)
		}
	}
	if d := c.backoff(0, &retryAfterError{error: &StatusError{Code: 429}, after: 3 * time.Second}); d != 3*time.Second {
		t.Errorf("Retry-After ignored: %v", d)
	}
	if d := c.backoff(30, &StatusError{Code: 500}); d > time.Minute {
		t.Errorf("backoff not capped: %v", d)
	}
}

func TestStatusErrorText(t *testing.T) {
	c := &Client{}
	resp := &http.Response{StatusCode: 403, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`))}
	err := c.statusError("fetch manifest r/x:1", resp)
	want := "fetch manifest r/x:1: 403 Forbidden: DENIED: requested access to the resource is denied (access denied for these credentials)"
	if err.Error() != want {
		t.Errorf("got  %q\nwant %q", err.Error(), want)
	}
}
