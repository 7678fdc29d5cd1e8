package cnicmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/ipam"
)

type testEndpoint struct {
	IP string `json:"ip"`
}

type testFile struct {
	Version   int                      `json:"version"`
	Endpoints map[string]*testEndpoint `json:"endpoints"`
}

func (f *testFile) Normalize() {
	if f.Endpoints == nil {
		f.Endpoints = map[string]*testEndpoint{}
	}
	f.Version = 1
}

func (f *testFile) EndpointMap() map[string]*testEndpoint { return f.Endpoints }

func testState(t *testing.T, rebuilt *testFile) *State[*testFile, *testEndpoint] {
	d := t.TempDir()
	return &State[*testFile, *testEndpoint]{
		Log:         zap.NewNop(),
		Files:       Files{Vnet: filepath.Join(d, "vnet.json"), IPAM: filepath.Join(d, "ipam.json"), Lock: filepath.Join(d, "lock"), LockTimeout: time.Second},
		NeedVnet:    true,
		From:        "the test",
		NewVnet:     func() *testFile { return &testFile{} },
		RebuildVnet: func() *testFile { return rebuilt },
		RebuildIPAM: func(v *testFile) *ipam.State {
			s := ipam.NewState()
			for k, ep := range v.Endpoints {
				s.Allocations[ep.IP] = &ipam.Allocation{IP: ep.IP, ContainerID: k, IfName: "eth0", Owner: config.VnetPlugin}
			}
			return s
		},
	}
}

// A section's changes are saved, and the next one sees them; Release
// forgets the endpoint and frees its address in one section.
func TestLockedSavesAndReleases(t *testing.T) {
	s := testState(t, &testFile{})
	pool := testPool(t)
	cfg := &config.NetConf{}
	cfg.Name = "net1"
	if err := s.Locked(true, func(tx *Tx[*testFile, *testEndpoint]) error {
		al, changed, err := Allocate(tx.IPAM, pool, cfg, config.VnetPlugin, "c1", "eth0", time.Now())
		if err != nil {
			return err
		}
		tx.DirtyIPAM = tx.DirtyIPAM || changed
		tx.Vnet.Endpoints[Key("c1", "eth0")] = &testEndpoint{IP: al.IP}
		tx.DirtyVnet = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	v, err := ReadVnet(s.Files.Vnet, s.NewVnet)
	if err != nil || len(v.Endpoints) != 1 {
		t.Fatalf("endpoints after the section: %v, %v", v.Endpoints, err)
	}
	if err := s.Locked(true, func(tx *Tx[*testFile, *testEndpoint]) error {
		if rel := tx.Release("c1", "eth0"); len(rel) != 1 {
			t.Errorf("released %d allocations, want 1", len(rel))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	v, _ = ReadVnet(s.Files.Vnet, s.NewVnet)
	is, _ := ReadIPAM(s.Files.IPAM)
	if len(v.Endpoints) != 0 || is.Find("c1", "eth0") != nil {
		t.Fatalf("after Release: endpoints %v, allocation %v", v.Endpoints, is.Find("c1", "eth0"))
	}
}

// An endpoint-only section may not change the address state: it fails
// and writes nothing.
func TestLockedEndpointOnlyRefusesAddressChange(t *testing.T) {
	s := testState(t, &testFile{})
	err := s.Locked(false, func(tx *Tx[*testFile, *testEndpoint]) error {
		tx.Vnet.Endpoints["k"] = &testEndpoint{IP: "10.9.0.2"}
		tx.DirtyVnet, tx.DirtyIPAM = true, true
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "endpoint-only") {
		t.Fatalf("err = %v, want the endpoint-only refusal", err)
	}
	if _, err := os.Stat(s.Files.Vnet); !os.IsNotExist(err) {
		t.Fatalf("endpoint file written by a refused section: %v", err)
	}
}

// A corrupt endpoint file is moved aside and rebuilt from the platform,
// and the addresses are rebuilt from those endpoints.
func TestLockedRebuildsCorruptFiles(t *testing.T) {
	s := testState(t, &testFile{Endpoints: map[string]*testEndpoint{"c9/eth0": {IP: "10.9.0.5"}}})
	for _, f := range []string{s.Files.Vnet, s.Files.IPAM} {
		if err := os.WriteFile(f, []byte("{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ReadVnet(s.Files.Vnet, s.NewVnet); err == nil {
		t.Fatal("ReadVnet of a corrupt file: no error")
	}
	var seen int
	if err := s.Locked(true, func(tx *Tx[*testFile, *testEndpoint]) error {
		seen = len(tx.Vnet.Endpoints)
		if tx.IPAM.Allocations["10.9.0.5"] == nil {
			t.Errorf("address of the rebuilt endpoint not rebuilt: %v", tx.IPAM.Allocations)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if seen != 1 {
		t.Fatalf("section saw %d endpoints, want the 1 rebuilt", seen)
	}
	if v, err := ReadVnet(s.Files.Vnet, s.NewVnet); err != nil || len(v.Endpoints) != 1 {
		t.Fatalf("rebuilt file not saved: %v, %v", v, err)
	}
}
