package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth/internal/state"
	"berth/internal/testutil"

	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web": true, "a": true, "Net_1.b-2": true, strings.Repeat("a", 64): true,
		"": false, "-x": false, ".x": false, "_x": false, "a/b": false, "a b": false, "..": false,
		strings.Repeat("a", 65): false, "a\x00": false, "ä": false,
	} {
		if err := ValidateName(name); (err == nil) != ok {
			t.Errorf("%q: %v", name, err)
		}
	}
}

func TestLeaseStore(t *testing.T) {
	m := New(WithStateDir(t.TempDir()))
	n := &Network{Name: "n1", Bridge: "br", Subnet: netip.MustParsePrefix("10.0.0.0/24"), Gateway: netip.MustParseAddr("10.0.0.1"), NAT: true}
	if err := m.saveNetwork(n); err != nil {
		t.Fatal(err)
	}
	lf, err := m.loadLeases("n1")
	if err != nil || len(lf.Endpoints) != 0 {
		t.Fatalf("empty: %+v %v", lf, err)
	}
	lf.Endpoints["a"] = &Endpoint{ID: "a", IPv4: netip.MustParsePrefix("10.0.0.2/24")}
	lf.Last4 = netip.MustParseAddr("10.0.0.2")
	if err := m.saveLeases("n1", lf); err != nil {
		t.Fatal(err)
	}
	got, err := m.loadLeases("n1")
	if err != nil || got.Endpoints["a"] == nil || got.Endpoints["a"].IPv4 != lf.Endpoints["a"].IPv4 || got.Last4 != lf.Last4 {
		t.Fatalf("round trip: %+v %v", got, err)
	}

	// Leases from another boot are void: every netns and veth died with it.
	saved := cachedBootID
	cachedBootID = "another-boot"
	got, err = m.loadLeases("n1")
	cachedBootID = saved
	if err != nil || len(got.Endpoints) != 0 {
		t.Fatalf("after reboot: %+v %v", got, err)
	}

	// The last release removes the file, so "no endpoints" is "no file".
	if err := m.saveLeases("n1", &leaseFile{Endpoints: map[string]*Endpoint{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(m.netDir("n1"), "endpoints.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("endpoints.json still there: %v", err)
	}

	// Corrupt files are reported, not silently reset.
	os.WriteFile(filepath.Join(m.netDir("n1"), "endpoints.json"), []byte("{"), 0o600)
	if _, err := m.loadLeases("n1"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt leases: %v", err)
	}
}

func TestListNetworks(t *testing.T) {
	m := New(WithStateDir(t.TempDir()))
	for _, name := range []string{"b", "a"} {
		if err := m.saveNetwork(&Network{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(m.stateDir, "not-a-network"), 0o700)
	os.MkdirAll(filepath.Join(m.stateDir, ".netns"), 0o700)
	nets, err := m.listNetworks()
	if err != nil || len(nets) != 2 || nets[0].Name != "a" || nets[1].Name != "b" {
		t.Fatalf("got %v %v", nets, err)
	}
	if _, err := m.loadNetwork("zzz"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := m.loadNetwork("../x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
}

func TestCompatible(t *testing.T) {
	n := &Network{Name: "w", Bridge: "berth0", Subnet: netip.MustParsePrefix("10.89.0.0/24"), Gateway: netip.MustParseAddr("10.89.0.1"), NAT: true}
	for _, c := range []struct {
		o    CreateOptions
		want string // "" = compatible
	}{
		{CreateOptions{}, ""},
		{CreateOptions{Subnet: "10.89.0.0/24", Bridge: "berth0", Gateway: "10.89.0.1"}, ""},
		{CreateOptions{Subnet: "10.89.1.0/24"}, "subnet"},
		{CreateOptions{Bridge: "other"}, "bridge"},
		{CreateOptions{NoNAT: true}, "nat"},
		{CreateOptions{Subnet6: "fd00::/64"}, "IPv6"},
	} {
		err := compatible(n, c.o)
		if (err == nil) != (c.want == "") || (err != nil && (!strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrExist))) {
			t.Errorf("%+v: %v", c.o, err)
		}
	}
}

func TestVethNames(t *testing.T) {
	a, b := vethName("web", "/var/run/netns/c1"), vethName("web", "/var/run/netns/c2")
	if a == b || a != vethName("web", "/var/run/netns/c1") || a == vethName("web2", "/var/run/netns/c1") {
		t.Errorf("names not deterministic and distinct: %s %s", a, b)
	}
	if len(a) >= 16 || !strings.HasPrefix(a, vethPrefix) {
		t.Errorf("%s: too long or without the prefix", a)
	}
	// Ownership is the alias, never the name.
	for alias, want := range map[string]string{linkAlias("web"): "web", "berth net=": "", "": "", "berth0": "", "docker net=web": ""} {
		l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a, Alias: alias}}
		if n, ok := aliasNet(l); n != want || ok != (want != "") {
			t.Errorf("alias %q: network %q %t, want %q", alias, n, ok, want)
		}
	}
	for s, ok := range map[string]bool{"eth0": true, "a": true, "": false, "0123456789abcdef": false, "a/b": false, "a:1": false, "..": false} {
		if err := validIfname(s); (err == nil) != ok {
			t.Errorf("validIfname(%q): %v", s, err)
		}
	}
}

func TestTags(t *testing.T) {
	for tag, want := range map[string][2]string{
		netTag("web"):                      {"web", ""},
		epTag("web", "/var/run/netns/c1"):  {"web", "/var/run/netns/c1"},
		epTag("web", "container:abc#eth1"): {"web", "container:abc#eth1"},
	} {
		n, id, ok := tagNet(tag)
		if !ok || n != want[0] || id != want[1] {
			t.Errorf("%q: %q %q %t", tag, n, id, ok)
		}
	}
	if _, _, ok := tagNet("docker rule"); ok {
		t.Error("foreign comment parsed as berth's")
	}
}

func TestMatchSubnet(t *testing.T) {
	for _, c := range []struct {
		prefix      string
		src, neg    bool
		off         uint32
		mask, value []byte
	}{
		{"10.89.0.0/20", true, false, 12, []byte{0xff, 0xff, 0xf0, 0}, []byte{10, 89, 0, 0}},
		{"10.89.0.0/24", false, true, 16, []byte{0xff, 0xff, 0xff, 0}, []byte{10, 89, 0, 0}},
		{"fd00:1::/64", true, false, 8, append(bytesOf(0xff, 8), bytesOf(0, 8)...), netip.MustParseAddr("fd00:1::").AsSlice()},
		{"fd00:1::/64", false, false, 24, append(bytesOf(0xff, 8), bytesOf(0, 8)...), netip.MustParseAddr("fd00:1::").AsSlice()},
	} {
		e := matchSubnet(netip.MustParsePrefix(c.prefix), c.src, c.neg)
		if len(e) != 5 {
			t.Fatalf("%s: %d expressions", c.prefix, len(e))
		}
		pl, bw, cmp := e[2].(*expr.Payload), e[3].(*expr.Bitwise), e[4].(*expr.Cmp)
		wantOp := expr.CmpOpEq
		if c.neg {
			wantOp = expr.CmpOpNeq
		}
		if pl.Offset != c.off || string(bw.Mask) != string(c.mask) || string(cmp.Data) != string(c.value) || cmp.Op != wantOp {
			t.Errorf("%s src=%t: offset %d mask %x value %x op %v", c.prefix, c.src, pl.Offset, bw.Mask, cmp.Data, cmp.Op)
		}
	}
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func TestEndpointID(t *testing.T) {
	m := New(WithNetnsDir("/var/run/netns"))
	for _, c := range []struct {
		o        ConnectOptions
		id, path string
		err      bool
	}{
		{ConnectOptions{Netns: "c1"}, "/var/run/netns/c1", "/var/run/netns/c1", false},
		{ConnectOptions{Netns: "/proc/42/ns/net", Ifname: "eth1"}, "/proc/42/ns/net#eth1", "/proc/42/ns/net", false},
		{ConnectOptions{Container: "abc"}, "container:abc", "", false},
		{ConnectOptions{Container: "abc", Netns: "/proc/42/ns/net"}, "container:abc", "/proc/42/ns/net", false},
		{ConnectOptions{}, "", "", true},
		{ConnectOptions{Netns: "bad name"}, "", "", true},
		{ConnectOptions{Container: "a/b"}, "", "", true},
		{ConnectOptions{Container: "abc", CreateNetns: true}, "", "", true},
		{ConnectOptions{Netns: "/tmp/x", CreateNetns: true}, "", "", true},
	} {
		id, path, err := m.endpointID(&c.o)
		if c.err != (err != nil) || id != c.id || path != c.path {
			t.Errorf("%+v: %q %q %v", c.o, id, path, err)
		}
	}
}

// TestContainerInit: connect --container finds init through the runtime's
// state with its start-time check: a pid that now belongs to another
// process (the container's init died and the pid was reused) is refused.
func TestContainerInit(t *testing.T) {
	root := t.TempDir()
	self := os.Getpid()
	start, _, err := state.ProcStart(self)
	if err != nil {
		t.Fatal(err)
	}
	write := func(id string, pid int, start uint64) {
		os.MkdirAll(filepath.Join(root, id), 0o711)
		b := fmt.Sprintf(`{"id":%q,"init_process_pid":%d,"init_process_start":%d}`, id, pid, start)
		if err := os.WriteFile(filepath.Join(root, id, "state.json"), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("live", self, start)
	write("reused", self, start+1) // the recorded init started at another time
	write("none", 0, 0)
	if pid, st, err := containerInit(root, "live"); err != nil || pid != self || st != start || !stillInit(pid, st) {
		t.Errorf("live: %d %d %v", pid, st, err)
	}
	for _, id := range []string{"reused", "none"} {
		if _, _, err := containerInit(root, id); !errors.Is(err, state.ErrNotRunning) {
			t.Errorf("%s: %v, want %v", id, err, state.ErrNotRunning)
		}
	}
	if stillInit(self, start+1) {
		t.Error("stillInit accepted another start time")
	}
	for _, id := range []string{"../etc", "", "missing"} {
		if _, _, err := containerInit(root, id); err == nil {
			t.Errorf("%q: want an error", id)
		}
	}
}

// TestOwnedNetns creates and removes a named netns the way connect does,
// and checks that only what the marker proves is ever removed.
func TestOwnedNetns(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	t.Cleanup(func() {
		for unix.Unmount(dir, unix.MNT_DETACH) == nil {
		}
	})
	m := New(WithStateDir(t.TempDir()), WithNetnsDir(dir))
	p := filepath.Join(dir, "x")
	made, err := m.createOwnedNetns(p, "n1")
	if err != nil || made != netnsCreated {
		t.Fatalf("create: %v %v", made, err)
	}
	f, id, err := openNetns(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	self, _ := statNetns("/proc/self/ns/net")
	if id == self {
		t.Fatal("named netns is the caller's own")
	}
	mk := m.readMarker(p)
	if mk == nil || mk.Network != "n1" || mk.NS == nil || *mk.NS != id || mk.File == nil {
		t.Fatalf("marker %+v, namespace %+v", mk, id)
	}
	// Again for the same network: what a killed connect left is taken back;
	// for another network it is somebody else's.
	if made, err := m.createOwnedNetns(p, "n1"); err != nil || made != netnsLeft {
		t.Fatalf("second create: %v %v", made, err)
	}
	if made, err := m.createOwnedNetns(p, "n2"); err != nil || made != netnsForeign {
		t.Fatalf("create for another network: %v %v", made, err)
	}
	if err := m.removeOwnedNetns(p, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("still there: %v", err)
	}
	if m.readMarker(p) != nil {
		t.Fatal("marker left")
	}
	if err := m.removeOwnedNetns(p, nil); err != nil {
		t.Fatalf("remove twice: %v", err)
	}

	// A marker whose netns was never made (a connect killed right after
	// writing it), then another tool makes a netns of that name: it is
	// not berth's, and neither remove nor create touches it.
	if err := m.writeMarker(&netnsMarker{Netns: p, Network: "n1", File: &fileID{Dev: 1, Ino: 2}}); err != nil {
		t.Fatal(err)
	}
	foreign := New(WithStateDir(t.TempDir()), WithNetnsDir(dir))
	if _, err := foreign.createOwnedNetns(p, "other"); err != nil {
		t.Fatal(err)
	}
	fid, _ := statNetns(p)
	if owns(m.readMarker(p), p, nil) != ownsNothing {
		t.Fatal("a stale marker proves ownership of a netns made later")
	}
	if err := m.removeOwnedNetns(p, nil); err != nil {
		t.Fatal(err)
	}
	if now, err := statNetns(p); err != nil || now != fid {
		t.Fatalf("the foreign netns was touched: %v", err)
	}
	if made, err := m.createOwnedNetns(p, "n1"); err != nil || made != netnsForeign {
		t.Fatalf("create over a foreign netns: %v %v", made, err)
	}
	if err := foreign.removeOwnedNetns(p, nil); err != nil {
		t.Fatal(err)
	}

	// A plain file at the path is refused, not mounted over or removed.
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.createOwnedNetns(p, "n1"); err == nil || !strings.Contains(err.Error(), "not a network namespace") {
		t.Fatalf("create over a plain file: %v", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the plain file was removed: %v", err)
	}
	if _, _, err := openNetns("/proc/self/ns/mnt"); err == nil {
		t.Fatal("a mount namespace accepted as a netns")
	}
}
