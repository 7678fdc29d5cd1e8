package winplugin

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/cnicmd"
	"github.com/open-acn/acn/cni/ipam"
)

// ipamAdd is azure-vnet-ipam ADD: allocate (or find) the container
// interface's address; the result has the subnet's gateway and a default
// route. The same state file and lock as azure-vnet.
func (r *runner) ipamAdd() error {
	var alloc ipam.Allocation
	pool, err := r.allocate(func(t *tx, pool *ipam.Pool) error {
		al, err := r.allocateIn(t, pool)
		if err != nil {
			return err
		}
		alloc = *al
		return nil
	})
	if err != nil {
		return err
	}
	r.Note(zap.String("ip", alloc.IP))
	if err := r.At("ipam:allocated"); err != nil {
		return err
	}
	return r.Print(&types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		IPs: []*types100.IPConfig{{
			Address: net.IPNet{IP: net.ParseIP(alloc.IP).To4(), Mask: pool.Subnet.Mask},
			Gateway: pool.Gateway,
		}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: pool.Gateway}},
		DNS:    r.Cfg.DNS,
	})
}

// ipamDel releases the container interface's address; nothing held is fine.
func (r *runner) ipamDel() error {
	a := r.Args
	if is, err := readIPAM(r.paths); err == nil && is.Find(a.ContainerID, a.IfName) == nil {
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

// ipamGC releases every allocation of azure-vnet-ipam on this network not
// in the valid list.
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
