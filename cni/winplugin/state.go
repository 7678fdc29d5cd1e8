package winplugin

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/cnicmd"
	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/hns"
	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/store"
)

// File names under the state directory (those of the Linux plugins, plus
// the network creation lock).
const (
	VnetStateFile   = "azure-vnet.json"
	IPAMStateFile   = "azure-vnet-ipam.json"
	LockFile        = "azure-vnet.lock"
	NetworkLockFile = "azure-vnet-network.lock"
)

// Endpoint statuses: pending from the allocation until the endpoint is
// attached, committed after.
const (
	StatusPending   = "pending"
	StatusCommitted = "committed"
)

// VnetState is azure-vnet.json on Windows.
type VnetState struct {
	Version   int                  `json:"version"`
	Endpoints map[string]*Endpoint `json:"endpoints"`
}

// Endpoint is one pod interface: its HNS endpoint and address.
type Endpoint struct {
	ContainerID  string          `json:"containerID"`
	IfName       string          `json:"ifName"`
	Network      string          `json:"network"`
	Namespace    string          `json:"namespace,omitempty"` // HNS namespace GUID (CNI_NETNS)
	PodName      string          `json:"podName,omitempty"`
	PodNamespace string          `json:"podNamespace,omitempty"`
	HNSName      string          `json:"hnsName"`
	HNSID        string          `json:"hnsID,omitempty"` // set when committed
	IP           string          `json:"ip"`              // CIDR as configured in the pod
	Status       string          `json:"status"`
	PID          int             `json:"pid,omitempty"`
	Result       json.RawMessage `json:"result,omitempty"`
	Updated      time.Time       `json:"updated"`
}

func (s *VnetState) normalize() {
	if s.Endpoints == nil {
		s.Endpoints = map[string]*Endpoint{}
	}
	s.Version = 1
}

type paths struct{ vnet, ipam, lock, networkLock string }

func pathsOf(cfg *config.NetConf) paths {
	d := cfg.StateDir
	return paths{
		vnet:        filepath.Join(d, VnetStateFile),
		ipam:        filepath.Join(d, IPAMStateFile),
		lock:        filepath.Join(d, LockFile),
		networkLock: filepath.Join(d, NetworkLockFile),
	}
}

// readVnet reads the endpoint state without the lock (writers replace the
// file atomically). A corrupt file reads as empty with an error.
func readVnet(p paths) (*VnetState, error) {
	s := &VnetState{}
	_, err := store.Read(p.vnet, s)
	if err != nil {
		s = &VnetState{}
	}
	s.normalize()
	return s, err
}

func readIPAM(p paths) (*ipam.State, error) { return cnicmd.ReadIPAM(p.ipam) }

// tx is one critical section under the node-wide lock.
type tx struct {
	vnet      *VnetState
	ipam      *ipam.State
	dirtyVnet bool
	dirtyIPAM bool
}

// locked runs f with the node-wide lock held; it is the only place state
// files are written. Nothing in f calls HNS or the network, except the
// repair of a corrupt or missing file (a read-only listing).
func (r *runner) locked(f func(t *tx) error) error {
	lock, err := store.Acquire(r.paths.lock, time.Duration(r.cfg.LockTimeout))
	if err != nil {
		return err
	}
	defer lock.Release()
	t := &tx{vnet: &VnetState{}, ipam: ipam.NewState()}
	if r.needVnet {
		if t.dirtyVnet, err = r.loadOrRebuild(r.paths.vnet, t.vnet, "endpoint", func() int {
			t.vnet = r.rebuildVnet()
			return len(t.vnet.Endpoints)
		}); err != nil {
			return err
		}
	}
	t.vnet.normalize()
	if t.dirtyIPAM, err = r.loadOrRebuild(r.paths.ipam, t.ipam, "address", func() int {
		t.ipam = rebuildIPAM(t.vnet, r.needVnet)
		return len(t.ipam.Allocations)
	}); err != nil {
		return err
	}
	t.ipam.Normalize()
	if err := f(t); err != nil {
		return err
	}
	// The address state first: an allocation without an endpoint is
	// released by DEL or GC; an endpoint without its allocation would
	// point at an address someone else may get.
	if t.dirtyIPAM {
		if err := store.Save(r.paths.ipam, t.ipam); err != nil {
			return cnicmd.StateError(r.paths.ipam, err)
		}
	}
	if t.dirtyVnet && r.needVnet {
		if err := store.Save(r.paths.vnet, t.vnet); err != nil {
			return cnicmd.StateError(r.paths.vnet, err)
		}
	}
	return nil
}

// loadOrRebuild loads a state file into v; a corrupt or missing one is
// rebuilt from HNS (see cnicmd.LoadOrRebuild). The state directory
// survives reboots on Windows, and so do HNS endpoints, so both stay in
// step.
func (r *runner) loadOrRebuild(path string, v interface{}, what string, rebuild func() int) (bool, error) {
	return cnicmd.LoadOrRebuild(r.log, path, v, what, "HNS", "entries", rebuild)
}

// rebuildVnet recreates the endpoint list from the HNS endpoints of the
// network that carry our names.
func (r *runner) rebuildVnet() *VnetState {
	s := &VnetState{}
	s.normalize()
	nw, err := r.h.NetworkByName(r.cfg.Name)
	if err != nil {
		return s
	}
	eps, err := r.h.Endpoints(nw.ID)
	if err != nil {
		r.log.Error("cannot list HNS endpoints to rebuild state", zap.Error(err))
		return s
	}
	for _, e := range eps {
		cid, ifName, ok := hns.ParseEndpointName(e.Name)
		if !ok {
			continue
		}
		ep := &Endpoint{ContainerID: cid, IfName: ifName, Network: r.cfg.Name, Namespace: e.Namespace, HNSName: e.Name,
			HNSID: e.ID, IP: fmt.Sprintf("%s/%d", e.IP, e.PrefixLength), Status: StatusCommitted, Updated: time.Now()}
		if e.Namespace != "" {
			ep.Result, _ = json.Marshal(r.resultFor(e, e.Namespace, ifName))
		}
		s.Endpoints[cnicmd.Key(cid, ifName)] = ep
	}
	return s
}

// rebuildIPAM recreates the allocations of azure-vnet's endpoints.
func rebuildIPAM(vs *VnetState, vnet bool) *ipam.State {
	s := ipam.NewState()
	if !vnet {
		return s
	}
	for _, ep := range vs.Endpoints {
		ip, n, err := net.ParseCIDR(ep.IP)
		if err != nil {
			continue
		}
		s.Allocations[ip.String()] = &ipam.Allocation{IP: ip.String(), Pool: n.String(), ContainerID: ep.ContainerID,
			IfName: ep.IfName, Owner: config.VnetPlugin, Network: ep.Network, Time: time.Now()}
	}
	return s
}

// allocateIn gives the invocation's container interface an address.
func (r *runner) allocateIn(t *tx, pool *ipam.Pool) (*ipam.Allocation, error) {
	al, changed, err := cnicmd.Allocate(t.ipam, pool, r.cfg, r.p.Name, r.args.ContainerID, r.args.IfName, r.now)
	if err != nil {
		return nil, err
	}
	t.dirtyIPAM = t.dirtyIPAM || changed
	return al, nil
}

// release frees the address of containerID/ifName and forgets its endpoint.
func (t *tx) release(containerID, ifName string) []*ipam.Allocation {
	rel, ipamChanged, vnetChanged := cnicmd.Release(t.ipam, t.vnet.Endpoints, containerID, ifName)
	t.dirtyIPAM = t.dirtyIPAM || ipamChanged
	t.dirtyVnet = t.dirtyVnet || vnetChanged
	return rel
}

// inFlight says whether a pending endpoint's ADD still runs.
func inFlight(ep *Endpoint) bool {
	return ep != nil && ep.Status == StatusPending && (ep.PID == os.Getpid() || processAlive(ep.PID))
}
