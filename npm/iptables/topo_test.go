//go:build linux

package iptables

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/policy"
)

// topo is a routed test cluster: a "node" namespace forwarding between
// veth-connected pod namespaces (pod i: 10.9.i.2 and fd09:0:i::2) and one
// off-cluster namespace (192.168.7.9, fd77::9). Each pod serves TCP 80 and
// 81, a UDP echo on 53, and records raw SCTP packets.
type topo struct {
	node *netnstest.NS
	pods []*netnstest.NS
	ext  *netnstest.NS
	ips  [][2]string // per pod: v4, v6

	mu   sync.Mutex
	seen map[uint32]bool // SCTP INIT tags received
	stop []func()
}

const extV4, extV6 = "192.168.7.9", "fd77::9"

func newTopo(t *testing.T, n int) *topo {
	t.Helper()
	netnstest.RequireRoot(t)
	for _, tool := range []string{"ipset", "iptables-nft-restore", "iptables-legacy-restore"} {
		if _, err := (dataplane.Exec{}).Run(context.Background(), nil, "sh", "-c", "command -v "+tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	tp := &topo{node: netnstest.New(t, "npm-node"), seen: map[uint32]bool{}}
	tp.node.MustExec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	tp.node.MustExec(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	noDAD(t, tp.node)
	link := func(ns *netnstest.NS, i int, v4n, v4p, v6n, v6p string) {
		nIf := fmt.Sprintf("vp%d", i)
		netnstest.Link(t, tp.node, nIf, v4n+"/24", ns, "eth0", v4p+"/24")
		tp.node.MustExec(t, "ip", "-6", "addr", "add", v6n+"/64", "dev", nIf, "nodad")
		ns.MustExec(t, "ip", "-6", "addr", "add", v6p+"/64", "dev", "eth0", "nodad")
		ns.MustExec(t, "ip", "route", "add", "default", "via", v4n)
		ns.MustExec(t, "ip", "-6", "route", "add", "default", "via", v6n)
	}
	for i := 0; i < n; i++ {
		ns := netnstest.New(t, fmt.Sprintf("npm-pod%d", i))
		noDAD(t, ns)
		link(ns, i, fmt.Sprintf("10.9.%d.1", i), fmt.Sprintf("10.9.%d.2", i), fmt.Sprintf("fd09:0:%d::1", i), fmt.Sprintf("fd09:0:%d::2", i))
		tp.pods = append(tp.pods, ns)
		tp.ips = append(tp.ips, [2]string{fmt.Sprintf("10.9.%d.2", i), fmt.Sprintf("fd09:0:%d::2", i)})
	}
	tp.ext = netnstest.New(t, "npm-ext")
	noDAD(t, tp.ext)
	link(tp.ext, 99, "192.168.7.1", extV4, "fd77::1", extV6)
	for _, ns := range append(append([]*netnstest.NS{}, tp.pods...), tp.ext) {
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
func noDAD(t *testing.T, ns *netnstest.NS) {
	ns.MustExec(t, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
}

func (tp *topo) serve(t *testing.T, ns *netnstest.NS) {
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

// probe reports whether a new connection from src (a pod index, or -1 for
// the external namespace) to dst address dstIP reaches it.
func (tp *topo) probe(src int, dstIP string, proto policy.Protocol, port int) bool {
	return tp.probeT(src, dstIP, proto, port, probeTimeout)
}

// probeT is probe with a timeout (short timeouts make the gap test's
// "never allowed" loops send many more SYNs).
func (tp *topo) probeT(src int, dstIP string, proto policy.Protocol, port int, probeTimeout time.Duration) bool {
	ns := tp.ext
	if src >= 0 {
		ns = tp.pods[src]
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

// probeWant is probe with retries when the connection is expected to be
// allowed and did not get through (a loaded CI machine can miss the
// timeout); an allowed connection that should be denied is never retried.
func (tp *topo) probeWant(src int, dstIP string, proto policy.Protocol, port int, want bool) bool {
	got := tp.probe(src, dstIP, proto, port)
	for i := 0; i < 2 && want && !got; i++ {
		got = tp.probe(src, dstIP, proto, port)
	}
	return got
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

// runner executes tools inside the node namespace.
func (tp *topo) runner() dataplane.Runner { return dataplane.Exec{Netns: tp.node.Path} }

func (tp *topo) dataplane(t *testing.T, mode Mode, log *zap.Logger) *Dataplane {
	if log == nil {
		log = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	d, err := New(context.Background(), Options{Runner: tp.runner(), Logger: log, Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (tp *topo) save(t *testing.T, mode Mode, fam string) string {
	out, err := tp.runner().Run(context.Background(), nil, fam+"-"+string(mode)+"-save", "-t", "filter")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func (tp *topo) ipsetSave(t *testing.T) string {
	out, err := tp.runner().Run(context.Background(), nil, "ipset", "save")
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func countLines(s, sub string) int {
	n := 0
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// groupChainOf is the chain of the dispatch group isolated by exactly the
// given policies.
func groupChainOf(dir policy.Direction, policies ...string) string {
	return GroupChain(&policy.Group{ID: policy.Hash(policy.GroupKey(dir, policies), 12), Direction: dir})
}
