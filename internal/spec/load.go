package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// File is the name of a bundle's config.
const File = "config.json"

// Load reads and validates <bundle>/config.json.
func Load(bundle string) (*specs.Spec, error) {
	f, err := os.Open(filepath.Join(bundle, File))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errors.New("JSON specification file config.json not found")
		}
		return nil, err
	}
	defer f.Close()
	return Parse(f, bundle)
}

// Parse decodes a config and validates it against bundle.
func Parse(r interface{ Read([]byte) (int, error) }, bundle string) (*specs.Spec, error) {
	var s specs.Spec
	dec := json.NewDecoder(r)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("parsing config.json: %w", err)
	}
	if err := Validate(&s, bundle); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks what runc checks before it starts anything, with errors
// that name the offending field.
func Validate(s *specs.Spec, bundle string) error {
	if s.Root == nil || s.Root.Path == "" {
		return errors.New("root.path is empty in config.json")
	}
	if s.Process == nil {
		return errors.New("process is not set in config.json")
	}
	if err := ValidateProcess(s.Process); err != nil {
		return err
	}
	if bundle != "" {
		root := RootfsPath(s, bundle)
		st, err := os.Stat(root)
		if err != nil {
			return fmt.Errorf("rootfs (%s) does not exist", root)
		}
		if !st.IsDir() {
			return fmt.Errorf("rootfs (%s) is not a directory", root)
		}
	}
	if s.Linux == nil {
		return errors.New("linux section is missing in config.json")
	}
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, n := range s.Linux.Namespaces {
		switch n.Type {
		case specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace, specs.IPCNamespace,
			specs.UTSNamespace, specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
		default:
			return fmt.Errorf("namespace %q does not exist", n.Type)
		}
		if seen[n.Type] {
			return fmt.Errorf("malformed spec file: duplicated ns %q", n.Type)
		}
		seen[n.Type] = true
		if n.Path != "" && !filepath.IsAbs(n.Path) {
			return fmt.Errorf("namespace path %q for %s must be absolute", n.Path, n.Type)
		}
	}
	hasUser := seen[specs.UserNamespace]
	if !hasUser && (len(s.Linux.UIDMappings) > 0 || len(s.Linux.GIDMappings) > 0) {
		return errors.New("user namespace mappings specified, but user namespace isn't enabled in the config")
	}
	if hasUser && nsPath(s, specs.UserNamespace) == "" && (len(s.Linux.UIDMappings) == 0 || len(s.Linux.GIDMappings) == 0) {
		return errors.New("user namespaces enabled, but no uid or gid mappings found")
	}
	if s.Hostname != "" && !seen[specs.UTSNamespace] {
		return errors.New("unable to set hostname without a private UTS namespace")
	}
	if s.Domainname != "" && !seen[specs.UTSNamespace] {
		return errors.New("unable to set domainname without a private UTS namespace")
	}
	if s.Linux.TimeOffsets != nil && !seen[specs.TimeNamespace] {
		return errors.New("time offsets specified, but time namespace isn't enabled in the config")
	}
	for i, m := range s.Mounts {
		if m.Destination == "" {
			return fmt.Errorf("mounts[%d]: destination is empty", i)
		}
	}
	if err := refuseUnsupported(s.Linux); err != nil {
		return err
	}
	if s.Linux.RootfsPropagation != "" {
		switch s.Linux.RootfsPropagation {
		case "shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable":
		default:
			return fmt.Errorf("invalid rootfsPropagation %q", s.Linux.RootfsPropagation)
		}
	}
	return nil
}

// Warnings returns what runc accepts in a config but warns about, in runc's
// words: mount destinations that are not absolute (they are taken relative
// to the container's root).
func Warnings(s *specs.Spec) []string {
	var out []string
	for _, m := range s.Mounts {
		if m.Destination != "" && !filepath.IsAbs(m.Destination) {
			out = append(out, fmt.Sprintf("mount destination %s is not absolute. Support for non-absolute mount destinations will be removed in a future release.", m.Destination))
		}
	}
	return out
}

// ValidateProcess checks a process (from config.json or exec -p).
func ValidateProcess(p *specs.Process) error {
	if len(p.Args) == 0 {
		return errors.New("args must not be empty")
	}
	if p.Cwd != "" && !filepath.IsAbs(p.Cwd) {
		return fmt.Errorf("cwd %q is not an absolute path", p.Cwd)
	}
	// ids above 2^31-1 wrap to -1 and below in set*id(2): uid 4294967295
	// means "unchanged" and would leave the process root (CVE-2024-40635).
	const maxID = 1<<31 - 1
	if p.User.UID > maxID || p.User.GID > maxID {
		return fmt.Errorf("process.user: uid %d / gid %d out of range (max %d)", p.User.UID, p.User.GID, maxID)
	}
	for _, g := range p.User.AdditionalGids {
		if g > maxID {
			return fmt.Errorf("process.user.additionalGids: %d out of range (max %d)", g, maxID)
		}
	}
	for _, r := range p.Rlimits {
		if !strings.HasPrefix(r.Type, "RLIMIT_") {
			return fmt.Errorf("invalid rlimit type %q", r.Type)
		}
	}
	return nil
}

// refuseUnsupported names the linux fields berth cannot honour: a config
// that sets one is refused rather than run without it (the field table of
// internal/linux/plan lists them; its test sets each and expects this).
func refuseUnsupported(l *specs.Linux) error {
	switch {
	case len(l.NetDevices) > 0:
		return errors.New("linux.netDevices is not supported")
	case l.IntelRdt != nil:
		return errors.New("linux.intelRdt is not supported: no Intel RDT support in berth")
	}
	return nil
}

func nsPath(s *specs.Spec, t specs.LinuxNamespaceType) string {
	for _, n := range s.Linux.Namespaces {
		if n.Type == t {
			return n.Path
		}
	}
	return ""
}

// RootfsPath is the absolute rootfs path of s in bundle.
func RootfsPath(s *specs.Spec, bundle string) string {
	p := s.Root.Path
	if !filepath.IsAbs(p) {
		p = filepath.Join(bundle, p)
	}
	return filepath.Clean(p)
}
