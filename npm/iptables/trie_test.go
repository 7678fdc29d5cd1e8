//go:build linux

package iptables

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/open-acn/acn/npm/ipset"
	"github.com/open-acn/acn/npm/policy"
)

// TestTrieDispatch: for 1..600 groups, walking the trie with the union sets
// reaches, for every pod IP, the leaf holding exactly its group; the depth
// stays logarithmic.
func TestTrieDispatch(t *testing.T) {
	for _, n := range []int{0, 1, 3, 5, 17, 100, 600} {
		var gs []*policy.Group
		owner := map[netip.Addr]*policy.Group{}
		for i := 0; i < n; i++ {
			key := policy.GroupKey(policy.Ingress, []string{fmt.Sprintf("ns/p%d", i)})
			g := &policy.Group{ID: policy.Hash(key, 12), Direction: policy.Ingress, Policies: []string{fmt.Sprintf("ns/p%d", i)}}
			for j := 0; j < 3; j++ {
				a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j + 1)})
				g.IPs = append(g.IPs, a)
				owner[a] = g
			}
			gs = append(gs, g)
		}
		nodes := buildTrie(gs)
		sets := map[string]*ipset.Set{}
		trieSets(sets, policy.IPv4, policy.Ingress, nodes)
		byPath := map[string]trieNode{}
		for _, nd := range nodes {
			byPath[nd.path] = nd
		}
		maxDepth := 0
		for a, g := range owner {
			path := ""
			for {
				nd, ok := byPath[path]
				if !ok {
					t.Fatalf("%d groups: no trie node %q", n, path)
				}
				if nd.isLeaf {
					found := false
					for _, lg := range nd.leaf {
						if lg == g {
							found = true
						}
					}
					if !found || len(nd.leaf) > trieLeaf {
						t.Fatalf("%d groups: %s reached leaf %q without its group", n, a, path)
					}
					break
				}
				in := false
				if len(nd.ones) > 0 {
					_, in = sets[TrieSetName(policy.IPv4, policy.Ingress, path+"1")].Members[a.String()]
				}
				if in {
					path += "1"
				} else {
					path += "0"
				}
			}
			if len(path) > maxDepth {
				maxDepth = len(path)
			}
		}
		if n >= 100 && maxDepth > 12 {
			t.Errorf("%d groups: depth %d", n, maxDepth)
		}
		t.Logf("%d groups: %d trie nodes, max depth %d", n, len(nodes), maxDepth)
	}
}
