package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// logger writes runc-compatible log lines. runc uses logrus; clients parse its
// output (containerd keeps the last level=error "msg" of log.json, podman
// unmarshals exactly one JSON object), so the shape is reproduced exactly:
//
//	text: time="2026-11-29T12:09:16Z" level=error msg="container does not exist"
//	json: {"level":"error","msg":"container does not exist","time":"2026-11-29T12:09:16Z"}
type logger struct {
	mu     sync.Mutex
	out    io.Writer
	json   bool
	debug  bool
	toFile bool // --log was given: fatal errors are also printed plainly on stderr
}

var log = &logger{out: os.Stderr}

func (l *logger) line(level, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now().UTC().Format(time.RFC3339)
	if l.json {
		// encoding/json sorts map keys, as logrus' JSONFormatter does.
		b, _ := json.Marshal(map[string]string{"level": level, "msg": msg, "time": now})
		l.out.Write(append(b, '\n'))
		return
	}
	fmt.Fprintf(l.out, "time=%q level=%s msg=%s\n", now, level, quoteIfNeeded(msg))
}

// quoteIfNeeded follows logrus' TextFormatter: bare words stay bare, anything
// with spaces or special characters is quoted.
func quoteIfNeeded(s string) string {
	for _, c := range s {
		if !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '/' || c == '@' || c == '^' || c == '+') {
			return fmt.Sprintf("%q", s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

func (l *logger) Errorf(format string, a ...any) { l.line("error", fmt.Sprintf(format, a...)) }
func (l *logger) Warnf(format string, a ...any)  { l.line("warning", fmt.Sprintf(format, a...)) }
func (l *logger) Infof(format string, a ...any)  { l.line("info", fmt.Sprintf(format, a...)) }
func (l *logger) Debugf(format string, a ...any) {
	if l.debug {
		l.line("debug", fmt.Sprintf(format, a...))
	}
}

// fatalWriter routes urfave/cli's own error output (bad flags, unknown help
// topics) through the logger at error level, as runc's FatalWriter does.
type fatalWriter struct{}

func (fatalWriter) Write(p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\n")
	if msg != "" {
		log.Errorf("%s", msg)
		if log.toFile {
			fmt.Fprintln(os.Stderr, msg)
		}
	}
	return len(p), nil
}

// setupLog applies --log, --log-format and --debug.
func setupLog(path, format string, debug bool) error {
	switch format {
	case "text", "":
		log.json = false
	case "json":
		log.json = true
	default:
		return fmt.Errorf("invalid log-format: %s", format)
	}
	log.debug = debug
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o644)
		if err != nil {
			return err
		}
		log.out = f
		log.toFile = true
	}
	return nil
}
