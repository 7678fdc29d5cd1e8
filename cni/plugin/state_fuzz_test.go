//go:build linux

package plugin

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/cnicmd"
	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/store"
)

// FuzzStateFiles: whatever azure-vnet.json and azure-vnet-ipam.json hold
// (a torn write from another implementation, a hand edit, garbage), the
// lock-free readers never panic, fail only with an error wrapping
// store.ErrCorrupt, and hand out states every consumer can walk: no nil
// entry, each allocation filed under its own address. Allocating,
// releasing and counting on the state read, and rebuilding the address
// state from the endpoints, then work.
func FuzzStateFiles(f *testing.F) {
	f.Add([]byte(`{"version":1,"endpoints":{"c1/eth0":{"containerID":"c1","ifName":"eth0","mode":"transparent","ip":"10.240.1.5/32","status":"committed"}}}`),
		[]byte(`{"version":1,"allocations":{"10.240.1.5":{"ip":"10.240.1.5","pool":"10.240.0.0/16","containerID":"c1","ifName":"eth0","owner":"azure-vnet"}},"released":{"10.240.1.6":"2026-01-02T03:04:05Z"}}`))
	f.Add([]byte(`{"endpoints":{"x":null}}`), []byte(`{"allocations":{"10.240.1.5":null}}`))
	dir := f.TempDir() // one per worker: every input rewrites both files
	f.Fuzz(func(t *testing.T, vnetData, ipamData []byte) {
		p := pathsOf(&config.NetConf{StateDir: dir})
		if err := os.WriteFile(p.vnet, vnetData, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.ipam, ipamData, 0o644); err != nil {
			t.Fatal(err)
		}
		vs, verr := readVnet(p)
		is, ierr := readIPAM(p)
		for _, err := range []error{verr, ierr} {
			if err != nil && !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("read error does not wrap ErrCorrupt: %v", err)
			}
		}
		for k, ep := range vs.Endpoints {
			if ep == nil {
				t.Fatalf("endpoint %q is nil after reading", k)
			}
		}
		for k, a := range is.Allocations {
			if a == nil {
				t.Fatalf("allocation %q is nil after reading", k)
			}
			if a.IP != k {
				t.Fatalf("allocation filed under %q is for %q", k, a.IP)
			}
		}
		_, subnet, _ := net.ParseCIDR("10.240.0.0/16")
		pool := &ipam.Pool{Subnet: subnet, Gateway: ipam.FirstHost(subnet)}
		for i := 1; i <= 4; i++ {
			pool.Addresses = append(pool.Addresses, net.IPv4(10, 240, 1, byte(4+i)).To4())
		}
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		free := is.Free(pool)
		a, err := is.Allocate(pool, "fuzz", "eth0", config.VnetPlugin, nil, now, time.Minute)
		var ex *ipam.ExhaustedError
		switch {
		case err == nil && !pool.Subnet.Contains(net.ParseIP(a.IP)):
			t.Fatalf("allocated %s outside the pool", a.IP)
		case err != nil && !errors.As(err, &ex):
			t.Fatalf("allocate: %v", err)
		case err != nil && free != 0:
			t.Fatalf("exhausted with %d free addresses", free)
		}
		is.Release("fuzz", "eth0", now)
		if is.Find("fuzz", "eth0") != nil {
			t.Fatal("released allocation still found")
		}
		if len(vs.Endpoints) > 0 {
			r := &runner{Invocation: cnicmd.Invocation{Log: zap.NewNop(), Cfg: &config.NetConf{}}}
			_ = r.rebuildIPAM(vs)
		}
	})
}
