//go:build linux

package plugin

import (
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

// The other commands of azure-vnet-ipam have no platform in them.
func (r *runner) ipamDel() error   { return cnicmd.IPAMDel(&r.Invocation, r.paths.ipam, r.locked) }
func (r *runner) ipamCheck() error { return cnicmd.IPAMCheck(&r.Invocation, r.paths.ipam) }
func (r *runner) ipamGC() error    { return cnicmd.IPAMGC(&r.Invocation, r.locked) }
