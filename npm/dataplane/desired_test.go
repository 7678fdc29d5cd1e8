package dataplane

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/open-acn/acn/npm/policy"
)

// nameRenderer renders a set as its sorted member strings and a policy as
// one chain name, so the test sees what the core asked for.
type nameRenderer struct{ patched int }

type strSet map[string]bool

func (nameRenderer) RenderSet(s *policy.Set) []KernelSet[strSet] {
	ks := strSet{}
	for m := range s.Members {
		ks[m.String()] = true
	}
	return []KernelSet[strSet]{{Name: "s-" + s.ID, Family: policy.IPv4, Set: ks}}
}

func (r *nameRenderer) PatchMember(ks KernelSet[strSet], m policy.Member, add bool) {
	r.patched++
	if add {
		ks.Set[m.String()] = true
	} else {
		delete(ks.Set, m.String())
	}
}

func (nameRenderer) RenderPolicy(p *policy.Policy, _ map[string]*policy.Set) (string, []string) {
	return "rules of " + p.Key(), []string{"p-" + p.Key()}
}

func (nameRenderer) GroupNames(g *policy.Group) []string { return []string{"g-" + g.ID} }

func churnState(round, live int) *policy.State {
	st := policy.NewState()
	for i := round; i < round+live; i++ {
		ns := fmt.Sprintf("ns%d", i)
		set := &policy.Set{ID: "i" + ns, Kind: policy.SetIP, Key: "pods " + ns, Members: map[policy.Member]struct{}{}}
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		set.Members[policy.AddrMember(ip)] = struct{}{}
		st.Sets[set.ID] = set
		p := &policy.Policy{Namespace: ns, Name: "web", Ingress: true, IngressRules: []policy.Rule{{Peers: []policy.Peer{{SetID: set.ID}}}}}
		st.Policies[p.Key()] = p
		st.Endpoints[ns+"/pod"] = &policy.Endpoint{Namespace: ns, Name: "pod", IPs: []netip.Addr{ip}, Ingress: []string{p.Key()}}
	}
	return st
}

// TestNamesForgetWhatIsGone: namespaces with a policy, a set and a pod come
// and go for 50 rounds; the names the core holds are exactly those of the
// live objects (a set, a policy and a group per namespace), whether the
// updates are incremental or full.
func TestNamesForgetWhatIsGone(t *testing.T) {
	for _, full := range []bool{false, true} {
		t.Run(fmt.Sprintf("full=%v", full), func(t *testing.T) {
			r := &nameRenderer{}
			d := NewDesired[strSet, string](r)
			prev := policy.NewState()
			const live = 5
			for round := 0; round < 50; round++ {
				st := churnState(round, live)
				var ch *policy.Changes
				if !full {
					ch = policy.Diff(prev, st)
				}
				if _, err := d.Update(st, ch); err != nil {
					t.Fatal(err)
				}
				prev = st
				if len(d.Names) != 3*live {
					t.Fatalf("round %d: %d names, want %d (one set, policy and group per live namespace): %v", round, len(d.Names), 3*live, slices.Sorted(maps.Keys(d.Names)))
				}
				if len(d.Sets) != live || len(d.Policies) != live || len(d.Groups[policy.Ingress]) != live {
					t.Fatalf("round %d: %d sets, %d policies, %d groups, want %d each", round, len(d.Sets), len(d.Policies), len(d.Groups[policy.Ingress]), live)
				}
				want := map[string]int{"sets": live, "policies": live, "groups": live, "names": 3 * live,
					"setKernelObj": live, "policyNames": live, "groupNames": live, "setUsers": live}
				if got := d.Sizes(); !maps.Equal(got, want) {
					t.Fatalf("round %d: Sizes() = %v, want %v", round, got, want)
				}
			}
		})
	}
}

// TestDesiredPatchesMembers: a member-only change patches the kernel set
// in place (O(hints)); a change of kind renders it anew; a collision of
// kernel names fails the update.
func TestDesiredPatchesMembers(t *testing.T) {
	r := &nameRenderer{}
	d := NewDesired[strSet, string](r)
	st := churnState(0, 1)
	if _, err := d.Update(st, nil); err != nil {
		t.Fatal(err)
	}
	st2 := st.Clone()
	m := policy.AddrMember(netip.MustParseAddr("10.1.1.1"))
	st2.Sets["ins0"].Members[m] = struct{}{}
	ch := policy.NewChanges()
	ch.Sets["ins0"] = struct{}{}
	ch.Members["ins0"] = map[policy.Member]struct{}{m: {}}
	dl, err := d.Update(st2, ch)
	if err != nil {
		t.Fatal(err)
	}
	if r.patched != 1 || len(dl.Rendered) != 0 || !d.Sets["s-ins0"]["10.1.1.1"] {
		t.Fatalf("patched %d, rendered %v, set %v", r.patched, dl.Rendered, d.Sets["s-ins0"])
	}
	st3 := st2.Clone()
	st3.Sets["ins0"].Kind = policy.SetNet
	dl, err = d.Update(st3, ch)
	if err != nil || len(dl.Rendered) != 1 {
		t.Fatalf("kind change: rendered %v, %v", dl.Rendered, err)
	}
	st4 := st3.Clone()
	st4.Sets["other"] = &policy.Set{ID: "ins0x", Kind: policy.SetIP, Key: "another key", Members: map[policy.Member]struct{}{}}
	d.Names["s-ins0x"] = "set something else"
	ch4 := policy.NewChanges()
	ch4.Sets["other"] = struct{}{}
	if _, err := d.Update(st4, ch4); err == nil {
		t.Fatal("a kernel name claimed by two objects must fail the update")
	}
}
