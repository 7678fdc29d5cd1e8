//go:build linux

package probe

import (
	"net/netip"
	"testing"
	"time"

	"github.com/open-acn/acn/internal/netnstest"
)

func TestEncodeParseSCTPInit(t *testing.T) {
	pkt := EncodeSCTPInit(40001, 81, 0xdeadbeef)
	port, tag, ok := ParseSCTPInit(pkt)
	if !ok || port != 81 || tag != 0xdeadbeef {
		t.Fatalf("parse = %d %x %v", port, tag, ok)
	}
	pkt[12] = 2 // not an INIT
	if _, _, ok := ParseSCTPInit(pkt); ok {
		t.Fatal("a non-INIT chunk must not parse as INIT")
	}
}

func TestProbesAcrossNamespaces(t *testing.T) {
	client := netnstest.New(t, "probe-c")
	server := netnstest.New(t, "probe-s")
	netnstest.Link(t, client, "eth0", "10.77.0.1/24", server, "eth0", "10.77.0.2/24")
	var srv *Servers
	if err := server.Do(func() (err error) { srv, err = Serve([]int{80}, []int{80}, true); return }); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	timeout := 500 * time.Millisecond
	var tcpOpen, tcpClosed, udpOpen, udpClosed bool
	err := client.Do(func() error {
		tcpOpen = TCPConnect("10.77.0.2:80", timeout)
		tcpClosed = TCPConnect("10.77.0.2:81", timeout)
		udpOpen = UDPRoundTrip("10.77.0.2:80", "hello", timeout)
		udpClosed = UDPRoundTrip("10.77.0.2:81", "hello", timeout)
		return SendSCTPInit(netip.MustParseAddr("10.77.0.2"), 81, 4242)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !tcpOpen || tcpClosed || !udpOpen || udpClosed {
		t.Fatalf("tcp open=%v closed=%v udp open=%v closed=%v; want true false true false", tcpOpen, tcpClosed, udpOpen, udpClosed)
	}
	select {
	case in := <-srv.SCTP:
		if in.Tag != 4242 || in.Port != 81 || in.Src.String() != "10.77.0.1" {
			t.Fatalf("received %+v", in)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("SCTP INIT not received")
	}
}
