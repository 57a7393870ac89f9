// Package hooks runs OCI lifecycle hooks: the container state JSON on stdin,
// the hook's args (args[0] is argv[0]) and env, and its timeout.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Run runs one hook. The error names the hook kind and index the way runc's
// does ("error running prestart hook #0: ..."), which tests and users match.
func Run(kind string, i int, h specs.Hook, st specs.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("error running %s hook #%d: timeout must be positive", kind, i)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	} else {
		cmd.Args = []string{h.Path}
	}
	cmd.Env = h.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Stdin = bytes.NewReader(b)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("error running %s hook #%d: timeout after %d seconds", kind, i, *h.Timeout)
	}
	if err != nil {
		return fmt.Errorf("error running %s hook #%d: %w, stdout: %s, stderr: %s", kind, i, err, stdout.String(), stderr.String())
	}
	return nil
}

// RunAll runs hooks in order and stops at the first failure.
func RunAll(kind string, hs []specs.Hook, st specs.State) error {
	for i, h := range hs {
		if err := Run(kind, i, h, st); err != nil {
			return err
		}
	}
	return nil
}
