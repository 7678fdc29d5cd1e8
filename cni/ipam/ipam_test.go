//go:build linux

package ipam

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-acn/acn/cni/config"
)

func testPool(n int) *Pool {
	_, sn, _ := net.ParseCIDR("10.240.0.0/16")
	p := &Pool{Subnet: sn, Gateway: net.ParseIP("10.240.0.1").To4()}
	for i := 0; i < n; i++ {
		p.Addresses = append(p.Addresses, net.IPv4(10, 240, 1, byte(i+1)).To4())
	}
	return p
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestAllocateIsDeterministicPerContainer(t *testing.T) {
	pool := testPool(50)
	a, b := NewState(), NewState()
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("container-%d", i)
		x, err1 := a.Allocate(pool, id, "eth0", "t", nil, t0, time.Minute)
		y, err2 := b.Allocate(pool, id, "eth0", "t", nil, t0, time.Minute)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if x.IP != y.IP {
			t.Errorf("%s: %s in one state, %s in the other", id, x.IP, y.IP)
		}
	}
	// The first choice depends on the ID, not on the order of requests:
	// containers alone in a fresh state spread over the pool instead of
	// all asking for the lowest address (which would make a retried ADD
	// after a crash land elsewhere and parallel ADDs collide).
	firsts := map[string]bool{}
	for i := 0; i < 20; i++ {
		x, _ := NewState().Allocate(pool, fmt.Sprintf("container-%d", i), "eth0", "t", nil, t0, time.Minute)
		firsts[x.IP] = true
	}
	if len(firsts) < 10 {
		t.Errorf("20 containers' first choices hit only %d addresses of 50", len(firsts))
	}
}

func TestAllocateIsIdempotent(t *testing.T) {
	pool := testPool(5)
	s := NewState()
	x, _ := s.Allocate(pool, "c", "eth0", "t", nil, t0, 0)
	y, _ := s.Allocate(pool, "c", "eth0", "t", nil, t0, 0)
	if x.IP != y.IP || len(s.Allocations) != 1 {
		t.Errorf("second ADD got %s (first %s), %d allocations", y.IP, x.IP, len(s.Allocations))
	}
	z, _ := s.Allocate(pool, "c", "eth1", "t", nil, t0, 0)
	if z.IP == x.IP {
		t.Error("a second interface of the same container got the same address")
	}
}

func TestReleasedAddressCoolsDownBeforeReuse(t *testing.T) {
	pool := testPool(3)
	s := NewState()
	a, _ := s.Allocate(pool, "a", "eth0", "t", nil, t0, time.Minute)
	s.Release("a", "eth0", t0)
	// Two other addresses are free: they go first, whatever the hash says.
	for i := 0; i < 2; i++ {
		x, err := s.Allocate(pool, fmt.Sprintf("n%d", i), "eth0", "t", nil, t0.Add(time.Second), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if x.IP == a.IP {
			t.Fatalf("address %s reused 1 s after release with others free", a.IP)
		}
	}
	// Only the cooling address is left: availability wins over the cool-down.
	x, err := s.Allocate(pool, "last", "eth0", "t", nil, t0.Add(2*time.Second), time.Minute)
	if err != nil || x.IP != a.IP {
		t.Fatalf("got %v %v, want the cooling %s rather than a failure", x, err, a.IP)
	}
	// After the cool-down the address is an ordinary free one.
	s.Release("last", "eth0", t0)
	if _, cooling := s.Released[a.IP]; !cooling {
		t.Fatal("release not recorded")
	}
	y, _ := s.Allocate(pool, "later", "eth0", "t", nil, t0.Add(2*time.Minute), time.Minute)
	if y.IP != a.IP {
		t.Errorf("after the cool-down got %s, want %s (the only free one)", y.IP, a.IP)
	}
}

func TestExhaustionNamesThePool(t *testing.T) {
	pool := testPool(2)
	s := NewState()
	for _, id := range []string{"a", "b"} {
		if _, err := s.Allocate(pool, id, "eth0", "t", nil, t0, 0); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Allocate(pool, "c", "eth0", "t", nil, t0, 0)
	var ex *ExhaustedError
	if !errors.As(err, &ex) || !strings.Contains(err.Error(), "10.240.0.0/16") || !strings.Contains(err.Error(), "2 addresses") {
		t.Fatalf("want an exhaustion error naming pool and size, got %v", err)
	}
	if s.Free(pool) != 0 {
		t.Errorf("free %d", s.Free(pool))
	}
}

func TestRequestedAddress(t *testing.T) {
	pool := testPool(5)
	s := NewState()
	want := net.ParseIP("10.240.1.3").To4()
	x, err := s.Allocate(pool, "a", "eth0", "t", want, t0, 0)
	if err != nil || x.IP != "10.240.1.3" {
		t.Fatalf("got %v %v", x, err)
	}
	if _, err := s.Allocate(pool, "b", "eth0", "t", want, t0, 0); !errors.Is(err, ErrRequestedTaken) {
		t.Errorf("second request of a held address: %v", err)
	}
	if _, err := s.Allocate(pool, "c", "eth0", "t", net.ParseIP("10.9.0.1"), t0, 0); err == nil {
		t.Error("address outside the pool accepted")
	}
}

func TestReleaseUnknownIsNoError(t *testing.T) {
	s := NewState()
	if got := s.Release("nobody", "eth0", t0); len(got) != 0 {
		t.Errorf("released %v", got)
	}
}

const hostXML = `<Interfaces>
 <Interface MacAddress="000D3A6E2B4C" IsPrimary="true">
  <IPSubnet Prefix="10.240.0.0/16">
   <IPAddress Address="10.240.0.4" IsPrimary="true"/>
   <IPAddress Address="10.240.0.5" IsPrimary="false"/>
   <IPAddress Address="10.240.0.6" IsPrimary="false"/>
  </IPSubnet>
  <IPSubnet Prefix="fd00:240::/64">
   <IPAddress Address="fd00:240::4" IsPrimary="true"/>
   <IPAddress Address="fd00:240::5" IsPrimary="false"/>
  </IPSubnet>
  <IPSubnet Prefix="2001:db8::/64"><IPAddress Address="2001:db8::5" IsPrimary="false"/></IPSubnet>
 </Interface>
 <Interface MacAddress="000D3A6E2B4D" IsPrimary="false">
  <IPSubnet Prefix="172.31.0.0/24"><IPAddress Address="172.31.0.5" IsPrimary="false"/></IPSubnet>
  <IPSubnet Prefix="10.50.0.0/24"><IPAddress Address="10.50.0.9" IsPrimary="false"/></IPSubnet>
 </Interface>
</Interfaces>`

func TestSelectPoolFromHostXML(t *testing.T) {
	ifs, err := ParseXML([]byte(hostXML))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		subnet string
		want   []string
		err    string
	}{
		{"", []string{"10.240.0.5", "10.240.0.6"}, ""}, // primary NIC, primary address skipped
		{"10.50.0.0/24", []string{"10.50.0.9"}, ""},
		{"10.99.0.0/16", nil, "no such subnet"},
	}
	for _, c := range cases {
		cfg := &config.NetConf{}
		if c.subnet != "" {
			_, sn, _ := net.ParseCIDR(c.subnet)
			cfg.IPAM.SubnetNets = []*net.IPNet{sn}
		}
		p, err := SelectPool(ifs, cfg, config.IPv4)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("subnet %q: err %v, want %q", c.subnet, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("subnet %q: %v", c.subnet, err)
		}
		var got []string
		for _, a := range p.Addresses {
			got = append(got, a.String())
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("subnet %q: pool %v, want %v", c.subnet, got, c.want)
		}
	}
	// The host's IPv6 subnet is the IPv6 pool (primary address skipped).
	if p6, err := SelectPool(ifs, &config.NetConf{}, config.IPv6); err != nil || len(p6.Addresses) != 1 || p6.Addresses[0].String() != "fd00:240::5" {
		t.Errorf("IPv6 pool from the host: %+v, %v", p6, err)
	}
	// A forbidden subnet from the host is never a pool.
	_, doc, _ := net.ParseCIDR("2001:db8::/64")
	if _, err := SelectPool(ifs, &config.NetConf{IPAM: config.IPAM{SubnetNets: []*net.IPNet{doc}}}, config.IPv6); err == nil {
		t.Error("the documentation prefix offered as a pool")
	}
	cfg := &config.NetConf{}
	_, sn, _ := net.ParseCIDR("172.31.0.0/24")
	cfg.IPAM.SubnetNets = []*net.IPNet{sn}
	if _, err := SelectPool(ifs, cfg, config.IPv4); err == nil {
		t.Error("forbidden 172.31.0.0/24 offered as a pool")
	}
}

func TestParseJSONAcceptsTheInterfacesFileFormat(t *testing.T) {
	data := `{"Interfaces":[{"MacAddress":"00","IsPrimary":true,"IPSubnets":[{"Prefix":"10.1.0.0/24","IPAddresses":[{"Address":"10.1.0.4","IsPrimary":true},{"Address":"10.1.0.5","IsPrimary":false}]}]}]}`
	ifs, err := ParseJSON([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	p, err := SelectPool(ifs, &config.NetConf{}, config.IPv4)
	if err != nil || len(p.Addresses) != 1 || p.Addresses[0].String() != "10.1.0.5" || p.Gateway.String() != "10.1.0.1" {
		t.Fatalf("pool %+v, err %v", p, err)
	}
}

// TestSelectPoolPerFamily: an interfaces file with an IPv4 and an IPv6
// subnet gives one pool per family; asking for a family the file does not
// have names it.
func TestSelectPoolPerFamily(t *testing.T) {
	data := `{"Interfaces":[{"MacAddress":"00","IsPrimary":true,"IPSubnets":[
		{"Prefix":"10.1.0.0/24","IPAddresses":[{"Address":"10.1.0.4","IsPrimary":true},{"Address":"10.1.0.5"}]},
		{"Prefix":"fd00:1::/64","IPAddresses":[{"Address":"fd00:1::4","IsPrimary":true},{"Address":"fd00:1::1:5"},{"Address":"fd00:1::1:6"}]}]}]}`
	ifs, err := ParseJSON([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	p6, err := SelectPool(ifs, &config.NetConf{}, config.IPv6)
	if err != nil || len(p6.Addresses) != 2 || p6.Gateway.String() != "fd00:1::1" || p6.Family() != config.IPv6 {
		t.Fatalf("IPv6 pool %+v, err %v", p6, err)
	}
	p4, err := SelectPool(ifs, &config.NetConf{}, config.IPv4)
	if err != nil || len(p4.Addresses) != 1 || p4.Family() != config.IPv4 {
		t.Fatalf("IPv4 pool %+v, err %v", p4, err)
	}
	only4, _ := ParseJSON([]byte(`{"Interfaces":[{"IsPrimary":true,"IPSubnets":[{"Prefix":"10.1.0.0/24","IPAddresses":[{"Address":"10.1.0.5"}]}]}]}`))
	if _, err := SelectPool(only4, &config.NetConf{}, config.IPv6); err == nil || !strings.Contains(err.Error(), "no IPv6 subnet") {
		t.Errorf("IPv6 from an IPv4-only source: %v", err)
	}
	// One address per family per container interface; both distinct.
	s := NewState()
	a4, err4 := s.Allocate(p4, "c", "eth0", "t", nil, t0, time.Minute)
	a6, err6 := s.Allocate(p6, "c", "eth0", "t", nil, t0, time.Minute)
	if err4 != nil || err6 != nil || a4.IP != "10.1.0.5" || !p6.Contains(net.ParseIP(a6.IP)) {
		t.Fatalf("allocations %+v %+v: %v %v", a4, a6, err4, err6)
	}
	if all := s.FindAll("c", "eth0"); len(all) != 2 || all[0] != a4 || s.FindFamily("c", "eth0", config.IPv6) != a6 {
		t.Errorf("FindAll %+v", all)
	}
	if again, _ := s.Allocate(p6, "c", "eth0", "t", nil, t0, time.Minute); again != a6 {
		t.Errorf("repeated IPv6 allocation %+v, want %+v", again, a6)
	}
	if rel := s.Release("c", "eth0", t0); len(rel) != 2 || len(s.Allocations) != 0 {
		t.Errorf("release %+v left %+v", rel, s.Allocations)
	}
}

func TestAzureSourceCachesForQueryInterval(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, hostXML)
	}))
	defer srv.Close()
	cfg := &config.NetConf{StateDir: t.TempDir()}
	cfg.IPAM.Environment, cfg.IPAM.QueryURL = config.EnvAzure, srv.URL
	cfg.IPAM.QueryInterval = config.Duration(time.Hour)
	for i := 0; i < 3; i++ {
		if _, err := Source(context.Background(), cfg, -1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("%d queries for 3 reads within the interval, want 1", hits.Load())
	}
	if _, err := Source(context.Background(), cfg, 0, nil); err != nil || hits.Load() != 2 {
		t.Errorf("forced refresh: %d queries, err %v", hits.Load(), err)
	}
	// A different URL never uses another URL's cache.
	cfg.IPAM.QueryURL = srv.URL + "/other"
	_, _ = Source(context.Background(), cfg, -1, nil)
	if hits.Load() != 3 {
		t.Errorf("cache reused across URLs")
	}
}

func TestAzureSourceErrorsAreSourceErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	cfg := &config.NetConf{StateDir: t.TempDir()}
	cfg.IPAM.Environment, cfg.IPAM.QueryURL = config.EnvAzure, srv.URL
	_, err := Source(context.Background(), cfg, -1, nil)
	var se *SourceError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("want a SourceError with the status, got %v", err)
	}
}
