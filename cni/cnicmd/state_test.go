package cnicmd

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/ipam"
)

func testPool(t *testing.T) *ipam.Pool {
	t.Helper()
	_, block, err := net.ParseCIDR("10.9.0.0/29")
	if err != nil {
		t.Fatal(err)
	}
	return ipam.OverlayPool(block, false)
}

func TestAllocateChangedOnlyOnce(t *testing.T) {
	s := ipam.NewState()
	cfg := &config.NetConf{}
	cfg.Name = "net1"
	pool := testPool(t)
	al, changed, err := Allocate(s, pool, cfg, config.IPAMPlugin, "c1", "eth0", time.Now())
	if err != nil || !changed || al.Network != "net1" || al.Owner != config.IPAMPlugin {
		t.Fatalf("first: %+v changed=%v err=%v", al, changed, err)
	}
	again, changed, err := Allocate(s, pool, cfg, config.IPAMPlugin, "c1", "eth0", time.Now())
	if err != nil || changed || again.IP != al.IP {
		t.Fatalf("again: %+v changed=%v err=%v, want %s unchanged", again, changed, err, al.IP)
	}
}

func TestReleaseForgetsEndpoint(t *testing.T) {
	s := ipam.NewState()
	cfg := &config.NetConf{}
	if _, _, err := Allocate(s, testPool(t), cfg, config.VnetPlugin, "c1", "eth0", time.Now()); err != nil {
		t.Fatal(err)
	}
	eps := map[string]*struct{}{Key("c1", "eth0"): {}, Key("c2", "eth0"): {}}
	rel, ipamChanged, epsChanged := Release(s, eps, "c1", "eth0")
	if len(rel) != 1 || !ipamChanged || !epsChanged || len(eps) != 1 {
		t.Fatalf("released %d ipamChanged=%v epsChanged=%v left %d", len(rel), ipamChanged, epsChanged, len(eps))
	}
	rel, ipamChanged, epsChanged = Release(s, eps, "c1", "eth0")
	if len(rel) != 0 || ipamChanged || epsChanged {
		t.Fatalf("second release: %d %v %v, want nothing", len(rel), ipamChanged, epsChanged)
	}
}

func TestReleaseUnlisted(t *testing.T) {
	s := ipam.NewState()
	pool := testPool(t)
	alloc := func(network, owner, cid string) {
		cfg := &config.NetConf{}
		cfg.Name = network
		if _, _, err := Allocate(s, pool, cfg, owner, cid, "eth0", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	alloc("net1", config.IPAMPlugin, "keep")
	alloc("net1", config.IPAMPlugin, "stale")
	alloc("net1", config.VnetPlugin, "vnet-owned")
	alloc("net2", config.IPAMPlugin, "other-net")
	n, changed := ReleaseUnlisted(s, "net1", []types.GCAttachment{{ContainerID: "keep", IfName: "eth0"}})
	if n != 1 || !changed {
		t.Fatalf("released %d changed=%v, want 1", n, changed)
	}
	for _, cid := range []string{"keep", "vnet-owned", "other-net"} {
		if s.Find(cid, "eth0") == nil {
			t.Errorf("%s was released", cid)
		}
	}
	if s.Find("stale", "eth0") != nil {
		t.Error("stale allocation kept")
	}
}

func TestLoadOrRebuild(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	core, logs := observer.New(zap.WarnLevel)
	log := zap.New(core)
	var v map[string]int
	rebuilt := 0
	rebuild := func() int { return rebuilt }

	// Missing and nothing to rebuild: nothing to save.
	if save, err := LoadOrRebuild(log, path, &v, "endpoint", "HNS", "entries", rebuild); err != nil || save {
		t.Fatalf("missing, empty: save=%v err=%v", save, err)
	}
	// Missing with entries found: save, and say so.
	rebuilt = 2
	if save, err := LoadOrRebuild(log, path, &v, "endpoint", "HNS", "entries", rebuild); err != nil || !save {
		t.Fatalf("missing, rebuilt: save=%v err=%v", save, err)
	}
	if e := logs.TakeAll(); len(e) != 1 || e[0].Message != "endpoint state file missing; rebuilt from HNS" || e[0].ContextMap()["entries"] != int64(2) {
		t.Fatalf("logs %+v", e)
	}
	// Corrupt: rebuilt and saved even with nothing found.
	rebuilt = 0
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if save, err := LoadOrRebuild(log, path, &v, "address", "the kernel", "allocations", rebuild); err != nil || !save {
		t.Fatalf("corrupt: save=%v err=%v", save, err)
	}
	if e := logs.TakeAll(); len(e) != 1 || e[0].Message != "address state file was corrupt; moved aside and rebuilt from the kernel" {
		t.Fatalf("logs %+v", e)
	}
}

func TestCheckAllocated(t *testing.T) {
	ipc := func(cidr string) *types100.IPConfig {
		ip, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return &types100.IPConfig{Address: *n}
	}
	v4 := &ipam.Allocation{IP: "10.9.0.2"}
	v6 := &ipam.Allocation{IP: "fd00::2"}
	dual := []string{config.IPv4, config.IPv6}
	for _, c := range []struct {
		name     string
		prev     []*types100.IPConfig
		als      []*ipam.Allocation
		families []string
		wantErr  bool
	}{
		{"ipv4 held", []*types100.IPConfig{ipc("10.9.0.2/24")}, []*ipam.Allocation{v4}, []string{config.IPv4}, false},
		{"dual held", []*types100.IPConfig{ipc("10.9.0.2/24"), ipc("fd00::2/64")}, []*ipam.Allocation{v4, v6}, dual, false},
		{"other address", []*types100.IPConfig{ipc("10.9.0.3/24")}, []*ipam.Allocation{v4}, []string{config.IPv4}, true},
		{"family missing from prevResult", []*types100.IPConfig{ipc("10.9.0.2/24")}, []*ipam.Allocation{v4, v6}, dual, true},
		{"an allocation prevResult lacks", []*types100.IPConfig{ipc("10.9.0.2/24")}, []*ipam.Allocation{v4, v6}, []string{config.IPv4}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := CheckAllocated(c.prev, c.als, c.families)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			var te *types.Error
			if err != nil && (!errors.As(err, &te) || te.Code != ErrCheckFailed) {
				t.Fatalf("err = %#v, want a CNI error with code %d", err, ErrCheckFailed)
			}
		})
	}
}
