//go:build linux

// Package dptest is the kernel test suite shared by every Linux NPM
// dataplane (iptables + ipset, nftables): a routed test cluster in network
// namespaces, one table of cases (a cluster, its policies and the expected
// allow/deny of real TCP, UDP and SCTP probes in both families), the
// update-without-gap, restart and cleanup scenarios, and the property test
// against the cyclonus oracle. A dataplane's tests call Run with a
// constructor; the suite depends only on dataplane.Dataplane:
//
//	func TestKernelShared(t *testing.T) {
//		dptest.Run(t, func(t testing.TB, node *netnstest.NS) dataplane.Dataplane {
//			d, err := iptables.New(context.Background(), iptables.Options{
//				Runner: dataplane.Exec{Netns: node.Path}, Mode: iptables.ModeNFT})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return d
//		}, dptest.Options{PropertyCases: 16})
//	}
//
// The pieces (NewTopo, Topo.Engine, Topo.Check, Topo.ProbeLoops,
// BasicPolicies/BasicExpect, Cases) are exported for a dataplane's own
// kernel tests (drift repair, cleanup), which are dataplane-specific.
package dptest

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/policy"
)

// Topo is a routed test cluster: a "node" namespace forwarding between
// veth-connected pod namespaces (pod i: 10.9.i.2 and fd09:0:i::2) and one
// off-cluster namespace (192.168.7.9, fd77::9). Each pod serves TCP 80 and
// 81, a UDP echo on 53, and records raw SCTP packets.
type Topo struct {
	Node *netnstest.NS
	Pods []*netnstest.NS
	Ext  *netnstest.NS
	IPs  [][2]string // per pod: v4, v6

	mu   sync.Mutex
	seen map[uint32]bool // SCTP INIT tags received
	stop []func()
}

// ExtV4 and ExtV6 are the off-cluster namespace's addresses (probe index -1).
const ExtV4, ExtV6 = "192.168.7.9", "fd77::9"

// NewTopo builds the cluster with n pods; everything is removed by t.Cleanup.
func NewTopo(t testing.TB, n int) *Topo {
	t.Helper()
	netnstest.RequireRoot(t)
	tp := &Topo{Node: netnstest.New(t, "npm-node"), seen: map[uint32]bool{}}
	tp.Node.MustExec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	tp.Node.MustExec(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	noDAD(t, tp.Node)
	link := func(ns *netnstest.NS, i int, v4n, v4p, v6n, v6p string) {
		nIf := fmt.Sprintf("vp%d", i)
		netnstest.Link(t, tp.Node, nIf, v4n+"/24", ns, "eth0", v4p+"/24")
		tp.Node.MustExec(t, "ip", "-6", "addr", "add", v6n+"/64", "dev", nIf, "nodad")
		ns.MustExec(t, "ip", "-6", "addr", "add", v6p+"/64", "dev", "eth0", "nodad")
		ns.MustExec(t, "ip", "route", "add", "default", "via", v4n)
		ns.MustExec(t, "ip", "-6", "route", "add", "default", "via", v6n)
	}
	for i := 0; i < n; i++ {
		ns := netnstest.New(t, fmt.Sprintf("npm-pod%d", i))
		noDAD(t, ns)
		link(ns, i, fmt.Sprintf("10.9.%d.1", i), fmt.Sprintf("10.9.%d.2", i), fmt.Sprintf("fd09:0:%d::1", i), fmt.Sprintf("fd09:0:%d::2", i))
		tp.Pods = append(tp.Pods, ns)
		tp.IPs = append(tp.IPs, [2]string{fmt.Sprintf("10.9.%d.2", i), fmt.Sprintf("fd09:0:%d::2", i)})
	}
	tp.Ext = netnstest.New(t, "npm-ext")
	noDAD(t, tp.Ext)
	link(tp.Ext, 99, "192.168.7.1", ExtV4, "fd77::1", ExtV6)
	for _, ns := range append(append([]*netnstest.NS{}, tp.Pods...), tp.Ext) {
		tp.serve(t, ns)
	}
	t.Cleanup(func() {
		for _, f := range tp.stop {
			f()
		}
	})
	return tp
}

// noDAD: addresses (link-local included) usable at once.
func noDAD(t testing.TB, ns *netnstest.NS) {
	ns.MustExec(t, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
}

func (tp *Topo) serve(t testing.TB, ns *netnstest.NS) {
	err := ns.Do(func() error {
		for _, port := range []int{80, 81} {
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
			if err != nil {
				return err
			}
			tp.stop = append(tp.stop, func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		u, err := net.ListenPacket("udp", ":53")
		if err != nil {
			return err
		}
		tp.stop = append(tp.stop, func() { u.Close() })
		go func() {
			buf := make([]byte, 256)
			for {
				n, a, err := u.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = u.WriteTo(buf[:n], a)
			}
		}()
		for _, fam := range []int{syscall.AF_INET, syscall.AF_INET6} {
			fd, err := syscall.Socket(fam, syscall.SOCK_RAW, 132)
			if err != nil {
				return fmt.Errorf("raw sctp socket: %w", err)
			}
			tv := syscall.Timeval{Usec: 100000}
			_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
			done := make(chan struct{})
			tp.stop = append(tp.stop, func() { close(done) })
			go func(fd, fam int) {
				defer syscall.Close(fd)
				buf := make([]byte, 2048)
				for {
					select {
					case <-done:
						return
					default:
					}
					n, _, err := syscall.Recvfrom(fd, buf, 0)
					if err != nil || n < 12 {
						continue
					}
					p := buf[:n]
					if fam == syscall.AF_INET { // IPv4 raw sockets include the IP header
						hl := int(p[0]&0x0f) * 4
						if len(p) < hl+32 {
							continue
						}
						p = p[hl:]
					}
					if len(p) >= 32 && p[12] == 1 { // INIT chunk: initiate tag at offset 16
						tag := binary.BigEndian.Uint32(p[16:20])
						tp.mu.Lock()
						tp.seen[tag] = true
						tp.mu.Unlock()
					}
				}
			}(fd, fam)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

const probeTimeout = 300 * time.Millisecond

// Probe reports whether a new connection from src (a pod index, or -1 for
// the external namespace) to dst address dstIP reaches it.
func (tp *Topo) Probe(src int, dstIP string, proto policy.Protocol, port int) bool {
	ns := tp.Ext
	if src >= 0 {
		ns = tp.Pods[src]
	}
	addr := net.JoinHostPort(dstIP, fmt.Sprint(port))
	ok := false
	switch proto {
	case policy.TCP:
		_ = ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, probeTimeout)
			if err == nil {
				ok = true
				c.Close()
			}
			return nil
		})
	case policy.UDP:
		_ = ns.Do(func() error {
			c, err := net.Dial("udp", addr)
			if err != nil {
				return nil
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(probeTimeout))
			msg := []byte(fmt.Sprint(rand.Int63()))
			if _, err := c.Write(msg); err != nil {
				return nil
			}
			buf := make([]byte, 64)
			n, err := c.Read(buf)
			ok = err == nil && string(buf[:n]) == string(msg)
			return nil
		})
	case policy.SCTP:
		tag := rand.Uint32() | 1
		_ = ns.Do(func() error { return sendSCTPInit(dstIP, port, tag) })
		deadline := time.Now().Add(probeTimeout)
		for time.Now().Before(deadline) {
			tp.mu.Lock()
			ok = tp.seen[tag]
			tp.mu.Unlock()
			if ok {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return ok
}

// sendSCTPInit sends one SCTP INIT chunk on a raw socket (this kernel has
// no SCTP sockets; netfilter still parses SCTP).
func sendSCTPInit(dst string, port int, tag uint32) error {
	a := netip.MustParseAddr(dst)
	pkt := make([]byte, 32)
	binary.BigEndian.PutUint16(pkt[0:], 40000+uint16(tag%20000)) // src port
	binary.BigEndian.PutUint16(pkt[2:], uint16(port))
	// verification tag 0 for INIT; checksum at 8
	pkt[12] = 1 // INIT
	binary.BigEndian.PutUint16(pkt[14:], 20)
	binary.BigEndian.PutUint32(pkt[16:], tag)     // initiate tag
	binary.BigEndian.PutUint32(pkt[20:], 65535)   // a_rwnd
	binary.BigEndian.PutUint16(pkt[24:], 1)       // outbound streams
	binary.BigEndian.PutUint16(pkt[26:], 1)       // inbound streams
	binary.BigEndian.PutUint32(pkt[28:], tag^0x5) // initial TSN
	crc := crc32.Checksum(pkt, crc32.MakeTable(crc32.Castagnoli))
	binary.LittleEndian.PutUint32(pkt[8:], crc)
	if a.Is4() {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, 132)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		return syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: a.As4()})
	}
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW, 132)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet6{Addr: a.As16()})
}
