package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/open-acn/acn/npm/policy"
)

// Nodes, for the `nodes` peers of ClusterNetworkPolicy egress rules: a
// peer selects Nodes by label, and matches the addresses in their
// status.addresses (InternalIP and ExternalIP). Each distinct node
// selector is one SetIP of those addresses, kept up to date as Nodes come,
// go and change; a node contributes under its own key, so a pod sharing
// an address (host network pods are never peers) cannot disturb it.

type nodeInfo struct {
	name   string
	labels labels.Set
	ips    []netip.Addr
}

// nodeContribKey keys a node's members in a set's contributions (pod keys
// are namespace/name and never start with a NUL).
func nodeContribKey(name string) string { return "\x00node/" + name }

// nodeSetSpec is the set of the addresses of the nodes ls selects.
func nodeSetSpec(ls *metav1.LabelSelector) (setSpec, error) {
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return setSpec{}, fmt.Errorf("nodes: %w", err)
	}
	key := "nodes{" + s.String() + "}"
	return setSpec{id: "o" + policy.Hash("ip|"+key, 12), key: key, readable: "nodes with " + readableSel(s), kind: policy.SetIP, nodeSel: s}, nil
}

// UpsertNode adds or updates a Node (its labels and addresses).
func (e *Engine) UpsertNode(n *corev1.Node) {
	ni := &nodeInfo{name: n.Name, labels: labels.Set{}}
	for k, v := range n.Labels {
		ni.labels[k] = v
	}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && !slices.Contains(ni.ips, ip.Unmap()) {
			ni.ips = append(ni.ips, ip.Unmap())
		}
	}
	sort.Slice(ni.ips, func(i, j int) bool { return ni.ips[i].Less(ni.ips[j]) })
	if old := e.nodes[n.Name]; old != nil && labels.Equals(old.labels, ni.labels) && slices.Equal(old.ips, ni.ips) {
		return
	}
	e.nodes[n.Name] = ni
	for _, se := range e.nodeSets {
		e.setNodeContrib(se, nodeContribKey(n.Name), nodeMembers(se, ni))
	}
}

// DeleteNode removes a Node.
func (e *Engine) DeleteNode(name string) {
	if e.nodes[name] == nil {
		return
	}
	delete(e.nodes, name)
	for _, se := range e.nodeSets {
		e.setNodeContrib(se, nodeContribKey(name), nil)
	}
}

// refNodeSet fills a new set of node addresses from the known nodes.
func (e *Engine) refNodeSet(se *setEntry) {
	e.nodeSets[se.spec.id] = se
	for _, ni := range e.nodes {
		if ms := nodeMembers(se, ni); len(ms) > 0 {
			e.setNodeContrib(se, nodeContribKey(ni.name), ms)
		}
	}
}

func nodeMembers(se *setEntry, ni *nodeInfo) []policy.Member {
	if !se.spec.nodeSel.Matches(ni.labels) {
		return nil
	}
	out := make([]policy.Member, len(ni.ips))
	for i, a := range ni.ips {
		out[i] = policy.AddrMember(a)
	}
	return out
}
