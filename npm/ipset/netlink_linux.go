//go:build linux

package ipset

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netlinkWriter writes ipsets over a netlink socket in one network
// namespace ("" = the process's own), opened on first use and reopened
// after a failure.
type netlinkWriter struct {
	netns string
	h     *netlink.Handle
}

func newNetlinkWriter(ns string) *netlinkWriter { return &netlinkWriter{netns: ns} }

// netlinkTimeout bounds one request: a kernel that does not answer fails
// the batch (retried with backoff) instead of hanging the worker.
const netlinkTimeout = 5 * time.Second

func (w *netlinkWriter) open() error {
	if w.h != nil {
		return nil
	}
	ns := netns.None()
	if w.netns != "" {
		var err error
		if ns, err = netns.GetFromPath(w.netns); err != nil {
			return err
		}
		defer ns.Close()
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return err
	}
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		h.Close()
		return err
	}
	w.h = h
	return nil
}

func (w *netlinkWriter) close() {
	if w.h != nil {
		w.h.Close()
		w.h = nil
	}
}

// WriteIPSet implements Writer. Every op is encoded before the first is
// sent: an op netlink cannot express fails with ErrUnsupported and nothing
// written.
func (w *netlinkWriter) WriteIPSet(ctx context.Context, ops []Op) error {
	entries := make([]*netlink.IPSetEntry, len(ops))
	for i, o := range ops {
		if o.Cmd == OpAdd || o.Cmd == OpDel {
			e, err := parseEntry(o.Member)
			if err != nil {
				return fmt.Errorf("%w: %s: %v", ErrUnsupported, o.Line(), err)
			}
			entries[i] = e
		}
	}
	if err := w.open(); err != nil {
		// No netlink (e.g. no permission to enter the namespace): the
		// process path still may work.
		return fmt.Errorf("%w: open: %v", ErrUnsupported, err)
	}
	for i, o := range ops {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.do(o, entries[i]); err != nil {
			w.close()
			return fmt.Errorf("ipset %s: %w", o.Line(), err)
		}
	}
	return nil
}

func (w *netlinkWriter) do(o Op, e *netlink.IPSetEntry) (err error) {
	defer func() {
		// vishvananda/netlink asserts that every request error is an
		// Errno; a short read or a timeout would otherwise panic.
		if r := recover(); r != nil {
			err = fmt.Errorf("netlink: %v", r)
		}
	}()
	switch o.Cmd {
	case OpCreate:
		fam := uint8(unix.AF_INET)
		if o.Family == "inet6" {
			fam = unix.AF_INET6
		}
		// Replace: no NLM_F_EXCL, i.e. -exist.
		return w.h.IpsetCreate(o.Set, o.Type, netlink.IpsetCreateOptions{Replace: true, Family: fam, MaxElements: MaxElem})
	case OpAdd:
		return w.h.IpsetAdd(o.Set, e)
	case OpDel:
		return w.h.IpsetDel(o.Set, e)
	case OpFlush:
		return w.h.IpsetFlush(o.Set)
	case OpSwap:
		return w.h.IpsetSwap(o.Set, o.Other)
	case OpDestroy:
		err := w.h.IpsetDestroy(o.Set)
		switch {
		case errors.Is(err, syscall.ENOENT):
			return fmt.Errorf("%w: %v", ErrNotExist, err)
		case errors.Is(err, nl.IPSetError(nl.IPSET_ERR_BUSY)), errors.Is(err, nl.IPSetError(nl.IPSET_ERR_REFERENCED)):
			return fmt.Errorf("%w: %v", ErrInUse, err)
		}
		return err
	}
	return fmt.Errorf("unknown ipset command %q", o.Cmd)
}

// parseEntry reads a member as `ipset save` prints it: an address, a
// prefix (hash:net), or "address,proto:port" (hash:ip,port). Replace
// clears NLM_F_EXCL: add and del are -exist.
func parseEntry(m string) (*netlink.IPSetEntry, error) {
	e := &netlink.IPSetEntry{Replace: true}
	addr, port, hasPort := strings.Cut(m, ",")
	var a netip.Addr
	if p, err := netip.ParsePrefix(addr); err == nil {
		a = p.Addr()
		if p.Bits() != a.BitLen() {
			e.CIDR = uint8(p.Bits())
		}
	} else if a, err = netip.ParseAddr(addr); err != nil {
		return nil, err
	}
	if a.Is4In6() || a.Zone() != "" {
		return nil, errors.New("mapped or zoned address")
	}
	e.IP = net.IP(a.AsSlice())
	if hasPort {
		proto, num, ok := strings.Cut(port, ":")
		n, err := strconv.ParseUint(num, 10, 16)
		if !ok || err != nil {
			return nil, fmt.Errorf("bad port %q", port)
		}
		var pr uint8
		switch proto {
		case "tcp":
			pr = unix.IPPROTO_TCP
		case "udp":
			pr = unix.IPPROTO_UDP
		case "sctp":
			pr = unix.IPPROTO_SCTP
		default:
			return nil, fmt.Errorf("protocol %q", proto)
		}
		p16 := uint16(n)
		e.Protocol, e.Port = &pr, &p16
	}
	return e, nil
}
