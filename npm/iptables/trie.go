package iptables

import (
	"fmt"
	"strings"

	"github.com/open-acn/acn/npm/ipset"
	"github.com/open-acn/acn/npm/policy"
)

// Dispatch trie. Local pods are dispatched to their group's chain through a
// binary trie over the bits of the group IDs (stable hashes): an inner node
// tests one "union" set (the IPs of every group whose ID has bit d = 1) and
// goes to one child or the other; a leaf (≤ trieLeaf groups) tests each
// group's own set. A NEW packet therefore costs about log2(groups/trieLeaf)
// + trieLeaf set lookups, whatever the number of policies. Because the
// shape depends only on the group IDs, a pod joining an existing group only
// adds members to sets (its group set and the union sets on its path): no
// chain changes.

const trieMaxDepth = 17 // ACN-NPM-TI- + 17 = 28 chars; acn-npm4-ti + 17 = 28

// trieLeaf is the most groups a leaf tests (a variable so tests can force
// deep tries).
var trieLeaf = 4

type trieNode struct {
	path   string
	leaf   []*policy.Group // leaf: the groups tested here
	ones   []*policy.Group // inner: groups on the "1" side
	zeros  []*policy.Group // inner: groups on the "0" side
	isLeaf bool
}

var b32val = func() [256]int {
	var t [256]int
	for i, c := range "abcdefghijklmnopqrstuvwxyz234567" {
		t[c] = i
	}
	return t
}()

func idBit(id string, i int) int {
	c := i / 5
	if c >= len(id) {
		return 0
	}
	return (b32val[id[c]] >> (4 - i%5)) & 1
}

// buildTrie returns the nodes of the dispatch trie of groups (root first).
func buildTrie(groups []*policy.Group) []trieNode {
	var out []trieNode
	var walk func(path string, gs []*policy.Group)
	walk = func(path string, gs []*policy.Group) {
		if len(gs) <= trieLeaf || len(path) >= trieMaxDepth {
			out = append(out, trieNode{path: path, leaf: gs, isLeaf: true})
			return
		}
		n := trieNode{path: path}
		for _, g := range gs {
			if idBit(g.ID, len(path)) == 1 {
				n.ones = append(n.ones, g)
			} else {
				n.zeros = append(n.zeros, g)
			}
		}
		out = append(out, n)
		if len(n.ones) > 0 {
			walk(path+"1", n.ones)
		}
		if len(n.zeros) > 0 {
			walk(path+"0", n.zeros)
		}
	}
	walk("", groups)
	return out
}

func trieChain(dir policy.Direction, path string) string {
	if path == "" {
		if dir == policy.Egress {
			return ChainEgress
		}
		return ChainIngress
	}
	if dir == policy.Egress {
		return ChainTrieEgressPrefix + path
	}
	return ChainTrieIngressPrefix + path
}

// TrieSetName is the union set of the trie node at path (the "1" child).
func TrieSetName(f policy.Family, dir policy.Direction, path string) string {
	d := "ti"
	if dir == policy.Egress {
		d = "te"
	}
	return SetPrefix + famDigit(f) + "-" + d + path
}

// trieSets adds the union sets of the trie to sets.
func trieSets(sets map[string]*ipset.Set, f policy.Family, dir policy.Direction, nodes []trieNode) {
	for _, n := range nodes {
		if n.isLeaf || len(n.ones) == 0 {
			continue
		}
		name := TrieSetName(f, dir, n.path+"1")
		s := &ipset.Set{Name: name, Type: ipset.HashIP, Family: famName(f), Comment: fmt.Sprintf("dispatch trie %s node %s1", dir, n.path), Members: map[string]struct{}{}, Rank: len(n.path) + 2}
		for _, g := range n.ones {
			for _, a := range g.IPs {
				if policy.FamilyOf(a) == f {
					s.Members[a.String()] = struct{}{}
				}
			}
		}
		sets[name] = s
	}
}

// trieChains renders the dispatch trie chains of one direction.
func trieChains(out map[string][]string, f policy.Family, dir policy.Direction, nodes []trieNode) {
	match := "dst"
	if dir == policy.Egress {
		match = "src"
	}
	for _, n := range nodes {
		c := trieChain(dir, n.path)
		lines := []string{}
		if n.isLeaf {
			for _, g := range n.leaf {
				lines = append(lines, fmt.Sprintf("-A %s -m set --match-set %s %s -m comment --comment %s -g %s", c, GroupSetName(f, g), match,
					comment("pods isolated for "+dir.String()+" by "+strings.Join(g.Policies, ",")), GroupChain(g)))
			}
		} else {
			if len(n.ones) > 0 {
				lines = append(lines, fmt.Sprintf("-A %s -m set --match-set %s %s -g %s", c, TrieSetName(f, dir, n.path+"1"), match, trieChain(dir, n.path+"1")))
			}
			if len(n.zeros) > 0 {
				lines = append(lines, fmt.Sprintf("-A %s -g %s", c, trieChain(dir, n.path+"0")))
			}
		}
		out[c] = lines
	}
}
