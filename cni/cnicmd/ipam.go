package cnicmd

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	"go.uber.org/zap"
)

// The azure-vnet-ipam handlers that have no platform in them; locked is
// the platform runner's section (State.Locked with its files and
// rebuild), ipamFile the address file it guards.

// IPAMDel releases the container interface's addresses; nothing held is
// fine (and takes no lock).
func IPAMDel[V EndpointFile[E], E any](inv *Invocation, ipamFile string, locked func(func(*Tx[V, E]) error) error) error {
	a := inv.Args
	if is, err := ReadIPAM(ipamFile); err == nil && is.Find(a.ContainerID, a.IfName) == nil {
		return nil
	}
	return locked(func(t *Tx[V, E]) error {
		if rel := t.Release(a.ContainerID, a.IfName); len(rel) > 0 {
			inv.Note(zap.String("released", AllocatedIPs(rel)))
		}
		return nil
	})
}

// IPAMCheck verifies the addresses of prevResult are exactly those held
// by the container interface, one per configured family.
func IPAMCheck(inv *Invocation, ipamFile string) error {
	a := inv.Args
	prev, err := inv.PrevResult()
	if err != nil {
		return err
	}
	is, err := ReadIPAM(ipamFile)
	if err != nil {
		return err
	}
	als := is.FindAll(a.ContainerID, a.IfName)
	if len(als) == 0 {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("no address allocated to container %s interface %s", a.ContainerID, a.IfName), "")
	}
	return CheckAllocated(prev.IPs, als, inv.Cfg.IPAM.IPFamilies)
}

// IPAMGC releases every allocation of azure-vnet-ipam on this network
// whose container interface is not in cni.dev/valid-attachments.
func IPAMGC[V EndpointFile[E], E any](inv *Invocation, locked func(func(*Tx[V, E]) error) error) error {
	atts, ok := inv.Cfg.Attachments()
	if !ok {
		return nil
	}
	released := 0
	err := locked(func(t *Tx[V, E]) error {
		n, changed := ReleaseUnlisted(t.IPAM, inv.Cfg.Name, atts)
		released += n
		t.DirtyIPAM = t.DirtyIPAM || changed
		return nil
	})
	inv.Note(zap.Int("releasedIPs", released))
	return err
}
