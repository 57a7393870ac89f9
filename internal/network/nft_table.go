package network

import (
	"errors"
	"fmt"

	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// berth's table carries a comment, set in the request that creates it (as
// `nft add table inet berth { comment "..."; }` does; kernel 5.10+): the
// proof that the table is berth's. berth deletes the whole table only when
// it has this comment, and adds nothing to a table of that name without it.
// google/nftables (v0.3) has no table comments, so the two requests that
// create and read the table are made here with mdlayher/netlink, the
// library google/nftables itself sends through.
const tableComment = "berth: container networks, managed by berth network"

// nftaTableUserdata is NFTA_TABLE_USERDATA (linux/netfilter/nf_tables.h),
// which x/sys does not define.
const nftaTableUserdata = 6

func nfgenmsg(family uint8, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

// tableState reports whether table inet berth exists and whether it carries
// berth's comment.
func tableState() (exists, owned bool, err error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return false, false, fmt.Errorf("nftables: %w", err)
	}
	defer c.Close()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_TABLE_NAME, Data: []byte(tableName + "\x00")}})
	if err != nil {
		return false, false, err
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE), Flags: netlink.Request},
		Data:   append(nfgenmsg(unix.NFPROTO_INET, 0), attrs...),
	})
	if errors.Is(err, unix.ENOENT) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("nftables: get table inet %s: %w", tableName, err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return true, false, err
		}
		for ad.Next() {
			if ad.Type() == nftaTableUserdata {
				if s, ok := userdata.GetString(ad.Bytes(), userdata.TypeComment); ok && s == tableComment {
					owned = true
				}
			}
		}
		if err := ad.Err(); err != nil {
			return true, false, err
		}
	}
	return true, owned, nil
}

// createTable creates table inet berth with berth's comment. It fails with
// EEXIST if a table of that name appeared meanwhile (NLM_F_EXCL), so a table
// someone else made is never taken for berth's.
func createTable() error {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.Close()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: []byte(tableName + "\x00")},
		{Type: unix.NFTA_TABLE_FLAGS, Data: []byte{0, 0, 0, 0}},
		{Type: nftaTableUserdata, Data: userdata.AppendString(nil, userdata.TypeComment, tableComment)},
	})
	if err != nil {
		return err
	}
	batch := []netlink.Message{
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
			Data: nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)},
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl},
			Data: append(nfgenmsg(unix.NFPROTO_INET, 0), attrs...)},
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
			Data: nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)},
	}
	if _, err := c.SendMessages(batch); err != nil {
		return fmt.Errorf("nftables: create table inet %s: %w", tableName, err)
	}
	if _, err := c.Receive(); err != nil {
		return fmt.Errorf("nftables: create table inet %s: %w", tableName, err)
	}
	return nil
}

// errForeignTable refuses to touch a table inet berth that berth did not make.
var errForeignTable = fmt.Errorf("nftables: table inet %s exists without berth's comment: it was not created by berth, which will not add rules to it or delete it (remove or rename it)", tableName)
