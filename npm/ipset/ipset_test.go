//go:build linux

package ipset

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/dataplane"
)

func members(prefix string, from, n int) map[string]struct{} {
	m := map[string]struct{}{}
	for i := from; i < from+n; i++ {
		m[fmt.Sprintf("%s.%d.%d", prefix, i/250, i%250+1)] = struct{}{}
	}
	return m
}

// TestManager (in a test network namespace): create, incremental
// add/del, wholesale change by swap, drift repair after Load, destroy.
func TestManager(t *testing.T) {
	ns := netnstest.New(t, "npm-ipset")
	ctx := context.Background()
	run := dataplane.Exec{Netns: ns.Path}
	m := New(run, zaptest.NewLogger(t), "acn-npm")
	want := map[string]*Set{
		"acn-npm4-a": {Name: "acn-npm4-a", Type: HashIP, Family: "inet", Members: members("10.1", 0, 100)},
		"acn-npm4-p": {Name: "acn-npm4-p", Type: HashIPPort, Family: "inet", Members: map[string]struct{}{"10.1.0.1,tcp:80": {}, "10.1.0.2,sctp:9": {}}},
		"acn-npm6-n": {Name: "acn-npm6-n", Type: HashNet, Family: "inet6", Members: map[string]struct{}{"fd00::/64": {}, "::/1": {}}},
	}
	res, err := m.Sync(ctx, want, nil)
	if err != nil || res.Created != 3 {
		t.Fatalf("create: %+v %v", res, err)
	}
	save := func() string { out, _ := run.Run(ctx, nil, "ipset", "save"); return string(out) }
	for _, s := range []string{"add acn-npm4-p 10.1.0.2,sctp:9", "add acn-npm6-n fd00::/64", "add acn-npm4-a 10.1.0.100"} {
		if !strings.Contains(save(), s) {
			t.Errorf("ipset save lacks %q", s)
		}
	}
	// small change: in place
	want["acn-npm4-a"].Members = members("10.1", 1, 100)
	res, err = m.Sync(ctx, want, map[string]struct{}{"acn-npm4-a": {}})
	if err != nil || res.Swapped != 0 || res.Added != 1 || res.Deleted != 1 {
		t.Fatalf("small change: %+v %v", res, err)
	}
	// wholesale change: swapped
	want["acn-npm4-a"].Members = members("10.2", 0, 120)
	res, err = m.Sync(ctx, want, map[string]struct{}{"acn-npm4-a": {}})
	if err != nil || res.Swapped != 1 {
		t.Fatalf("wholesale change: %+v %v", res, err)
	}
	s := save()
	if strings.Contains(s, "add acn-npm4-a 10.1.") || !strings.Contains(s, "add acn-npm4-a 10.2.0.120") || strings.Contains(s, "-t ") {
		t.Errorf("after swap:\n%s", s)
	}
	// drift: someone deletes a member and destroys a set
	ns.MustExec(t, "ipset", "del", "acn-npm4-a", "10.2.0.5")
	ns.MustExec(t, "ipset", "destroy", "acn-npm4-p")
	ns.MustExec(t, "ipset", "create", "acn-npm4-stale", "hash:ip")
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	res, err = m.Sync(ctx, want, nil)
	if err != nil || res.Changed != 2 || len(res.Unreferenced) != 1 {
		t.Fatalf("repair: %+v %v", res, err)
	}
	if _, err := m.Destroy(ctx, res.Unreferenced); err != nil {
		t.Fatal(err)
	}
	if s := save(); !strings.Contains(s, "add acn-npm4-a 10.2.0.5") || !strings.Contains(s, "create acn-npm4-p") || strings.Contains(s, "stale") {
		t.Errorf("after repair:\n%s", s)
	}
	if res, _ := m.Sync(ctx, want, nil); res.Changed != 0 {
		t.Errorf("second sync changed %d", res.Changed)
	}
	// Small batches went over netlink; a batch above netlinkMaxOps is one
	// `ipset restore`, and both write the same kernel state.
	if _, ok := m.w.(*netlinkWriter); !ok {
		t.Fatalf("writer %T, want netlink for dataplane.Exec", m.w)
	}
	want["acn-npm4-big"] = &Set{Name: "acn-npm4-big", Type: HashNet, Family: "inet", Members: members("10.3", 0, netlinkMaxOps+10)}
	want["acn-npm4-big"].Members["10.4.0.0/16"] = struct{}{}
	if res, err := m.Sync(ctx, want, map[string]struct{}{"acn-npm4-big": {}}); err != nil || res.Added != netlinkMaxOps+11 {
		t.Fatalf("big set: %+v %v", res, err)
	}
	if s := save(); !strings.Contains(s, "add acn-npm4-big 10.4.0.0/16") || !strings.Contains(s, "add acn-npm4-big 10.3.1.10") {
		t.Errorf("big set not written:\n%s", s)
	}
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if res, _ := m.Sync(ctx, want, nil); res.Changed != 0 {
		t.Errorf("after a read-back, a sync changed %d: netlink and restore wrote something else than desired", res.Changed)
	}
}

// TestParseEntry: members as `ipset save` prints them become netlink
// entries; what netlink cannot carry is refused (and written by restore).
func TestParseEntry(t *testing.T) {
	for _, tt := range []struct {
		in          string
		ip          string
		cidr        uint8
		proto       uint8
		port        uint16
		unsupported bool
	}{
		{in: "10.1.2.3", ip: "10.1.2.3"},
		{in: "fd00::1", ip: "fd00::1"},
		{in: "10.0.0.0/8", ip: "10.0.0.0", cidr: 8},
		{in: "::/1", ip: "::", cidr: 1},
		{in: "10.0.0.1/32", ip: "10.0.0.1"},
		{in: "10.1.0.2,sctp:9", ip: "10.1.0.2", proto: 132, port: 9},
		{in: "fd00::2,udp:53", ip: "fd00::2", proto: 17, port: 53},
		{in: "10.1.0.2,tcp:65535", ip: "10.1.0.2", proto: 6, port: 65535},
		{in: "10.1.0.2,icmp:1", unsupported: true},
		{in: "10.1.0.2,tcp:70000", unsupported: true},
		{in: "::ffff:10.0.0.1", unsupported: true},
		{in: "nonsense", unsupported: true},
	} {
		e, err := parseEntry(tt.in)
		if tt.unsupported {
			if err == nil {
				t.Errorf("%q: parsed as %+v, want an error", tt.in, e)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		var proto uint8
		var port uint16
		if e.Protocol != nil {
			proto, port = *e.Protocol, *e.Port
		}
		if e.IP.String() != tt.ip || e.CIDR != tt.cidr || proto != tt.proto || port != tt.port || !e.Replace {
			t.Errorf("%q: ip %s cidr %d proto %d port %d replace %v, want %s %d %d %d true", tt.in, e.IP, e.CIDR, proto, port, e.Replace, tt.ip, tt.cidr, tt.proto, tt.port)
		}
	}
}
