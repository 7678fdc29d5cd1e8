//go:build linux

package flowlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The NFLOG client: nfnetlink_log over github.com/mdlayher/netlink (the
// netlink library the project already uses; github.com/florianl/go-nflog
// is built on it but is not available from the module proxy here, and the
// protocol needed is two message types). Constants from
// linux/netfilter/nfnetlink_log.h.
const (
	nfnlSubsysULOG  = 4
	nfulnlMsgPacket = 0
	nfulnlMsgConfig = 1

	nfulaCfgCmd     = 1
	nfulaCfgMode    = 2
	nfulaCfgNLBufSz = 3
	nfulaCfgTimeout = 4
	nfulaCfgQThresh = 5

	nfulnlCfgCmdBind = 1
	nfulnlCopyPacket = 2

	nfulaTimestamp = 3
	nfulaPayload   = 9
	nfulaPrefix    = 10

	// copyRange: an IPv6 header and the L4 ports are all we read.
	copyRange = 64
)

// nflogConn is a socket bound to one NFLOG group.
type nflogConn struct {
	c     *netlink.Conn
	group uint16
}

// listenNFLOG binds group in the network namespace at nsPath ("" = the
// current one). EBUSY (another program bound the group) is reported with
// the config key to change.
func listenNFLOG(group uint16, nsPath string) (*nflogConn, error) {
	cfg := &netlink.Config{}
	if nsPath != "" {
		f, err := os.Open(nsPath)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("flow log: netlink socket: %w", err)
	}
	_ = c.SetReadBuffer(8 << 20)
	n := &nflogConn{c: c, group: group}
	if err := n.config(netlink.Attribute{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgCmdBind}}); err != nil {
		c.Close()
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("flowLog.nflogGroup %d: NFLOG group already bound by another program on this node (ulogd, another agent); choose a free group: %w", group, err)
		}
		return nil, fmt.Errorf("flowLog.nflogGroup %d: bind NFLOG group: %w", group, err)
	}
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, copyRange)
	mode[4] = nfulnlCopyPacket
	for _, a := range []netlink.Attribute{
		{Type: nfulaCfgMode, Data: mode},
		{Type: nfulaCfgQThresh, Data: binary.BigEndian.AppendUint32(nil, 1)}, // send each message at once
		{Type: nfulaCfgTimeout, Data: binary.BigEndian.AppendUint32(nil, 1)}, // or after 10 ms
		{Type: nfulaCfgNLBufSz, Data: binary.BigEndian.AppendUint32(nil, 65536)},
	} {
		if err := n.config(a); err != nil {
			c.Close()
			return nil, fmt.Errorf("flowLog.nflogGroup %d: configure NFLOG group: %w", group, err)
		}
	}
	return n, nil
}

func (n *nflogConn) config(a netlink.Attribute) error {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{a})
	if err != nil {
		return err
	}
	hdr := []byte{unix.AF_UNSPEC, 0, 0, 0}
	binary.BigEndian.PutUint16(hdr[2:], n.group)
	_, err = n.c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(hdr, attrs...),
	})
	return err
}

// Close closes the socket, which unbinds the group (the kernel destroys
// the socket's instances on release; an unbind message here would race
// the reader blocked in Receive on the same socket).
func (n *nflogConn) Close() error { return n.c.Close() }

// errOverrun: the socket's buffer overflowed; messages were lost.
var errOverrun = errors.New("nflog socket buffer overrun")

// receive returns the next batch of logged packets.
func (n *nflogConn) receive() ([]Packet, error) {
	msgs, err := n.c.Receive()
	if err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			return nil, errOverrun
		}
		return nil, err
	}
	var out []Packet
	for _, m := range msgs {
		if m.Header.Type != netlink.HeaderType(nfnlSubsysULOG<<8|nfulnlMsgPacket) || len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			continue
		}
		p := Packet{Time: time.Now()}
		for ad.Next() {
			switch ad.Type() {
			case nfulaPrefix:
				b := ad.Bytes()
				for len(b) > 0 && b[len(b)-1] == 0 {
					b = b[:len(b)-1]
				}
				p.Prefix = string(b)
			case nfulaPayload:
				p.parsePayload(ad.Bytes())
			case nfulaTimestamp:
				if b := ad.Bytes(); len(b) == 16 {
					p.Time = time.Unix(int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:]))*1000)
				}
			}
		}
		if p.Prefix != "" && p.Src.IsValid() {
			out = append(out, p)
		}
	}
	return out, nil
}

// parsePayload reads addresses, protocol and ports from an IP packet.
func (p *Packet) parsePayload(b []byte) {
	if len(b) < 1 {
		return
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return
		}
		ihl := int(b[0]&0xf) * 4
		p.Proto = b[9]
		p.Src, _ = netip.AddrFromSlice(b[12:16])
		p.Dst, _ = netip.AddrFromSlice(b[16:20])
		if len(b) >= ihl {
			l4 = b[ihl:]
		}
	case 6:
		if len(b) < 40 {
			return
		}
		p.Proto = b[6]
		p.Src, _ = netip.AddrFromSlice(b[8:24])
		p.Dst, _ = netip.AddrFromSlice(b[24:40])
		l4 = b[40:]
	}
	if len(l4) >= 4 && (p.Proto == 6 || p.Proto == 17 || p.Proto == 132) {
		p.SrcPort, p.DstPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	}
}
