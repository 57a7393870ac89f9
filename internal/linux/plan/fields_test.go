package plan

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"berth/internal/spec"
)

// fieldPaths lists every field path below root (embedded structs inline),
// with its type; a slice, map, array or pointer is walked into.
func fieldPaths(root string, t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	var walk func(prefix string, t reflect.Type, seen map[reflect.Type]bool)
	walk = func(prefix string, t reflect.Type, seen map[reflect.Type]bool) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map || t.Kind() == reflect.Array {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		defer delete(seen, t)
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous {
				walk(prefix, f.Type, seen)
				continue
			}
			p := prefix + "." + f.Name
			out[p] = f
			walk(p, f.Type, seen)
		}
	}
	walk(root, t, map[reflect.Type]bool{})
	return out
}

var fields = Fields()

// classOf is a path's class; below an OtherOS section everything is.
func classOf(path string) (Class, bool) {
	for p := path; p != ""; {
		if c, ok := fields[p]; ok && (p == path || c == OtherOS) {
			return c, true
		}
		i := strings.LastIndex(p, ".")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0, false
}

// unclassified lists the field paths of t that the table does not name.
func unclassified(t reflect.Type) []string {
	var out []string
	for p := range fieldPaths("Spec", t) {
		if _, ok := classOf(p); !ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// TestFieldsClassified: every field of the runtime-spec types berth links
// is in the table, and every entry of the table is a field.
func TestFieldsClassified(t *testing.T) {
	if u := unclassified(reflect.TypeOf(specs.Spec{})); len(u) > 0 {
		t.Errorf("runtime-spec fields nobody classified (add them to plan.Fields):\n%s", strings.Join(u, "\n"))
	}
	paths := fieldPaths("Spec", reflect.TypeOf(specs.Spec{}))
	for p := range fields {
		if _, ok := paths[p]; !ok {
			t.Errorf("plan.Fields() names %s, which is not a field of the runtime-spec types", p)
		}
	}
}

// TestFieldsCatchesNewField shows the guard working: a Spec grown by one
// field (as a runtime-spec upgrade would grow it) fails the check, by name.
func TestFieldsCatchesNewField(t *testing.T) {
	type grown struct {
		specs.Spec
		Throwaway *int `json:"throwaway,omitempty"`
	}
	if got := unclassified(reflect.TypeOf(grown{})); !reflect.DeepEqual(got, []string{"Spec.Throwaway"}) {
		t.Fatalf("unclassified = %v, want [Spec.Throwaway]", got)
	}
}

// set gives the field at path (below s) a non-zero value, allocating what
// leads to it; v is the value for the leaf, or nil for a generic one.
func set(t *testing.T, s *specs.Spec, path string, v any) {
	t.Helper()
	if err := setIn(reflect.ValueOf(s).Elem(), strings.Split(path, ".")[1:], v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func setIn(cur reflect.Value, parts []string, v any) error {
	switch cur.Kind() {
	case reflect.Pointer:
		if cur.IsNil() {
			cur.Set(reflect.New(cur.Type().Elem()))
		}
		return setIn(cur.Elem(), parts, v)
	case reflect.Slice:
		if cur.Len() == 0 {
			cur.Set(reflect.Append(cur, reflect.New(cur.Type().Elem()).Elem()))
		}
		return setIn(cur.Index(cur.Len()-1), parts, v)
	case reflect.Map:
		// One entry, keyed "x", whose value gets the rest of the path.
		if cur.IsNil() {
			cur.Set(reflect.MakeMap(cur.Type()))
		}
		e := reflect.New(cur.Type().Elem()).Elem()
		if err := setIn(e, parts, v); err != nil {
			return err
		}
		cur.SetMapIndex(reflect.ValueOf("x").Convert(cur.Type().Key()), e)
		return nil
	}
	f := cur.FieldByName(parts[0])
	if !f.IsValid() {
		return fmt.Errorf("no field %s", parts[0])
	}
	if len(parts) > 1 {
		return setIn(f, parts[1:], v)
	}
	if v != nil {
		f.Set(reflect.ValueOf(v))
	} else {
		fill(f)
	}
	return nil
}

// fill gives v a generic non-zero value.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		e := reflect.New(v.Type().Elem()).Elem()
		fill(e)
		v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), e))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Struct:
		if v.NumField() > 0 {
			fill(v.Field(0))
		}
	}
}

// TestRefusedFieldsAreRefused sets each Refused field in a valid config and
// expects validation to refuse it, naming it.
func TestRefusedFieldsAreRefused(t *testing.T) {
	dir := t.TempDir()
	for path, c := range fields {
		if c != Refused {
			continue
		}
		s := spec.Default(false)
		s.Root.Path = dir
		set(t, s, path, nil)
		err := spec.Validate(s, "")
		// The section's JSON name: the first Refused element of the path.
		parts := strings.Split(path, ".")
		name := ""
		for i := 2; i <= len(parts); i++ {
			if fields[strings.Join(parts[:i], ".")] == Refused {
				f := fieldPaths("Spec", reflect.TypeOf(specs.Spec{}))[strings.Join(parts[:i], ".")]
				name, _, _ = strings.Cut(f.Tag.Get("json"), ",")
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s set: Validate = %v, want an error naming %q", path, err, name)
		}
	}
}

// planValues are values for InPlan fields whose generic non-zero value
// would make the config invalid or change nothing visible.
var planValues = map[string]any{
	"Spec.Hostname":                          "h",
	"Spec.Domainname":                        "d",
	"Spec.Root.Path":                         "/other/rootfs",
	"Spec.Root.Readonly":                     false, // the base is read-only
	"Spec.Process.Terminal":                  false, // the base has one
	"Spec.Linux.Seccomp.DefaultAction":       specs.ActKillProcess,
	"Spec.Linux.Seccomp.DefaultErrnoRet":     uptr(5),
	"Spec.Linux.Seccomp.Syscalls.Action":     specs.ActTrace,
	"Spec.Linux.Seccomp.Syscalls.ErrnoRet":   uptr(5),
	"Spec.Linux.Seccomp.Syscalls.Args.Op":    specs.OpEqualTo,
	"Spec.Process.Args":                      []string{"/bin/other"},
	"Spec.Process.Env":                       []string{"A=b"},
	"Spec.Process.Cwd":                       "/work",
	"Spec.Process.Rlimits.Type":              "RLIMIT_CORE",
	"Spec.Process.NoNewPrivileges":           false, // the base sets it
	"Spec.Process.Capabilities.Bounding":     []string{"CAP_CHOWN"},
	"Spec.Process.Capabilities.Effective":    []string{"CAP_CHOWN"},
	"Spec.Process.Capabilities.Inheritable":  []string{"CAP_CHOWN"},
	"Spec.Process.Capabilities.Permitted":    []string{"CAP_CHOWN"},
	"Spec.Process.Capabilities.Ambient":      []string{"CAP_CHOWN"},
	"Spec.Mounts.Destination":                "/elsewhere",
	"Spec.Mounts.Type":                       "bind",
	"Spec.Mounts.Source":                     "/host",
	"Spec.Mounts.Options":                    []string{"rw"},
	"Spec.Linux.Sysctl":                      map[string]string{"net.ipv4.ip_forward": "1"},
	"Spec.Linux.Devices.Path":                "/dev/other",
	"Spec.Linux.Devices.Type":                "b",
	"Spec.Linux.Seccomp.Architectures":       []specs.Arch{specs.ArchX32},
	"Spec.Linux.Seccomp.Flags":               []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog},
	"Spec.Linux.Seccomp.Syscalls.Names":      []string{"mkdir"},
	"Spec.Linux.Seccomp.Syscalls.Args.Index": uint(1),
	"Spec.Linux.RootfsPropagation":           "rprivate",
	"Spec.Linux.MaskedPaths":                 []string{"/other"},
	"Spec.Linux.ReadonlyPaths":               []string{"/other"},
	"Spec.Hooks.CreateContainer.Path":        "/bin/hook",
	"Spec.Process.Scheduler.Policy": func(s *specs.Spec) {
		*s.Process.Scheduler = specs.Scheduler{Policy: specs.SchedBatch}
	},
	"Spec.Process.Scheduler.Priority": func(s *specs.Spec) {
		*s.Process.Scheduler = specs.Scheduler{Policy: specs.SchedFIFO, Priority: 1}
	},
	"Spec.Process.Scheduler.Flags":       []specs.LinuxSchedulerFlag{specs.SchedFlagResetOnFork},
	"Spec.Process.Scheduler.Runtime":     uint64(5),
	"Spec.Process.Scheduler.Deadline":    uint64(5),
	"Spec.Process.Scheduler.Period":      uint64(5),
	"Spec.Process.IOPriority.Class":      specs.IOPRIO_CLASS_IDLE,
	"Spec.Process.ExecCPUAffinity.Final": "1",
	"Spec.Linux.MemoryPolicy.Mode":       specs.MpolPreferred,
	"Spec.Linux.MemoryPolicy.Nodes":      "0-1",
	"Spec.Linux.MemoryPolicy.Flags":      []specs.MemoryPolicyFlagType{specs.MpolFStaticNodes},
	"Spec.Linux.Personality.Domain":      specs.PerLinux32,
	"Spec.Hooks.StartContainer.Path":     "/bin/hook",
}

// planBase is the config the InPlan check varies: the default spec with a
// terminal, a seccomp profile, one device, a hook of each in-container
// kind, so that every field has something to change.
func planBase() *specs.Spec {
	s := spec.Default(false)
	s.Root.Path = "/rootfs"
	s.Process.Terminal = true
	s.Process.ConsoleSize = &specs.Box{Height: 24, Width: 80}
	s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}
	s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uptr(2),
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: 7, ValueTwo: 7, Op: specs.OpMaskedEqual}}}}}
	s.Hooks = &specs.Hooks{
		CreateContainer: []specs.Hook{{Path: "/bin/cc"}},
		StartContainer:  []specs.Hook{{Path: "/bin/sc"}},
	}
	s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedDeadline, Runtime: 1, Deadline: 2, Period: 3}
	s.Process.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_BE, Priority: 4}
	s.Process.ExecCPUAffinity = &specs.CPUAffinity{Final: "0"}
	s.Linux.MemoryPolicy = &specs.LinuxMemoryPolicy{Mode: specs.MpolBind, Nodes: "0"}
	s.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux}
	return s
}

// TestPlanFieldsReachThePlan: setting any InPlan field changes the plan
// compiled for the config. A field classified InPlan that the compiler
// ignores fails here.
func TestPlanFieldsReachThePlan(t *testing.T) {
	compile := func(s *specs.Spec) ([]byte, error) {
		if s.Annotations["exec"] != "" {
			// An exec process's own fields: compiled as one.
			res, err := CompileExec(&Exec{Process: s.Process, Linux: s.Linux, ConsoleFd: 6, Host: testHost()})
			if err != nil {
				return nil, err
			}
			return res.Plan.Encode(1), nil
		}
		in, err := testInit(s)
		if err != nil {
			return nil, err
		}
		res, err := CompileInit(in)
		if err != nil {
			return nil, err
		}
		return res.Plan.Encode(1), nil
	}
	base, err := compile(planBase())
	if err != nil {
		t.Fatal(err)
	}
	for path, c := range fields {
		if c != InPlan {
			continue
		}
		if st, ok := fieldPaths("Spec", reflect.TypeOf(specs.Spec{}))[path]; ok {
			k := st.Type.Kind()
			if (k == reflect.Pointer || k == reflect.Slice) && st.Type.Elem().Kind() == reflect.Struct || k == reflect.Struct {
				continue // a section: its leaves are checked
			}
		}
		s, b := planBase(), base
		if strings.HasPrefix(path, "Spec.Process.ExecCPUAffinity.") {
			s.Annotations = map[string]string{"exec": "1"}
			if b, err = compile(s); err != nil {
				t.Fatal(err)
			}
		}
		if f, ok := planValues[path].(func(*specs.Spec)); ok {
			f(s)
		} else {
			set(t, s, path, planValues[path])
		}
		got, err := compile(s)
		if err != nil {
			t.Errorf("%s set: %v", path, err)
			continue
		}
		if bytes.Equal(got, b) {
			t.Errorf("%s set: the plan did not change; is the field really compiled?", path)
		}
	}
}
