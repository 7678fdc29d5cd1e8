//go:build linux

// Package probe is the traffic of the project's connectivity tests: the
// servers a test pod runs (TCP and UDP echo, and a raw SCTP receiver) and
// the client probes (TCP connect, UDP round trip, raw SCTP INIT).
//
// This kernel has no SCTP sockets (CONFIG_IP_SCTP is off) but netfilter
// parses and tracks SCTP, so an SCTP probe sends one INIT chunk on a raw
// IP-protocol-132 socket, carrying a random initiate tag, and the
// destination's raw socket reports the tags it received.
package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Protocols a probe speaks.
const (
	TCP  = "TCP"
	UDP  = "UDP"
	SCTP = "SCTP"
)

// SCTPProtocol is SCTP's IP protocol number.
const SCTPProtocol = 132

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// EncodeSCTPInit builds a 32-byte SCTP packet holding one INIT chunk with
// the given initiate tag, and a valid CRC32c (conntrack validates it).
func EncodeSCTPInit(srcPort, dstPort uint16, tag uint32) []byte {
	pkt := make([]byte, 32)
	binary.BigEndian.PutUint16(pkt[0:], srcPort)
	binary.BigEndian.PutUint16(pkt[2:], dstPort)
	// Verification tag (4:8) is 0 in an INIT; checksum at 8:12.
	pkt[12] = 1 // chunk type INIT
	binary.BigEndian.PutUint16(pkt[14:], 20)
	binary.BigEndian.PutUint32(pkt[16:], tag)       // initiate tag
	binary.BigEndian.PutUint32(pkt[20:], 65535)     // a_rwnd
	binary.BigEndian.PutUint16(pkt[24:], 1)         // outbound streams
	binary.BigEndian.PutUint16(pkt[26:], 1)         // inbound streams
	binary.BigEndian.PutUint32(pkt[28:], tag^0x5a5) // initial TSN
	// The CRC32c goes in little-endian byte order (RFC 4960 appendix B as
	// implemented by Linux).
	binary.LittleEndian.PutUint32(pkt[8:], crc32.Checksum(pkt, castagnoli))
	return pkt
}

// ParseSCTPInit returns the destination port and initiate tag of an SCTP
// INIT packet (without IP header).
func ParseSCTPInit(p []byte) (dstPort uint16, tag uint32, ok bool) {
	if len(p) < 32 || p[12] != 1 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(p[2:4]), binary.BigEndian.Uint32(p[16:20]), true
}

// SendSCTPInit sends one INIT from the calling thread's network namespace.
func SendSCTPInit(dst netip.Addr, dstPort uint16, tag uint32) error {
	pkt := EncodeSCTPInit(40000+uint16(tag%20000), dstPort, tag)
	dst = dst.Unmap()
	if dst.Is4() {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, SCTPProtocol)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		return syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: dst.As4()})
	}
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW, SCTPProtocol)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet6{Addr: dst.As16()})
}

// TCPConnect reports whether a TCP connection to addr is established
// within timeout.
func TCPConnect(addr string, timeout time.Duration) bool {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// UDPRoundTrip sends a random payload to addr and reports whether the echo
// came back within timeout.
func UDPRoundTrip(addr string, payload string, timeout time.Duration) bool {
	return UDPRoundTripFrom(0, addr, payload, timeout)
}

// SourcePorts hands out UDP probe source ports, rotating through
// 20001-60000, for UDPRoundTripFrom. The zero value is ready; it is safe
// for concurrent use.
type SourcePorts struct {
	mu   sync.Mutex
	last int
}

// Next returns the next source port.
func (s *SourcePorts) Next() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last < 20000 || s.last >= 60000 {
		s.last = 20000
	}
	s.last++
	return s.last
}

// UDPRoundTripFrom is UDPRoundTrip from a given source port (0: any).
// Probers that run thousands of probes rotate source ports: a UDP flow that
// was allowed earlier stays ESTABLISHED in conntrack for minutes, and a new
// probe that happened to reuse its 5-tuple would ride on it instead of
// being evaluated as a new connection.
func UDPRoundTripFrom(srcPort int, addr string, payload string, timeout time.Duration) bool {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return false
	}
	var laddr *net.UDPAddr
	if srcPort != 0 {
		laddr = &net.UDPAddr{Port: srcPort}
	}
	c, err := net.DialUDP("udp", laddr, raddr)
	if err != nil && laddr != nil {
		c, err = net.DialUDP("udp", nil, raddr) // port busy: any port
	}
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(payload)); err != nil {
		return false
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	return err == nil && string(buf[:n]) == payload
}

// Servers are the listeners of one test pod.
type Servers struct {
	closers []func()
	// SCTP receives the initiate tags of SCTP INITs that reached the pod.
	SCTP chan SCTPInit
}

// SCTPInit is one received INIT.
type SCTPInit struct {
	Src  netip.Addr
	Port uint16
	Tag  uint32
}

// Serve starts TCP and UDP echo servers on ports and raw SCTP receivers
// (IPv4 and IPv6), in the calling thread's network namespace. The sockets
// keep working from any goroutine.
func Serve(tcpPorts, udpPorts []int, sctp bool) (*Servers, error) {
	s := &Servers{SCTP: make(chan SCTPInit, 1024)}
	fail := func(err error) (*Servers, error) { s.Close(); return nil, err }
	for _, p := range tcpPorts {
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			return fail(err)
		}
		s.closers = append(s.closers, func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte("ok\n"))
				c.Close()
			}
		}()
	}
	for _, p := range udpPorts {
		u, err := net.ListenPacket("udp", fmt.Sprintf(":%d", p))
		if err != nil {
			return fail(err)
		}
		s.closers = append(s.closers, func() { u.Close() })
		go func() {
			buf := make([]byte, 2048)
			for {
				n, a, err := u.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = u.WriteTo(buf[:n], a)
			}
		}()
	}
	if sctp {
		for _, fam := range []int{syscall.AF_INET, syscall.AF_INET6} {
			fd, err := syscall.Socket(fam, syscall.SOCK_RAW, SCTPProtocol)
			if err != nil {
				return fail(fmt.Errorf("raw SCTP socket: %w", err))
			}
			tv := syscall.Timeval{Usec: 100000}
			_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
			done := make(chan struct{})
			s.closers = append(s.closers, func() { close(done) })
			go s.receiveSCTP(fd, fam, done)
		}
	}
	return s, nil
}

func (s *Servers) receiveSCTP(fd, fam int, done chan struct{}) {
	defer syscall.Close(fd)
	buf := make([]byte, 2048)
	for {
		select {
		case <-done:
			return
		default:
		}
		n, from, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				continue
			}
			if strings.Contains(err.Error(), "temporarily unavailable") {
				continue
			}
			return
		}
		p := buf[:n]
		var src netip.Addr
		switch a := from.(type) {
		case *syscall.SockaddrInet4:
			src = netip.AddrFrom4(a.Addr)
		case *syscall.SockaddrInet6:
			src = netip.AddrFrom16(a.Addr)
		}
		if fam == syscall.AF_INET { // IPv4 raw sockets deliver the IP header too
			if len(p) < 20 {
				continue
			}
			p = p[int(p[0]&0x0f)*4:]
		}
		if port, tag, ok := ParseSCTPInit(p); ok {
			select {
			case s.SCTP <- SCTPInit{Src: src, Port: port, Tag: tag}:
			default: // nobody is reading: drop rather than block
			}
		}
	}
}

// Close stops every server.
func (s *Servers) Close() {
	for _, c := range s.closers {
		c()
	}
	s.closers = nil
}

// AcceptAndClose accepts connections on l and closes each at once, in a
// goroutine, until l is closed: the server side of connection probes and
// connection-rate benchmarks, which need the handshake and nothing else.
func AcceptAndClose(l net.Listener) {
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
