//go:build linux

package plugin

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/cnicmd"
	"github.com/open-acn/acn/cni/ipam"
)

// ipamAdd is azure-vnet-ipam ADD: allocate (or find the existing
// allocations of) an address per family for the container interface and
// return them, primary family first, each with its subnet's gateway and
// a default route. There is no kernel work, so the allocation is
// committed at once (both families in one write of the state file).
func (r *runner) ipamAdd() error {
	cfg := r.Cfg
	var allocs []*ipam.Allocation
	pools, err := r.allocate(func(t *tx, pools []*ipam.Pool) error {
		als, err := r.allocateIn(t, pools)
		allocs = als
		return err
	})
	if err != nil {
		return err
	}
	r.mark("allocate")
	r.Note(zap.String("ip", cnicmd.AllocatedIPs(allocs)))
	if err := r.At("ipam:allocated"); err != nil {
		return err
	}
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion, DNS: cfg.DNS}
	for i, pool := range pools {
		ip := net.ParseIP(allocs[i].IP)
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		res.IPs = append(res.IPs, &types100.IPConfig{Address: net.IPNet{IP: ip, Mask: pool.Subnet.Mask}, Gateway: pool.Gateway})
		bits := len(ip) * 8
		res.Routes = append(res.Routes, &types.Route{Dst: net.IPNet{IP: make(net.IP, len(ip)), Mask: net.CIDRMask(0, bits)}, GW: pool.Gateway})
	}
	return r.Print(res)
}

// ipamDel releases the container interface's address; nothing held is fine.
func (r *runner) ipamDel() error {
	a := r.Args
	is, err := readIPAM(r.paths)
	if err == nil && is.Find(a.ContainerID, a.IfName) == nil {
		return nil
	}
	return r.locked(func(t *tx) error {
		if rel := t.Release(a.ContainerID, a.IfName); len(rel) > 0 {
			r.Note(zap.String("released", rel[0].IP))
		}
		return nil
	})
}

// ipamCheck verifies the addresses of prevResult are held by this
// container interface.
func (r *runner) ipamCheck() error {
	a := r.Args
	prev, err := r.PrevResult()
	if err != nil {
		return err
	}
	is, err := readIPAM(r.paths)
	if err != nil {
		return err
	}
	als := is.FindAll(a.ContainerID, a.IfName)
	if len(als) == 0 {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("no address allocated to container %s interface %s", a.ContainerID, a.IfName), "")
	}
	return cnicmd.CheckAllocated(prev.IPs, als, r.Cfg.IPAM.IPFamilies)
}

// ipamGC releases every allocation of this network not in the valid list.
func (r *runner) ipamGC() error {
	atts, ok := r.Cfg.Attachments()
	if !ok {
		return nil
	}
	released := 0
	err := r.locked(func(t *tx) error {
		n, changed := cnicmd.ReleaseUnlisted(t.IPAM, r.Cfg.Name, atts)
		released += n
		t.DirtyIPAM = t.DirtyIPAM || changed
		return nil
	})
	r.Note(zap.Int("releasedIPs", released))
	return err
}
