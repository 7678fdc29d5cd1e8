package winplugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/cnicmd"
	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/hns"
	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/store"
)

// vnetAdd is azure-vnet ADD on Windows:
//
//  1. a committed endpoint for this container interface whose HNS
//     endpoint is still attached to the pod's namespace: print the stored
//     result, change nothing;
//  2. read the address source (no lock: may be HTTP);
//  3. lock: allocate the address, record the endpoint as pending; unlock;
//  4. find or create the L2Bridge network (under its own lock, once);
//  5. remove a leftover endpoint of an earlier attempt, create the
//     endpoint with its policies and DNS, attach it to the namespace;
//  6. lock: mark the endpoint committed with its result; unlock; print.
//
// A crash after 3 leaves a pending endpoint (and maybe an HNS endpoint
// with the derived name) that the retried ADD, DEL or GC removes.
func (r *runner) vnetAdd() error {
	a, cfg := r.Args, r.Cfg
	if err := r.checkIfName(); err != nil {
		return err
	}
	nsID, err := r.namespace()
	if err != nil {
		return err
	}
	k := cnicmd.Key(a.ContainerID, a.IfName)
	name := hns.EndpointName(a.ContainerID, a.IfName)

	vs, _ := readVnet(r.paths)
	if ep := vs.Endpoints[k]; ep != nil && ep.Status == StatusCommitted && ep.Result != nil && strings.EqualFold(ep.Namespace, nsID) {
		if e, err := r.h.EndpointByName(name); err == nil && e.ID == ep.HNSID && strings.EqualFold(e.Namespace, nsID) {
			r.Note(zap.Bool("repeated", true))
			return r.PrintStored(ep.Result)
		}
	}
	policies, err := r.win.EndpointPolicies()
	if err != nil {
		return err
	}
	dns := r.win.EndpointDNS(cfg)

	var alloc ipam.Allocation
	var pending Endpoint
	pool, err := r.allocate(func(t *tx, pool *ipam.Pool) error {
		// Another ADD of the same container interface still running (a
		// runtime retrying after its own timeout): doing it twice at once
		// would delete the first one's endpoint; retrying later helps.
		if ep := t.Vnet.Endpoints[k]; ep != nil && ep.Status == StatusPending && ep.PID != os.Getpid() && processAlive(ep.PID) {
			return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("an ADD of %s/%s is in progress (pid %d)", a.ContainerID, a.IfName, ep.PID), "")
		}
		al, err := r.allocateIn(t, pool)
		if err != nil {
			return err
		}
		alloc = *al
		ones, _ := pool.Subnet.Mask.Size()
		pending = Endpoint{
			ContainerID: a.ContainerID, IfName: a.IfName, Network: cfg.Name, Namespace: nsID,
			PodName: r.PodName, PodNamespace: r.PodNamespace, HNSName: name,
			IP: fmt.Sprintf("%s/%d", al.IP, ones), Status: StatusPending, PID: os.Getpid(), Updated: r.now,
		}
		t.Vnet.Endpoints[k] = &pending
		t.DirtyVnet = true
		return nil
	})
	if err != nil {
		return err
	}
	r.Note(zap.String("ip", alloc.IP))
	if err := r.At("add:allocated"); err != nil {
		return r.undoAdd(err)
	}

	nw, err := r.ensureNetwork(pool)
	if err != nil {
		return r.undoAdd(err)
	}
	if err := r.At("add:network"); err != nil {
		return r.undoAdd(err)
	}

	// An earlier attempt killed half-way may have left the endpoint.
	if _, err := r.removeEndpoint(name); err != nil {
		return r.undoAdd(err)
	}
	ones, _ := pool.Subnet.Mask.Size()
	ep, err := r.h.CreateEndpoint(&hns.Endpoint{
		Name: name, NetworkID: nw.ID, IP: alloc.IP, PrefixLength: uint8(ones), Gateway: pool.Gateway.String(),
		DNS: dns, Policies: policies,
	})
	if err != nil {
		return r.undoAdd(fmt.Errorf("create HNS endpoint %s: %w", name, err))
	}
	if err := r.At("add:endpoint"); err != nil {
		return r.undoAdd(err)
	}
	if err := r.h.AttachEndpoint(nsID, ep.ID); err != nil {
		if errors.Is(err, hns.ErrNotFound) {
			err = &netnsError{fmt.Errorf("HNS namespace %s (CNI_NETNS): %w", nsID, err)}
		}
		return r.undoAdd(err)
	}
	ep.Namespace = nsID
	if err := r.At("add:attached"); err != nil {
		return r.undoAdd(err)
	}

	res := r.resultFor(ep, nsID, a.IfName)
	raw, err := json.Marshal(res)
	if err != nil {
		return r.undoAdd(err)
	}
	err = r.locked(func(t *tx) error {
		e := t.Vnet.Endpoints[k]
		if e == nil { // state rebuilt meanwhile: record it again
			e = &pending
			t.Vnet.Endpoints[k] = e
		}
		e.Status, e.PID, e.HNSID, e.Result, e.Updated = StatusCommitted, 0, ep.ID, raw, time.Now()
		t.DirtyVnet = true
		return nil
	})
	if err != nil {
		return r.undoAdd(err)
	}
	if err := r.At("add:committed"); err != nil {
		return err
	}
	return r.Print(res)
}

// ensureNetwork finds the configuration's L2Bridge network by name or
// creates it. Creation happens under its own lock with a second look, so
// parallel first ADDs make one network (HNS itself would accept two of
// the same name). The network is never deleted by the plugin: pods'
// endpoints live on it, and it carries the node's VNet traffic.
func (r *runner) ensureNetwork(pool *ipam.Pool) (*hns.Network, error) {
	find := func() (*hns.Network, error) {
		nw, err := r.h.NetworkByName(r.Cfg.Name)
		if err != nil {
			return nil, err
		}
		if nw.Type != hns.NetworkTypeL2Bridge {
			return nil, config.Invalid("HNS network %q exists with type %s; azure-vnet needs %s (remove it or rename the configuration)", nw.Name, nw.Type, hns.NetworkTypeL2Bridge)
		}
		for _, s := range nw.Subnets {
			if s.Prefix == pool.Subnet.String() {
				return nw, nil
			}
		}
		return nil, config.Invalid("HNS network %q exists without subnet %s (it has %v)", nw.Name, pool.Subnet, nw.Subnets)
	}
	nw, err := find()
	if !errors.Is(err, hns.ErrNotFound) {
		return nw, err
	}
	lock, err := store.Acquire(r.paths.networkLock, time.Duration(r.Cfg.LockTimeout))
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	if nw, err = find(); !errors.Is(err, hns.ErrNotFound) {
		return nw, err
	}
	nw, err = r.h.CreateNetwork(&hns.Network{
		Name: r.Cfg.Name, Type: hns.NetworkTypeL2Bridge, AdapterName: r.win.AdapterName,
		Subnets: []hns.Subnet{{Prefix: pool.Subnet.String(), Gateway: pool.Gateway.String()}},
	})
	if err != nil {
		return nil, fmt.Errorf("create HNS network %s: %w", r.Cfg.Name, err)
	}
	r.Log.Info("created HNS network", zap.String("name", nw.Name), zap.String("id", nw.ID), zap.String("adapter", nw.AdapterName))
	return nw, nil
}

// removeEndpoint detaches and deletes the HNS endpoint of that name;
// nothing there is fine. It reports whether there was one.
func (r *runner) removeEndpoint(name string) (bool, error) {
	e, err := r.h.EndpointByName(name)
	if errors.Is(err, hns.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if e.Namespace != "" {
		if err := r.h.DetachEndpoint(e.Namespace, e.ID); err != nil && !errors.Is(err, hns.ErrNotFound) {
			return false, err
		}
	}
	if err := r.h.DeleteEndpoint(e.ID); err != nil && !errors.Is(err, hns.ErrNotFound) {
		return false, err
	}
	return true, nil
}

// undoAdd removes what a failed ADD made and returns the original error.
func (r *runner) undoAdd(cause error) error {
	a := r.Args
	if _, err := r.removeEndpoint(hns.EndpointName(a.ContainerID, a.IfName)); err != nil {
		r.Log.Error("undo ADD: remove endpoint", zap.Error(err))
	}
	if err := r.locked(func(t *tx) error { t.Release(a.ContainerID, a.IfName); return nil }); err != nil {
		r.Log.Error("undo ADD: release", zap.Error(err))
	}
	return cause
}

// vnetDel is azure-vnet DEL: remove the HNS endpoint (found by its derived
// name, so no state is needed), then release the address and forget the
// endpoint. Unknown or half-created containers and repeated DELs succeed.
// The network stays.
func (r *runner) vnetDel() error {
	a := r.Args
	removed, err := r.removeEndpoint(hns.EndpointName(a.ContainerID, a.IfName))
	if err != nil {
		return err
	}
	r.Note(zap.Bool("removedEndpoint", removed))
	if err := r.At("del:hns"); err != nil {
		return err
	}
	vs, _ := readVnet(r.paths)
	is, ierr := readIPAM(r.paths)
	if vs.Endpoints[cnicmd.Key(a.ContainerID, a.IfName)] == nil && ierr == nil && is.Find(a.ContainerID, a.IfName) == nil {
		return nil
	}
	if err := r.locked(func(t *tx) error {
		if rel := t.Release(a.ContainerID, a.IfName); len(rel) > 0 {
			r.Note(zap.String("released", rel[0].IP))
		}
		return nil
	}); err != nil {
		return err
	}
	return r.At("del:released")
}

// vnetCheck is azure-vnet CHECK: the state knows the endpoint, IPAM holds
// its address, and HNS has it as ADD made it: attached to CNI_NETNS, with
// prevResult's address and gateway, the policies (others may be there
// too: NetworkPolicy ACLs) and DNS the configuration asks for now.
func (r *runner) vnetCheck() error {
	a := r.Args
	nsID, err := r.namespace()
	if err != nil {
		return err
	}
	prev, err := r.PrevResult()
	if err != nil {
		return err
	}
	vs, _ := readVnet(r.paths)
	ep := vs.Endpoints[cnicmd.Key(a.ContainerID, a.IfName)]
	if ep == nil || ep.Status != StatusCommitted {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("no endpoint for container %s interface %s", a.ContainerID, a.IfName), "")
	}
	is, err := readIPAM(r.paths)
	if err != nil {
		return err
	}
	failed := func(format string, args ...interface{}) error {
		return types.NewError(cnicmd.ErrCheckFailed, fmt.Sprintf(format, args...), "")
	}
	e, err := r.h.EndpointByName(ep.HNSName)
	if errors.Is(err, hns.ErrNotFound) {
		return failed("HNS endpoint %s is gone", ep.HNSName)
	} else if err != nil {
		return err
	}
	if al := is.Find(a.ContainerID, a.IfName); al == nil || al.IP != e.IP {
		return failed("address %s of %s/%s is not allocated to it", e.IP, a.ContainerID, a.IfName)
	}
	if e.ID != ep.HNSID {
		return failed("HNS endpoint %s has ID %s, ADD made %s", e.Name, e.ID, ep.HNSID)
	}
	if !strings.EqualFold(e.Namespace, nsID) {
		return failed("HNS endpoint %s is attached to namespace %q, not %s", e.Name, e.Namespace, nsID)
	}
	if len(prev.IPs) != 1 {
		return failed("prevResult has %d addresses, the endpoint one", len(prev.IPs))
	}
	ones, _ := prev.IPs[0].Address.Mask.Size()
	if !prev.IPs[0].Address.IP.Equal(parseIP(e.IP)) || ones != int(e.PrefixLength) {
		return failed("prevResult has address %s, the HNS endpoint %s/%d", prev.IPs[0].Address.String(), e.IP, e.PrefixLength)
	}
	if gw := prev.IPs[0].Gateway; gw != nil && !gw.Equal(parseIP(e.Gateway)) {
		return failed("prevResult has gateway %s, the HNS endpoint %s", gw, e.Gateway)
	}
	for _, ifc := range prev.Interfaces {
		if ifc.Name == a.IfName && ifc.Mac != "" && ifc.Mac != macToColons(e.MAC) {
			return failed("prevResult has MAC %s, the HNS endpoint %s", ifc.Mac, e.MAC)
		}
	}
	want, err := r.win.EndpointPolicies()
	if err != nil {
		return err
	}
	if !hasPolicies(want, e.Policies) {
		return failed("HNS endpoint %s has policies %s, missing some the configuration asks for: %s", e.Name, policyString(e.Policies), policyString(want))
	}
	if d := r.win.EndpointDNS(r.Cfg); !reflect.DeepEqual(normDNS(d), normDNS(e.DNS)) {
		return failed("HNS endpoint %s has DNS %+v, the configuration asks for %+v", e.Name, e.DNS, d)
	}
	return nil
}

// vnetGC is azure-vnet GC: every endpoint of this network not in the
// valid-attachments list goes (in HNS and in the state) with its address,
// except pending ones whose plugin process still runs. Endpoints of other
// components on the network (names not ours) are left alone.
func (r *runner) vnetGC() error {
	atts, ok := r.Cfg.Attachments()
	if !ok {
		r.Note(zap.String("skipped", "no cni.dev/valid-attachments in the request"))
		return nil
	}
	valid := map[string]bool{}
	for _, at := range atts {
		valid[cnicmd.Key(at.ContainerID, at.IfName)] = true
	}
	var errs []error
	// HNS is listed before the state is read: an ADD records its pending
	// endpoint before it creates the HNS endpoint, so every endpoint
	// listed here is either in the state read below or an orphan.
	var listed []*hns.Endpoint
	nw, err := r.h.NetworkByName(r.Cfg.Name)
	switch {
	case err == nil:
		if listed, err = r.h.Endpoints(nw.ID); err != nil {
			errs = append(errs, err)
		}
	case !errors.Is(err, hns.ErrNotFound):
		errs = append(errs, err)
	}
	vs, _ := readVnet(r.paths)
	removed := 0
	for _, e := range listed {
		cid, ifName, ours := hns.ParseEndpointName(e.Name)
		k := cnicmd.Key(cid, ifName)
		if !ours || valid[k] || inFlight(vs.Endpoints[k]) {
			continue
		}
		if ok, err := r.removeEndpoint(e.Name); err != nil {
			errs = append(errs, err)
		} else if ok {
			removed++
		}
	}
	if err := r.At("gc:hns"); err != nil {
		return err
	}
	released := 0
	err = r.locked(func(t *tx) error {
		for k, ep := range t.Vnet.Endpoints {
			if valid[k] || ep.Network != r.Cfg.Name || inFlight(ep) {
				continue
			}
			delete(t.Vnet.Endpoints, k)
			t.DirtyVnet = true
		}
		for _, al := range t.IPAM.Allocations {
			k := cnicmd.Key(al.ContainerID, al.IfName)
			if valid[k] || al.Network != r.Cfg.Name || al.Owner != config.VnetPlugin || inFlight(t.Vnet.Endpoints[k]) {
				continue
			}
			released += len(t.IPAM.Release(al.ContainerID, al.IfName, time.Now()))
			t.DirtyIPAM = true
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	r.Note(zap.Int("removedEndpoints", removed))
	r.Note(zap.Int("releasedIPs", released))
	if len(errs) > 0 {
		return types.NewError(types.ErrInternal, fmt.Sprintf("GC: %d errors, first: %v", len(errs), errs[0]), "")
	}
	return nil
}
