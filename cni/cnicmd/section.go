package cnicmd

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/store"
)

// EndpointFile is a platform's azure-vnet.json: its endpoints by Key.
type EndpointFile[E any] interface {
	// Normalize makes a freshly read (or empty) file usable: a non-nil
	// map, no null entries, the current version.
	Normalize()
	// EndpointMap is the file's endpoints by Key(containerID, ifName).
	EndpointMap() map[string]E
}

// Files are the state files of one configuration and the lock that
// guards them.
type Files struct {
	Vnet, IPAM, Lock string
	LockTimeout      time.Duration
}

// Tx is one critical section under the node-wide lock: both state files
// loaded (repaired if corrupt), changed by the caller, saved if dirty.
type Tx[V EndpointFile[E], E any] struct {
	Vnet      V
	IPAM      *ipam.State
	DirtyVnet bool
	DirtyIPAM bool
}

// Release frees the addresses of containerID/ifName and forgets its
// endpoint; it returns the released allocations.
func (t *Tx[V, E]) Release(containerID, ifName string) []*ipam.Allocation {
	rel, ipamChanged, vnetChanged := Release(t.IPAM, t.Vnet.EndpointMap(), containerID, ifName)
	t.DirtyIPAM = t.DirtyIPAM || ipamChanged
	t.DirtyVnet = t.DirtyVnet || vnetChanged
	return rel
}

// State is how a plugin invocation reaches its state files: the paths,
// whether it keeps endpoints (azure-vnet) or addresses only
// (azure-vnet-ipam), and how the platform rebuilds a lost file from its
// own record of the pods (From: "the kernel", "HNS").
type State[V EndpointFile[E], E any] struct {
	Log      *zap.Logger
	Files    Files
	NeedVnet bool
	From     string
	// NewVnet returns an empty endpoint file.
	NewVnet func() V
	// RebuildVnet recreates the endpoints from the platform.
	RebuildVnet func() V
	// RebuildIPAM recreates the allocations from the endpoints (possibly
	// just rebuilt).
	RebuildIPAM func(V) *ipam.State

	// LockWait and LockHeld add up the time spent waiting for and
	// holding the lock, for the invocation's log line.
	LockWait, LockHeld time.Duration
}

// Locked runs f with the node-wide lock held and both files loaded. It
// is the only place state files are written; nothing in f may do
// kernel, HNS or network work (except a rebuild's read-only listing).
// withIPAM false is a section that touches endpoints only (the commit of
// an ADD): the address file is neither read nor written.
func (s *State[V, E]) Locked(withIPAM bool, f func(t *Tx[V, E]) error) error {
	start := time.Now()
	lock, err := store.Acquire(s.Files.Lock, s.Files.LockTimeout)
	if err != nil {
		return err
	}
	defer lock.Release()
	s.LockWait += time.Since(start)
	held := time.Now()
	defer func() { s.LockHeld += time.Since(held) }()

	t := &Tx[V, E]{Vnet: s.NewVnet(), IPAM: ipam.NewState()}
	if s.NeedVnet {
		if t.DirtyVnet, err = LoadOrRebuild(s.Log, s.Files.Vnet, t.Vnet, "endpoint", s.From, "endpoints", func() int {
			t.Vnet = s.RebuildVnet()
			return len(t.Vnet.EndpointMap())
		}); err != nil {
			return err
		}
	}
	t.Vnet.Normalize()
	if withIPAM {
		if t.DirtyIPAM, err = LoadOrRebuild(s.Log, s.Files.IPAM, t.IPAM, "address", s.From, "allocations", func() int {
			t.IPAM = s.RebuildIPAM(t.Vnet)
			return len(t.IPAM.Allocations)
		}); err != nil {
			return err
		}
		t.IPAM.Normalize()
	}
	if err := f(t); err != nil {
		return err
	}
	if !withIPAM && t.DirtyIPAM {
		return fmt.Errorf("internal: address state changed in an endpoint-only section")
	}
	// The address state first: an allocation without an endpoint is
	// released by DEL or GC; an endpoint without its allocation would
	// point at an address someone else may get.
	if t.DirtyIPAM {
		if err := store.Save(s.Files.IPAM, t.IPAM); err != nil {
			return StateError(s.Files.IPAM, err)
		}
	}
	if t.DirtyVnet && s.NeedVnet {
		if err := store.Save(s.Files.Vnet, t.Vnet); err != nil {
			return StateError(s.Files.Vnet, err)
		}
	}
	return nil
}

// ReadVnet reads an endpoint file without the lock (writers replace it
// atomically, so the read is consistent). A corrupt file reads as empty
// (and the error says so); the repair happens under the lock.
func ReadVnet[V EndpointFile[E], E any](path string, newVnet func() V) (V, error) {
	v := newVnet()
	if _, err := store.Read(path, v); err != nil {
		v = newVnet()
		v.Normalize()
		return v, err
	}
	v.Normalize()
	return v, nil
}
