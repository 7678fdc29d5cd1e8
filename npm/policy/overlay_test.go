package policy

import (
	"fmt"
	"math/rand"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// TestCopyOnWriteOverlaySeesWhatTheStateHolds: a live state changes a few
// members of its sets at a time (with hints, as the engine reports them,
// and now and then without) and is published by CopyOnWrite after each
// batch. Every published copy answers every reader's question (Has, Len,
// All, Sorted, Contains, EqualSet, Evaluate) as the live state did when it
// was published, also after later batches, and a small change is published
// as an overlay of the earlier copy, not a copy of the set.
func TestCopyOnWriteOverlaySeesWhatTheStateHolds(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	ip := func(i int) Member { return AddrMember(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})) }
	ipPort := func(i int) Member {
		m := ip(i)
		m.Protocol, m.Port = TCP, 8080
		return m
	}
	const universe = 3000
	live := NewState()
	live.Sets["big"] = &Set{ID: "big", Kind: SetIP, Members: map[Member]struct{}{}}
	live.Sets["ports"] = &Set{ID: "ports", Kind: SetIPPort, Members: map[Member]struct{}{}}
	live.Sets["small"] = &Set{ID: "small", Kind: SetIP, Members: map[Member]struct{}{}}
	for i := 0; i < 2000; i++ {
		live.Sets["big"].Members[ip(i)] = struct{}{}
		live.Sets["ports"].Members[ipPort(i)] = struct{}{}
	}
	// A policy allowing from "big" to port 8080 of "ports" members, so
	// Evaluate reads both sets.
	live.Policies["ns/p"] = &Policy{Namespace: "ns", Name: "p", Ingress: true,
		IngressRules: []Rule{{Peers: []Peer{{SetID: "big"}}, Ports: []Port{{Protocol: TCP, Name: "http", SetID: "ports"}}}}}
	live.Endpoints["ns/dst"] = &Endpoint{Namespace: "ns", Name: "dst", IPs: []netip.Addr{ip(1).Prefix.Addr()}, Ingress: []string{"ns/p"}}

	type published struct {
		view *State
		want *State // the live state as published, copied whole
	}
	var pubs []published
	view := NewState().CopyOnWrite(live, nil)
	pubs = append(pubs, published{view, live.Clone()})
	overlays := 0
	for batch := 0; batch < 300; batch++ {
		ch := NewChanges()
		for _, id := range []string{"big", "ports", "small"} {
			if rng.Intn(3) == 0 {
				continue
			}
			ch.Sets[id] = struct{}{}
			hints := map[Member]struct{}{}
			for n := rng.Intn(6); n >= 0; n-- {
				i := rng.Intn(universe)
				m := ip(i)
				if id == "ports" {
					m = ipPort(i)
				}
				if _, in := live.Sets[id].Members[m]; in {
					delete(live.Sets[id].Members, m)
				} else {
					live.Sets[id].Members[m] = struct{}{}
				}
				hints[m] = struct{}{}
				if rng.Intn(4) == 0 {
					// a hint that changed nothing (added and removed again)
					x := ip(rng.Intn(universe))
					if id == "ports" {
						x.Protocol, x.Port = TCP, 8080
					}
					hints[x] = struct{}{}
				}
			}
			if batch%37 != 0 { // now and then an arbitrary change: no hints
				ch.Members[id] = hints
			}
		}
		view = view.CopyOnWrite(live, ch)
		if s := view.Sets["big"]; s.ov != nil {
			overlays++
			if s.ov.base.ov != nil {
				t.Fatal("an overlay's base is an overlay: copies would chain")
			}
			if n := len(s.ov.added) + len(s.ov.removed); n > compactAt(len(s.ov.base.Members)) {
				t.Fatalf("overlay of %d members past compactAt(%d)", n, len(s.ov.base.Members))
			}
		}
		pubs = append(pubs, published{view, live.Clone()})
	}
	if overlays < 100 {
		t.Errorf("only %d of 300 publishes of the big set were overlays", overlays)
	}
	for i, p := range pubs {
		if d := Diff(p.view, p.want); !d.Empty() {
			t.Fatalf("publish %d: the copy differs from the state it copied: %+v", i, d)
		}
		for id, w := range p.want.Sets {
			g := p.view.Sets[id]
			if g.Len() != len(w.Members) || !reflect.DeepEqual(g.Sorted(), w.Sorted()) {
				t.Fatalf("publish %d, set %s: %d members %v, want %d", i, id, g.Len(), g.Sorted()[:min(3, g.Len())], len(w.Members))
			}
			var all []Member
			for m := range g.All() {
				all = append(all, m)
			}
			SortMembers(all)
			if !slices.Equal(all, w.Sorted()) {
				t.Fatalf("publish %d, set %s: All yields other members than the state holds", i, id)
			}
			if !reflect.DeepEqual(g.Clone().Members, w.Members) && (g.Len() > 0 || len(w.Members) > 0) {
				t.Fatalf("publish %d, set %s: Clone differs", i, id)
			}
		}
		for j := 0; j < universe; j += 7 {
			a := ip(j).Prefix.Addr()
			if got, want := p.view.Sets["big"].Contains(a), p.want.Sets["big"].Contains(a); got != want {
				t.Fatalf("publish %d: Contains(%s) = %v, want %v", i, a, got, want)
			}
			pk := Packet{Src: a, Dst: ip(1).Prefix.Addr(), Protocol: TCP, Port: 8080}
			if got, want := p.view.Evaluate(pk), p.want.Evaluate(pk); !reflect.DeepEqual(got, want) {
				t.Fatalf("publish %d: Evaluate(%s) = %+v, want %+v", i, fmt.Sprint(pk), got, want)
			}
		}
	}
}
