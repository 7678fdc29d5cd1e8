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

// Normalize makes a read or empty file usable (cnicmd.EndpointFile).
func (s *VnetState) Normalize() {
	if s.Endpoints == nil {
		s.Endpoints = map[string]*Endpoint{}
	}
	for k, ep := range s.Endpoints {
		if ep == nil { // a null entry in the file: every reader dereferences them
			delete(s.Endpoints, k)
		}
	}
	s.Version = 1
}

// EndpointMap is the endpoints by cnicmd.Key (cnicmd.EndpointFile).
func (s *VnetState) EndpointMap() map[string]*Endpoint { return s.Endpoints }

func newVnetState() *VnetState { return &VnetState{} }

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

// readVnet reads the endpoint state without the lock; a corrupt file
// reads as empty with an error.
func readVnet(p paths) (*VnetState, error) { return cnicmd.ReadVnet(p.vnet, newVnetState) }

func readIPAM(p paths) (*ipam.State, error) { return cnicmd.ReadIPAM(p.ipam) }

// tx is one critical section under the node-wide lock (cnicmd.Tx).
type tx = cnicmd.Tx[*VnetState, *Endpoint]

// locked runs f with the node-wide lock held and both state files loaded
// (cnicmd.State.Locked). Nothing in f calls HNS or the network, except
// the repair of a corrupt or missing file (a read-only listing): the
// state directory survives reboots on Windows, and so do HNS endpoints,
// so both stay in step.
func (r *runner) locked(f func(t *tx) error) error {
	s := &cnicmd.State[*VnetState, *Endpoint]{
		Log:         r.Log,
		Files:       cnicmd.Files{Vnet: r.paths.vnet, IPAM: r.paths.ipam, Lock: r.paths.lock, LockTimeout: time.Duration(r.Cfg.LockTimeout)},
		NeedVnet:    r.needVnet,
		From:        "HNS",
		NewVnet:     newVnetState,
		RebuildVnet: r.rebuildVnet,
		RebuildIPAM: func(vs *VnetState) *ipam.State { return rebuildIPAM(vs, r.needVnet) },
	}
	return s.Locked(true, f)
}

// rebuildVnet recreates the endpoint list from the HNS endpoints of the
// network that carry our names.
func (r *runner) rebuildVnet() *VnetState {
	s := newVnetState()
	s.Normalize()
	nw, err := r.h.NetworkByName(r.Cfg.Name)
	if err != nil {
		return s
	}
	eps, err := r.h.Endpoints(nw.ID)
	if err != nil {
		r.Log.Error("cannot list HNS endpoints to rebuild state", zap.Error(err))
		return s
	}
	for _, e := range eps {
		cid, ifName, ok := hns.ParseEndpointName(e.Name)
		if !ok {
			continue
		}
		ep := &Endpoint{ContainerID: cid, IfName: ifName, Network: r.Cfg.Name, Namespace: e.Namespace, HNSName: e.Name,
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
	al, changed, err := cnicmd.Allocate(t.IPAM, pool, r.Cfg, r.p.Name, r.Args.ContainerID, r.Args.IfName, r.now)
	if err != nil {
		return nil, err
	}
	t.DirtyIPAM = t.DirtyIPAM || changed
	return al, nil
}

// inFlight says whether a pending endpoint's ADD still runs.
func inFlight(ep *Endpoint) bool {
	return ep != nil && ep.Status == StatusPending && (ep.PID == os.Getpid() || processAlive(ep.PID))
}
