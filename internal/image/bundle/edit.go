package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/atomicfile"
	"berth/internal/linux/caps"
)

// ConfigName is the runtime config file of a bundle.
const ConfigName = "config.json"

// maxConfigSize bounds config.json reads.
const maxConfigSize = 16 << 20

// Load reads BUNDLE/config.json.
func Load(bundle string) (*specs.Spec, error) {
	p := filepath.Join(bundle, ConfigName)
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxConfigSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, maxConfigSize)
	}
	var s specs.Spec
	dec := json.NewDecoder(f)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &s, nil
}

// Save writes BUNDLE/config.json atomically: a temp file in the bundle,
// fsynced, renamed over the old one, so a reader (or a crash) sees the old
// or the new config and never half of one.
func Save(bundle string, s *specs.Spec) error {
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(bundle, ConfigName), append(b, '\n'), 0o644)
}

// Edit is a set of changes to a runtime config; zero fields change nothing.
type Edit struct {
	// Namespaces joins (path) or creates ("" path) namespaces by type, e.g.
	// {"network": "/run/netns/web"}; the value "host" removes the namespace
	// so the container shares the host's.
	Namespaces map[specs.LinuxNamespaceType]string
	CapAdd     []string // added to bounding, effective, permitted (and ambient/inheritable if in use)
	CapDrop    []string // "ALL" drops every capability
	Args       []string
	Env        []string // K=V sets or replaces; K alone unsets
	Cwd        string
	Terminal   *bool
	Hostname   *string
	Readonly   *bool
	User       *specs.User
	Mounts     []specs.Mount
	UnMounts   []string // destinations whose mounts are removed
	Annotation []string // K=V sets; K alone removes
}

// Apply changes s in place. It validates every value first, so a bad value
// leaves s untouched.
func (e *Edit) Apply(s *specs.Spec) error {
	add, err := normCaps(e.CapAdd, false)
	if err != nil {
		return err
	}
	drop, err := normCaps(e.CapDrop, true)
	if err != nil {
		return err
	}
	for t := range e.Namespaces {
		if !knownNamespace(t) {
			return fmt.Errorf("unknown namespace type %q", t)
		}
	}
	if e.Cwd != "" && !path.IsAbs(e.Cwd) {
		return fmt.Errorf("cwd %q must be an absolute path", e.Cwd)
	}
	for _, m := range e.Mounts {
		if !path.IsAbs(m.Destination) {
			return fmt.Errorf("mount destination %q must be an absolute path", m.Destination)
		}
	}
	for _, kv := range e.Env {
		if envName(kv) == "" {
			return fmt.Errorf("invalid environment entry %q", kv)
		}
	}
	if s.Process == nil {
		s.Process = &specs.Process{Cwd: "/"}
	}
	p := s.Process
	if len(e.Namespaces) > 0 {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		for t, nsPath := range e.Namespaces {
			var ns []specs.LinuxNamespace
			for _, n := range s.Linux.Namespaces {
				if n.Type != t {
					ns = append(ns, n)
				}
			}
			if nsPath != "host" {
				ns = append(ns, specs.LinuxNamespace{Type: t, Path: nsPath})
			}
			s.Linux.Namespaces = ns
		}
	}
	if len(add) > 0 || len(drop) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		c := p.Capabilities
		sets := []*[]string{&c.Bounding, &c.Effective, &c.Permitted}
		if len(c.Ambient) > 0 {
			sets = append(sets, &c.Ambient)
		}
		if len(c.Inheritable) > 0 {
			sets = append(sets, &c.Inheritable)
		}
		for _, set := range sets {
			*set = editCaps(*set, add, drop)
		}
		if len(drop) > 0 {
			c.Ambient = editCaps(c.Ambient, nil, drop)
			c.Inheritable = editCaps(c.Inheritable, nil, drop)
		}
	}
	if e.Args != nil {
		p.Args = append([]string(nil), e.Args...)
	}
	for _, kv := range e.Env {
		name := envName(kv)
		var env []string
		for _, old := range p.Env {
			if envName(old) != name {
				env = append(env, old)
			}
		}
		if strings.Contains(kv, "=") {
			env = append(env, kv)
		}
		p.Env = env
	}
	if e.Cwd != "" {
		p.Cwd = e.Cwd
	}
	if e.Terminal != nil {
		p.Terminal = *e.Terminal
	}
	if e.User != nil {
		p.User = *e.User
	}
	if e.Hostname != nil {
		s.Hostname = *e.Hostname
	}
	if e.Readonly != nil {
		if s.Root == nil {
			s.Root = &specs.Root{Path: "rootfs"}
		}
		s.Root.Readonly = *e.Readonly
	}
	rm := map[string]bool{}
	for _, d := range e.UnMounts {
		rm[path.Clean(d)] = true
	}
	for _, m := range e.Mounts {
		rm[path.Clean(m.Destination)] = true // a new mount replaces one at the same place
	}
	if len(rm) > 0 {
		var ms []specs.Mount
		for _, m := range s.Mounts {
			if !rm[path.Clean(m.Destination)] {
				ms = append(ms, m)
			}
		}
		s.Mounts = append(ms, e.Mounts...)
	}
	for _, kv := range e.Annotation {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			delete(s.Annotations, k)
			continue
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
	return nil
}

func editCaps(set, add, drop []string) []string {
	out := []string{}
	dropAll := len(drop) == 1 && drop[0] == "ALL"
	have := map[string]bool{}
	for _, c := range set {
		if dropAll || contains(drop, c) || have[c] {
			continue
		}
		have[c] = true
		out = append(out, c)
	}
	for _, c := range add {
		if !have[c] {
			have[c] = true
			out = append(out, c)
		}
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// normCaps accepts "net_raw", "NET_RAW" or "CAP_NET_RAW"; allowAll permits
// "ALL" (only meaningful for drop).
func normCaps(in []string, allowAll bool) ([]string, error) {
	var out []string
	for _, c := range in {
		u := strings.ToUpper(strings.TrimSpace(c))
		if u == "ALL" {
			if !allowAll {
				return nil, errors.New("capability ALL can only be dropped")
			}
			return []string{"ALL"}, nil
		}
		if !strings.HasPrefix(u, "CAP_") {
			u = "CAP_" + u
		}
		if _, ok := caps.Parse(u); !ok {
			return nil, fmt.Errorf("unknown capability %q", c)
		}
		out = append(out, u)
	}
	return out, nil
}

func knownNamespace(t specs.LinuxNamespaceType) bool {
	switch t {
	case specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace, specs.IPCNamespace,
		specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
		return true
	}
	return false
}

// ParseMount parses "type=bind,src=/a,dst=/b,ro,nosuid": key=value fields
// (type, source|src, destination|dst|target, options=a:b) and bare mount
// options. A bind mount without bind/rbind gets rbind.
func ParseMount(s string) (specs.Mount, error) {
	var m specs.Mount
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			m.Options = append(m.Options, f)
			continue
		}
		switch k {
		case "type":
			m.Type = v
		case "source", "src":
			m.Source = v
		case "destination", "dst", "target":
			m.Destination = v
		case "options", "opts":
			m.Options = append(m.Options, strings.Split(v, ":")...)
		default:
			return m, fmt.Errorf("mount %q: unknown field %q", s, k)
		}
	}
	if m.Destination == "" {
		return m, fmt.Errorf("mount %q: no destination", s)
	}
	if m.Type == "" {
		m.Type = "bind"
	}
	if m.Source == "" {
		if m.Type == "bind" {
			return m, fmt.Errorf("mount %q: a bind mount needs a source", s)
		}
		m.Source = m.Type
	}
	if m.Type == "bind" && !contains(m.Options, "bind") && !contains(m.Options, "rbind") {
		m.Options = append(m.Options, "rbind")
	}
	return m, nil
}
