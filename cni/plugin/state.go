//go:build linux

package plugin

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/open-acn/acn/cni/cnicmd"
	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/network"
)

// File names under the state directory.
const (
	VnetStateFile  = "azure-vnet.json"
	IPAMStateFile  = "azure-vnet-ipam.json"
	LockFile       = "azure-vnet.lock"
	BridgeLockFile = "azure-vnet-bridge.lock"
	BridgePlanFile = "azure-vnet-bridge.json"
	// Overlay: the node-wide SNAT setup's lock and its done-marker.
	OverlayLockFile   = "azure-vnet-overlay.lock"
	OverlayMarkerFile = "azure-vnet-overlay-snat.json"
)

// Endpoint statuses. An endpoint is pending from the moment its address is
// allocated until the kernel work is done; a pending endpoint whose
// process is gone is the trace of a crash, and DEL, GC or the next ADD
// clean it up.
const (
	StatusPending   = "pending"
	StatusCommitted = "committed"
)

// VnetState is azure-vnet.json.
type VnetState struct {
	Version   int                  `json:"version"`
	Endpoints map[string]*Endpoint `json:"endpoints"`
}

// Endpoint is one pod interface.
type Endpoint struct {
	ContainerID  string          `json:"containerID"`
	IfName       string          `json:"ifName"`
	Network      string          `json:"network"`
	Netns        string          `json:"netns,omitempty"`
	PodName      string          `json:"podName,omitempty"`
	PodNamespace string          `json:"podNamespace,omitempty"`
	Mode         string          `json:"mode"`
	HostVeth     string          `json:"hostVeth"`
	IP           string          `json:"ip"` // CIDRs as configured in the pod, comma-separated, primary family first
	Status       string          `json:"status"`
	PID          int             `json:"pid,omitempty"` // the plugin process working on a pending endpoint
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

// paths of one configuration.
type paths struct {
	vnet, ipam, lock, bridgeLock, bridgePlan string
	overlayLock, overlayMarker               string
}

func pathsOf(cfg *config.NetConf) paths {
	d := cfg.StateDir
	return paths{
		vnet:       filepath.Join(d, VnetStateFile),
		ipam:       filepath.Join(d, IPAMStateFile),
		lock:       filepath.Join(d, LockFile),
		bridgeLock: filepath.Join(d, BridgeLockFile),
		bridgePlan: filepath.Join(d, BridgePlanFile),

		overlayLock:   filepath.Join(d, OverlayLockFile),
		overlayMarker: filepath.Join(d, OverlayMarkerFile),
	}
}

// readVnet reads the endpoint state without the lock; a corrupt file
// reads as empty with an error.
func readVnet(p paths) (*VnetState, error) { return cnicmd.ReadVnet(p.vnet, newVnetState) }

func readIPAM(p paths) (*ipam.State, error) { return cnicmd.ReadIPAM(p.ipam) }

// tx is one critical section under the node-wide lock (cnicmd.Tx).
type tx = cnicmd.Tx[*VnetState, *Endpoint]

// locked runs f with the node-wide lock held and both state files loaded
// (cnicmd.State.Locked). Nothing in f may do netlink or HTTP work.
func (r *runner) locked(f func(t *tx) error) error { return r.lockedFiles(true, f) }

// lockedVnet is locked for sections that touch endpoints only (the
// commit of an ADD): the address file is neither read nor written.
func (r *runner) lockedVnet(f func(t *tx) error) error { return r.lockedFiles(false, f) }

// lockedFiles runs a section. A missing or corrupt file is rebuilt from
// the kernel: a missing file with pods in the kernel is a file someone
// deleted (/var/run is emptied at boot together with all pod
// namespaces), so pods in the kernel without a file are always worth
// recovering.
func (r *runner) lockedFiles(withIPAM bool, f func(t *tx) error) error {
	s := &cnicmd.State[*VnetState, *Endpoint]{
		Log:         r.Log,
		Files:       cnicmd.Files{Vnet: r.paths.vnet, IPAM: r.paths.ipam, Lock: r.paths.lock, LockTimeout: time.Duration(r.Cfg.LockTimeout)},
		NeedVnet:    r.needVnet,
		From:        "the kernel",
		NewVnet:     newVnetState,
		RebuildVnet: r.rebuildVnet,
		RebuildIPAM: r.rebuildIPAM,
	}
	err := s.Locked(withIPAM, f)
	r.lockWait += s.LockWait
	r.lockHeld += s.LockHeld
	return err
}

// allocateIn gives the invocation's container interface an address from
// each pool in t (the ones it holds, if any), owned by this plugin, in
// the pools' order. Dual-stack is all or nothing: if one family fails,
// the caller's section returns the error and nothing is saved (the
// section writes the address file once, with both or neither).
func (r *runner) allocateIn(t *tx, pools []*ipam.Pool) ([]*ipam.Allocation, error) {
	var out []*ipam.Allocation
	for _, pool := range pools {
		al, changed, err := cnicmd.Allocate(t.IPAM, pool, r.Cfg, r.p.Name, r.Args.ContainerID, r.Args.IfName, r.now)
		if err != nil {
			return nil, err
		}
		t.DirtyIPAM = t.DirtyIPAM || changed
		out = append(out, al)
	}
	return out, nil
}

// rebuildVnet recreates the endpoint list from the host veths' aliases
// (see network.Owner). Results are recomputed from the alias and the
// current configuration.
func (r *runner) rebuildVnet() *VnetState {
	s := newVnetState()
	s.Normalize()
	h := r.nl
	if h == nil { // azure-vnet-ipam has no handle of its own
		var err error
		if h, err = netlinkHandle(); err != nil {
			r.Log.Error("cannot open netlink to rebuild state", zap.Error(err))
			return s
		}
		defer h.Close()
	}
	owned, err := network.ListOwned(h)
	if err != nil {
		r.Log.Error("cannot list links to rebuild state", zap.Error(err))
		return s
	}
	for _, o := range owned {
		ep := &Endpoint{ContainerID: o.ContainerID, IfName: o.IfName, Network: r.Cfg.Name, Netns: o.Netns, Mode: o.Mode,
			HostVeth: o.HostVeth, IP: network.JoinCIDRs(o.IPs), Status: StatusCommitted, Updated: time.Now()}
		if o.Netns != "" {
			ep.Result, _ = json.Marshal(r.resultFor(o.ContainerID, o.IfName, o.Netns, o.Mode, o.IPs, gatewaysFor(o.Mode, o.IPs), nil))
		}
		s.Endpoints[cnicmd.Key(o.ContainerID, o.IfName)] = ep
	}
	return s
}

// rebuildIPAM recreates allocations from the endpoints (themselves
// possibly just rebuilt from the kernel).
func (r *runner) rebuildIPAM(vs *VnetState) *ipam.State {
	s := ipam.NewState()
	eps := vs.Endpoints
	if len(eps) == 0 {
		eps = r.rebuildVnet().Endpoints
	}
	for _, ep := range eps {
		ips, err := network.ParseCIDRs(ep.IP)
		if err != nil {
			continue
		}
		for _, n := range ips {
			pool := &net.IPNet{IP: n.IP.Mask(n.Mask), Mask: n.Mask}
			s.Allocations[n.IP.String()] = &ipam.Allocation{IP: n.IP.String(), Pool: pool.String(), ContainerID: ep.ContainerID,
				IfName: ep.IfName, Owner: config.VnetPlugin, Network: ep.Network, Time: time.Now()}
		}
	}
	return s
}

// gatewaysFor are the pod's gateways, one per address: the fixed one of
// the family in transparent mode, the subnet's first host (Azure's
// convention) in bridge mode.
func gatewaysFor(mode string, ips []*net.IPNet) []net.IP {
	out := make([]net.IP, len(ips))
	for i, ipn := range ips {
		if mode == network.ModeTransparent {
			out[i] = network.TransparentGatewayFor(ipn.IP)
		} else {
			out[i] = ipam.FirstHost(ipn)
		}
	}
	return out
}

// processAlive says whether the plugin process that marked an endpoint
// pending still runs (then its ADD is in flight and GC must leave it).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return false
	}
	c := strings.TrimSpace(string(comm))
	return strings.HasPrefix(c, "azure-vnet")
}

// netlinkHandle opens a handle in the plugin's own namespace (the node).
func netlinkHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE) // route family only: one socket, not three
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return h, nil
}
