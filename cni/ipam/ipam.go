// Package ipam is the address management of azure-vnet-ipam: where the
// addresses come from (source.go), and which container holds which (this
// file). azure-vnet uses it in-process; azure-vnet-ipam exposes it as a
// CNI IPAM plugin. Both use the same state file and the same lock.
package ipam

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/open-acn/acn/cni/config"
)

// StateVersion is written into the state file.
const StateVersion = 1

// State is the content of azure-vnet-ipam.json: who holds which address
// and when each free address was last released.
type State struct {
	Version int `json:"version"`
	// Allocations by IP address.
	Allocations map[string]*Allocation `json:"allocations"`
	// Released records when an address was freed, for the cool-down.
	Released map[string]time.Time `json:"released,omitempty"`
}

// Allocation is one address held by one container interface.
type Allocation struct {
	IP          string    `json:"ip"`
	Pool        string    `json:"pool"`
	ContainerID string    `json:"containerID"`
	IfName      string    `json:"ifName"`
	Owner       string    `json:"owner"`             // plugin that asked: azure-vnet or azure-vnet-ipam
	Network     string    `json:"network,omitempty"` // network name of the config (GC scope)
	Time        time.Time `json:"time"`
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Version: StateVersion, Allocations: map[string]*Allocation{}, Released: map[string]time.Time{}}
}

// Normalize fills nil maps after decoding and repairs what a hand-edited
// or foreign file may hold: a null allocation is dropped (every reader
// dereferences them), and an allocation is filed under its own address
// (the key is what Allocate and Free look up).
func (s *State) Normalize() {
	if s.Allocations == nil {
		s.Allocations = map[string]*Allocation{}
	}
	for k, a := range s.Allocations {
		switch {
		case a == nil:
			delete(s.Allocations, k)
		case a.IP == "":
			a.IP = k
		case a.IP != k:
			delete(s.Allocations, k)
			if _, taken := s.Allocations[a.IP]; !taken {
				s.Allocations[a.IP] = a
			}
		}
	}
	if s.Released == nil {
		s.Released = map[string]time.Time{}
	}
	s.Version = StateVersion
}

// Find returns an allocation of a container interface (the first in
// address order), or nil.
func (s *State) Find(containerID, ifName string) *Allocation {
	if all := s.FindAll(containerID, ifName); len(all) > 0 {
		return all[0]
	}
	return nil
}

// FindAll returns every allocation of a container interface (one per
// family), IPv4 first.
func (s *State) FindAll(containerID, ifName string) []*Allocation {
	var out []*Allocation
	for _, a := range s.Allocations {
		if a.ContainerID == containerID && a.IfName == ifName {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return lessIP(net.ParseIP(out[i].IP), net.ParseIP(out[j].IP)) })
	return out
}

// FindFamily returns the allocation of a container interface in one
// family ("IPv4" or "IPv6"), or nil.
func (s *State) FindFamily(containerID, ifName, family string) *Allocation {
	for _, a := range s.FindAll(containerID, ifName) {
		if config.FamilyOf(net.ParseIP(a.IP)) == family {
			return a
		}
	}
	return nil
}

// ExhaustedError says the pool has no address left.
type ExhaustedError struct {
	Pool    string
	Total   uint64
	Overlay bool
}

func (e *ExhaustedError) Error() string {
	if e.Overlay {
		return fmt.Sprintf("overlay pod block %s exhausted: all %d addresses of this node's block are allocated (the block size limits the pods per node)", e.Pool, e.Total)
	}
	return fmt.Sprintf("address pool %s exhausted: all %d addresses of this node are allocated", e.Pool, e.Total)
}

// ErrRequestedTaken is returned when a specific address is asked for and
// another container holds it.
var ErrRequestedTaken = errors.New("requested address is allocated to another container")

// Allocate gives containerID/ifName an address from pool and records it.
//
// It is idempotent: a container interface that already holds an address
// gets the same one back. A new allocation starts at an offset derived
// from a hash of the container ID and interface name, so the same
// container asks for the same address first every time (a retried ADD
// after a crash lands where the first attempt did), and different
// containers spread over the pool instead of all contending for the
// lowest free address. Addresses released less than cooldown ago are
// skipped while any other is free; if only cooling addresses remain, the
// one released longest ago is used (availability beats the cool-down).
//
// A container interface holds at most one address per family: pool's
// family decides which one this call is about.
func (s *State) Allocate(pool *Pool, containerID, ifName, owner string, requested net.IP, now time.Time, cooldown time.Duration) (*Allocation, error) {
	if a := s.FindFamily(containerID, ifName, pool.Family()); a != nil {
		return a, nil
	}
	if requested != nil && config.FamilyOf(requested) != pool.Family() {
		requested = nil // asked for in the other family
	}
	mk := func(ip net.IP) *Allocation {
		a := &Allocation{IP: ip.String(), Pool: pool.Name(), ContainerID: containerID, IfName: ifName, Owner: owner, Time: now}
		s.Allocations[a.IP] = a
		delete(s.Released, a.IP)
		return a
	}
	if requested != nil {
		if !pool.Subnet.Contains(requested) {
			return nil, fmt.Errorf("requested address %s is not in pool %s", requested, pool.Name())
		}
		if holder, ok := s.Allocations[requested.String()]; ok {
			return nil, fmt.Errorf("%w: %s is held by container %s/%s", ErrRequestedTaken, requested, holder.ContainerID, holder.IfName)
		}
		return mk(requested), nil
	}
	n := pool.Size()
	if n == 0 {
		return nil, &ExhaustedError{Pool: pool.Name(), Total: 0, Overlay: pool.Overlay}
	}
	at := pool.addressAt()
	start := hashOf(containerID, ifName) % n
	// Among k+1 positions at most k are taken or cooling down, k being
	// all allocations and release times of the node: the scan never needs
	// more (an IPv6 /64 is never walked through).
	limit := n
	if k := uint64(len(s.Allocations)+len(s.Released)) + 1; k < limit {
		limit = k
	}
	var coolest net.IP
	var coolestAt time.Time
	for i := uint64(0); i < limit; i++ {
		ip := at((start + i) % n)
		key := ip.String()
		if _, taken := s.Allocations[key]; taken {
			continue
		}
		if at, ok := s.Released[key]; ok && now.Sub(at) < cooldown {
			if coolest == nil || at.Before(coolestAt) {
				coolest, coolestAt = ip, at
			}
			continue
		}
		return mk(ip), nil
	}
	if coolest != nil {
		return mk(coolest), nil
	}
	return nil, &ExhaustedError{Pool: pool.Name(), Total: n, Overlay: pool.Overlay}
}

// Release frees the address(es) of containerID/ifName and returns them.
// Releasing something not held is not an error (DEL must be idempotent).
func (s *State) Release(containerID, ifName string, now time.Time) []*Allocation {
	var out []*Allocation
	for ip, a := range s.Allocations {
		if a.ContainerID == containerID && a.IfName == ifName {
			out = append(out, a)
			delete(s.Allocations, ip)
			s.Released[ip] = now
		}
	}
	s.pruneReleased(now)
	return out
}

// Free counts the pool's addresses nobody holds.
func (s *State) Free(pool *Pool) uint64 {
	if !pool.Ranged {
		free := uint64(0)
		for _, ip := range pool.Addresses {
			if _, taken := s.Allocations[ip.String()]; !taken {
				free++
			}
		}
		return free
	}
	taken := uint64(0)
	for _, a := range s.Allocations {
		if pool.Contains(net.ParseIP(a.IP)) {
			taken++
		}
	}
	return pool.Size() - taken
}

// pruneReleased forgets release times older than a day, so the map does
// not grow without bound on a long-lived node.
func (s *State) pruneReleased(now time.Time) {
	for ip, at := range s.Released {
		if now.Sub(at) > 24*time.Hour {
			delete(s.Released, ip)
		}
	}
}

func hashOf(containerID, ifName string) uint64 {
	h := sha256.Sum256([]byte(containerID + "/" + ifName))
	return binary.BigEndian.Uint64(h[:8])
}

func sortedIPs(in []net.IP) []net.IP {
	out := append([]net.IP(nil), in...)
	sort.Slice(out, func(i, j int) bool { return lessIP(out[i], out[j]) })
	return out
}

// lessIP orders addresses: IPv4 before IPv6, then numerically.
func lessIP(a, b net.IP) bool {
	a4, b4 := a.To4(), b.To4()
	if (a4 == nil) != (b4 == nil) {
		return a4 != nil
	}
	return bytes.Compare(a.To16(), b.To16()) < 0
}
