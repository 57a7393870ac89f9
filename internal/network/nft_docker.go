package network

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Docker (iptables backend) sets the iptables FORWARD policy to DROP. An
// accept in berth's own table cannot override that: a packet must pass every
// base chain on the hook. Docker's documented hook for other software is the
// DOCKER-USER chain, jumped to first from FORWARD, so when that chain exists
// in iptables-nft's "filter" table berth puts two accepts for its bridge at
// its top. They use only the expressions iptables-nft itself emits for
// `-i BR -j ACCEPT` / `-o BR -j ACCEPT` (plus the comment userdata it uses for
// `-m comment`), so `iptables -S` keeps working. berth's own forward chain
// still applies its isolation rules to these packets. With iptables-legacy
// the chain is invisible to nftables and nothing is done.
const dockerUserChain = "DOCKER-USER"

// dockerUserChains returns the DOCKER-USER chains of table ip/ip6 filter.
func (fw *firewall) dockerUserChains() ([]*nftables.Chain, error) {
	var out []*nftables.Chain
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		chains, err := fw.c.ListChainsOfTableFamily(fam)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, fmt.Errorf("nftables: list chains: %w", err)
		}
		for _, ch := range chains {
			if ch.Name == dockerUserChain && ch.Table != nil && ch.Table.Name == "filter" {
				out = append(out, ch)
			}
		}
	}
	return out, nil
}

// iptIfname matches an interface name the way iptables-nft encodes -i/-o:
// the name and its terminating NUL.
func iptIfname(key expr.MetaKey, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: append([]byte(name), 0)},
	}
}

// dockerUserRules queues, for each DOCKER-USER chain, removal of n's old
// accepts and (unless remove) insertion of fresh ones.
func (fw *firewall) dockerUserRules(n *Network, remove bool) error {
	chains, err := fw.dockerUserChains()
	if err != nil || len(chains) == 0 {
		return err
	}
	tag := netTag(n.Name)
	for _, ch := range chains {
		rules, err := fw.c.GetRules(ch.Table, ch)
		if err != nil {
			return fmt.Errorf("nftables: list %s: %w", dockerUserChain, err)
		}
		for _, r := range rules {
			if ruleTag(r) == tag {
				if err := fw.c.DelRule(r); err != nil {
					return err
				}
			}
		}
		if remove || (ch.Table.Family == nftables.TableFamilyIPv6 && !n.Subnet6.IsValid()) {
			continue
		}
		for _, key := range []expr.MetaKey{expr.MetaKeyOIFNAME, expr.MetaKeyIIFNAME} {
			fw.c.InsertRule(&nftables.Rule{
				Table:    ch.Table,
				Chain:    ch,
				Exprs:    append(iptIfname(key, n.Bridge), &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}),
				UserData: userdata.AppendString(nil, userdata.TypeComment, tag),
			})
		}
	}
	return nil
}
