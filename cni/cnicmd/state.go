package cnicmd

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/store"
)

// ReadIPAM reads the address state file without the lock (writers replace
// it atomically, so the read is consistent).
func ReadIPAM(path string) (*ipam.State, error) {
	s := ipam.NewState()
	_, err := store.Read(path, s)
	s.Normalize()
	return s, err
}

// LoadOrRebuild loads a state file (what: "endpoint" or "address") into
// v under the node-wide lock. A corrupt file (moved aside by store.Load)
// or a missing one is rebuilt by rebuild from the platform's own record
// (from: "the kernel", "HNS"), which returns the number of entries
// (logged under unit); a missing file is rebuilt only when that finds
// something. The result says whether the rebuilt state must be saved.
func LoadOrRebuild(log *zap.Logger, path string, v interface{}, what, from, unit string, rebuild func() int) (bool, error) {
	ok, aside, err := store.Load(path, v)
	switch {
	case errors.Is(err, store.ErrCorrupt):
		n := rebuild()
		log.Warn(what+" state file was corrupt; moved aside and rebuilt from "+from,
			zap.String("file", path), zap.String("movedTo", aside), zap.Int(unit, n))
		return true, nil
	case err != nil:
		return false, err
	case !ok:
		if n := rebuild(); n > 0 {
			log.Warn(what+" state file missing; rebuilt from "+from, zap.String("file", path), zap.Int(unit, n))
			return true, nil
		}
	}
	return false, nil
}

// Allocate gives containerID/ifName an address from pool in s (the one
// it holds, if any), owned by owner, on cfg's network; changed says
// whether s must be saved.
func Allocate(s *ipam.State, pool *ipam.Pool, cfg *config.NetConf, owner, containerID, ifName string, now time.Time) (al *ipam.Allocation, changed bool, err error) {
	had := s.FindFamily(containerID, ifName, pool.Family()) != nil
	al, err = s.Allocate(pool, containerID, ifName, owner, cfg.IPAM.RequestedIP, now, time.Duration(cfg.IPAM.ReuseCooldown))
	if err != nil {
		return nil, false, err
	}
	al.Network = cfg.Name
	return al, !had, nil
}

// Release frees the addresses of containerID/ifName in s and forgets its
// entry in endpoints; it returns the released allocations and which of
// the two changed.
func Release[E any](s *ipam.State, endpoints map[string]E, containerID, ifName string) (rel []*ipam.Allocation, ipamChanged, endpointsChanged bool) {
	rel = s.Release(containerID, ifName, time.Now())
	k := Key(containerID, ifName)
	if _, ok := endpoints[k]; ok {
		delete(endpoints, k)
		endpointsChanged = true
	}
	return rel, len(rel) > 0, endpointsChanged
}

// ReleaseUnlisted is azure-vnet-ipam's GC: it releases every allocation
// of the IPAM plugin on network whose container interface is not in
// valid. It returns how many addresses it released and whether s changed.
func ReleaseUnlisted(s *ipam.State, network string, valid []types.GCAttachment) (released int, changed bool) {
	keep := map[string]bool{}
	for _, at := range valid {
		keep[Key(at.ContainerID, at.IfName)] = true
	}
	for _, al := range s.Allocations {
		if keep[Key(al.ContainerID, al.IfName)] || al.Network != network || al.Owner != config.IPAMPlugin {
			continue
		}
		released += len(s.Release(al.ContainerID, al.IfName, time.Now()))
		changed = true
	}
	return released, changed
}

// CheckAllocated verifies that prevResult's addresses are exactly the
// container interface's allocations, one per configured family.
func CheckAllocated(prev []*types100.IPConfig, als []*ipam.Allocation, families []string) error {
	held := map[string]bool{}
	for _, al := range als {
		held[al.IP] = true
	}
	for _, ipc := range prev {
		if !held[ipc.Address.IP.String()] {
			return types.NewError(ErrCheckFailed, fmt.Sprintf("prevResult has %s, the allocations are %s", ipc.Address.IP, AllocatedIPs(als)), "")
		}
	}
	for _, fam := range families {
		found := false
		for _, ipc := range prev {
			found = found || config.FamilyOf(ipc.Address.IP) == fam
		}
		if !found {
			return types.NewError(ErrCheckFailed, fmt.Sprintf("prevResult has no %s address (allocations %s)", fam, AllocatedIPs(als)), "")
		}
	}
	if len(prev) != len(als) {
		return types.NewError(ErrCheckFailed, fmt.Sprintf("prevResult has %d addresses, the allocations are %s", len(prev), AllocatedIPs(als)), "")
	}
	return nil
}

// AllocatedIPs lists allocations' addresses for the log.
func AllocatedIPs(als []*ipam.Allocation) string {
	s := make([]string, len(als))
	for i, al := range als {
		s[i] = al.IP
	}
	return strings.Join(s, ",")
}
