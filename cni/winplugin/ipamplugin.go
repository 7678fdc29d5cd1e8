package winplugin

import (
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

// The other commands of azure-vnet-ipam have no platform in them.
func (r *runner) ipamDel() error   { return cnicmd.IPAMDel(&r.Invocation, r.paths.ipam, r.locked) }
func (r *runner) ipamCheck() error { return cnicmd.IPAMCheck(&r.Invocation, r.paths.ipam) }
func (r *runner) ipamGC() error    { return cnicmd.IPAMGC(&r.Invocation, r.locked) }
