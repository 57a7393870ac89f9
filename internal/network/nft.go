package network

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// berth's rules live in their own table, "inet berth", next to whatever the
// host, docker or firewalld keep in theirs; berth never flushes anything but
// its own table. Layout (in nft syntax; S/S6 the subnets, BR the bridge):
//
//	table inet berth {
//	  chain postrouting { type nat hook postrouting priority srcnat
//	    ip saddr S ip daddr != S masquerade                 # net=N  outbound NAT (ip6 too)
//	    oifname BR ip saddr 127.0.0.0/8 masquerade          # net=N  localhost -> published port
//	    oifname BR ip saddr S ct status dnat masquerade     # net=N  hairpin (ip6 too)
//	  }
//	  chain forward { type filter hook forward priority filter
//	    iifname BR accept; oifname BR ct state established,related accept
//	    oifname BR ct status dnat accept; oifname BR drop   # net=N  (no drop with --no-nat)
//	  }
//	  chain prerouting { type nat hook prerouting priority dstnat; fib daddr type local jump hostports }
//	  chain output     { type nat hook output priority dstnat;     fib daddr type local jump hostports }
//	  chain hostports  { [ip daddr H] tcp dport P dnat ip to C:CP   # ep=N/ID  (ip6 for dual-stack) }
//	}
//
// Every rule carries a comment ("berth net=N" or "berth ep=N/ID"), so a rule
// is found and removed by owner, and `check` can name leaked ones. Accepting
// here cannot override another table's drop (an nft verdict is final only
// within its table); for docker's FORWARD DROP see nft_docker.go.
const (
	tableName     = "berth"
	chPostrouting = "postrouting"
	chForward     = "forward"
	chPrerouting  = "prerouting"
	chOutput      = "output"
	chHostports   = "hostports"
	tagBase       = "berth base"
)

func netTag(net string) string    { return "berth net=" + net }
func epTag(net, id string) string { return "berth ep=" + net + "/" + id }
func ruleTag(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

type firewall struct {
	c     *nftables.Conn
	table *nftables.Table
}

func newFirewall() (*firewall, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &firewall{c: c, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: tableName}}, nil
}

func (fw *firewall) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: fw.table}
}

// ensureBase creates the table, the base chains and the two jumps into
// hostports, unless they are there already. The caller holds the global lock.
func (fw *firewall) ensureBase() error {
	exists, owned, err := tableState()
	if err != nil {
		return err
	}
	if exists && !owned {
		return errForeignTable
	}
	if !exists {
		if err := createTable(); err != nil {
			if !errors.Is(err, unix.EEXIST) {
				return err
			}
			if _, owned, err := tableState(); err != nil {
				return err
			} else if !owned {
				return errForeignTable
			}
		}
	}
	accept := nftables.ChainPolicyAccept
	fw.c.AddChain(&nftables.Chain{Name: chPostrouting, Table: fw.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	fw.c.AddChain(&nftables.Chain{Name: chPrerouting, Table: fw.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	fw.c.AddChain(&nftables.Chain{Name: chOutput, Table: fw.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	fw.c.AddChain(&nftables.Chain{Name: chForward, Table: fw.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	fw.c.AddChain(&nftables.Chain{Name: chHostports, Table: fw.table})
	if err := fw.c.Flush(); err != nil {
		return fmt.Errorf("nftables: create table inet %s: %w", tableName, err)
	}
	for _, ch := range []string{chPrerouting, chOutput} {
		rules, err := fw.c.GetRules(fw.table, fw.chain(ch))
		if err != nil {
			return fmt.Errorf("nftables: list %s: %w", ch, err)
		}
		has := false
		for _, r := range rules {
			if ruleTag(r) == tagBase {
				has = true
			}
		}
		if !has {
			fw.add(ch, tagBase, fibLocal(), jump(chHostports))
		}
	}
	if err := fw.c.Flush(); err != nil {
		return fmt.Errorf("nftables: base rules: %w", err)
	}
	return nil
}

func (fw *firewall) add(chain, tag string, exprs ...[]expr.Any) {
	var all []expr.Any
	for _, e := range exprs {
		all = append(all, e...)
	}
	fw.c.AddRule(&nftables.Rule{
		Table:    fw.table,
		Chain:    fw.chain(chain),
		Exprs:    all,
		UserData: userdata.AppendString(nil, userdata.TypeComment, tag),
	})
}

// netRules queues the per-network rules.
func (fw *firewall) netRules(n *Network) {
	tag := netTag(n.Name)
	if n.NAT {
		fw.add(chPostrouting, tag, matchSubnet(n.Subnet, true, false), matchSubnet(n.Subnet, false, true), masq())
		if n.Subnet6.IsValid() {
			fw.add(chPostrouting, tag, matchSubnet(n.Subnet6, true, false), matchSubnet(n.Subnet6, false, true), masq())
		}
	}
	// Published ports reached from the host's own 127.0.0.1 (route_localnet
	// lets the packet leave through the bridge; the container must see a
	// source it can answer) and hairpin from a container on this bridge to
	// the host address (without masquerade the reply would go straight back
	// over the bridge with the wrong source and be dropped).
	fw.add(chPostrouting, tag, ifname(unix.NFT_META_OIFNAME, n.Bridge), matchSubnet(netip.MustParsePrefix("127.0.0.0/8"), true, false), masq())
	fw.add(chPostrouting, tag, ifname(unix.NFT_META_OIFNAME, n.Bridge), matchSubnet(n.Subnet, true, false), ctStatusDNAT(), masq())
	if n.Subnet6.IsValid() {
		fw.add(chPostrouting, tag, ifname(unix.NFT_META_OIFNAME, n.Bridge), matchSubnet(n.Subnet6, true, false), ctStatusDNAT(), masq())
	}

	fw.add(chForward, tag, ifname(unix.NFT_META_IIFNAME, n.Bridge), verdict(expr.VerdictAccept))
	fw.add(chForward, tag, ifname(unix.NFT_META_OIFNAME, n.Bridge), ctStateEstablished(), verdict(expr.VerdictAccept))
	fw.add(chForward, tag, ifname(unix.NFT_META_OIFNAME, n.Bridge), ctStatusDNAT(), verdict(expr.VerdictAccept))
	if n.NAT {
		// A NATed network is reachable from outside only through published
		// ports (docker's rule); a routed (--no-nat) network is open.
		fw.add(chForward, tag, ifname(unix.NFT_META_OIFNAME, n.Bridge), verdict(expr.VerdictDrop))
	}
}

// portRules queues the DNAT rules of one endpoint: an IPv4 rule per mapping
// unless its host address is IPv6, and on a dual-stack endpoint an IPv6 rule
// per mapping unless its host address is IPv4.
func (fw *firewall) portRules(ep *Endpoint) int {
	n := 0
	for _, p := range ep.Ports {
		for _, v6 := range []bool{false, true} {
			dst := ep.IPv4.Addr()
			if v6 {
				dst = ep.IPv6.Addr()
			}
			if !dst.IsValid() || (p.HostIP.IsValid() && p.HostIP.Is6() != v6) {
				continue
			}
			fam, daddrOff := byte(unix.NFPROTO_IPV4), uint32(16)
			if v6 {
				fam, daddrOff = unix.NFPROTO_IPV6, 24
			}
			e := [][]expr.Any{nfproto(fam), l4proto(p.Protocol)}
			if p.HostIP.IsValid() {
				e = append(e, []expr.Any{
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOff, Len: uint32(p.HostIP.BitLen() / 8)},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.HostIP.AsSlice()},
				})
			}
			e = append(e, []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.HostPort)},
				&expr.Immediate{Register: 1, Data: dst.AsSlice()},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(p.ContainerPort)},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(fam), RegAddrMin: 1, RegProtoMin: 2, Specified: true},
			})
			if fw != nil {
				fw.add(chHostports, epTag(ep.Network, ep.ID), e...)
			}
			n++
		}
	}
	return n
}

// portRuleCount is how many DNAT rules portRules makes for ep (a nil
// firewall only counts).
func portRuleCount(ep *Endpoint) int { return (*firewall)(nil).portRules(ep) }

// delTagged queues deletion of every rule whose comment satisfies match, in
// the given chains, and returns how many. Missing table or chains are fine:
// teardown must succeed on a host that has rebooted or been flushed.
func (fw *firewall) delTagged(chains []string, match func(string) bool) (int, error) {
	n := 0
	for _, ch := range chains {
		rules, err := fw.c.GetRules(fw.table, fw.chain(ch))
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("nftables: list %s: %w", ch, err)
		}
		for _, r := range rules {
			if match(ruleTag(r)) {
				if err := fw.c.DelRule(r); err != nil {
					return n, err
				}
				n++
			}
		}
	}
	return n, nil
}

// listTags returns the comments of all rules in berth's table, per chain.
func (fw *firewall) listTags() (map[string][]string, error) {
	out := map[string][]string{}
	exists, _, err := tableState()
	if err != nil || !exists {
		return out, err
	}
	for _, ch := range []string{chPostrouting, chForward, chPrerouting, chOutput, chHostports} {
		rules, err := fw.c.GetRules(fw.table, fw.chain(ch))
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			out[ch] = append(out[ch], ruleTag(r))
		}
	}
	return out, nil
}

var allChains = []string{chPostrouting, chForward, chPrerouting, chOutput, chHostports}

// --- expression builders ---

func nfproto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func l4proto(proto string) []expr.Any {
	p := byte(unix.IPPROTO_TCP)
	if proto == "udp" {
		p = unix.IPPROTO_UDP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// matchSubnet matches the source (src) or destination address against p,
// negated if neg.
func matchSubnet(p netip.Prefix, src, neg bool) []expr.Any {
	fam, off, l := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if p.Addr().Is6() {
		fam, off, l = unix.NFPROTO_IPV6, 8, 16
	}
	if !src {
		off += l
	}
	mask := make([]byte, l)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	op := expr.CmpOpEq
	if neg {
		op = expr.CmpOpNeq
	}
	return append(nfproto(fam),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: l},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: l, Mask: mask, Xor: make([]byte, l)},
		&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()},
	)
}

func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	mask := binaryutil.NativeEndian.PutUint32(bits)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// IPS_DST_NAT from linux/netfilter/nf_conntrack_common.h.
const ipsDstNAT = 1 << 5

func ctStatusDNAT() []expr.Any { return ctBits(expr.CtKeySTATUS, ipsDstNAT) }
func ctStateEstablished() []expr.Any {
	return ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
}

func fibLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

// tagNet extracts N from "berth net=N" or "berth ep=N/ID".
func tagNet(tag string) (net, id string, ok bool) {
	if s, found := strings.CutPrefix(tag, "berth net="); found {
		return s, "", true
	}
	if s, found := strings.CutPrefix(tag, "berth ep="); found {
		n, i, _ := strings.Cut(s, "/")
		return n, i, true
	}
	return "", "", false
}
