package translatetest

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/open-acn/acn/npm/policy"
)

// PropertyConfig is the world shape every property test uses: three
// namespaces, up to four policies, pods with one IPv4 and one IPv6 address
// each (10.9.i.2, fd09:0:i::2), and ipBlocks that overlap the pods, each
// other and the whole address space, with excepts inside and across them.
func PropertyConfig(pods int) Config {
	c := Config{Namespaces: 3, Policies: 4,
		CIDRs:   []string{"10.9.0.0/16", "10.9.0.0/23", "10.9.2.0/24", "0.0.0.0/0", "192.168.7.0/24", "fd09::/32", "::/0"},
		Excepts: []string{"10.9.1.0/24", "10.9.0.0/22", "10.9.3.0/24", "fd09:0:1::/48"},
	}
	for i := 0; i < pods; i++ {
		c.PodIPs = append(c.PodIPs, []string{fmt.Sprintf("10.9.%d.2", i), fmt.Sprintf("fd09:0:%d::2", i)})
	}
	return c
}

// ExternalIPs are addresses outside every pod (one per family) that
// property tests also probe from and to.
var ExternalIPs = []string{"192.168.7.9", "fd77::9"}

// Probe is one connection a property test decides: from Src to Dst
// (addresses of the same family) with protocol Proto to port Port.
type Probe struct {
	Src, Dst string
	Proto    corev1.Protocol
	Port     int
}

// Packet is the probe as the model's packet.
func (p Probe) Packet() policy.Packet {
	return policy.Packet{Src: netip.MustParseAddr(p.Src), Dst: netip.MustParseAddr(p.Dst), Protocol: policy.Protocol(p.Proto), Port: uint16(p.Port)}
}

// Probes are the connections property tests decide, family by family:
// between every two distinct addresses among the pods' addresses of that
// family and ExternalIPs, on every ProbePorts entry.
func (w World) Probes() []Probe {
	var out []Probe
	for fam := range ExternalIPs {
		var addrs []string
		for _, p := range w.Pods {
			addrs = append(addrs, p.Status.PodIPs[fam].IP)
		}
		addrs = append(addrs, ExternalIPs[fam])
		for _, src := range addrs {
			for _, dst := range addrs {
				if src == dst {
					continue
				}
				for _, pp := range ProbePorts {
					out = append(out, Probe{Src: src, Dst: dst, Proto: pp.Proto, Port: pp.Port})
				}
			}
		}
	}
	return out
}

// String prints the world for a failing test's message.
func (w World) String() string {
	var b strings.Builder
	for _, n := range w.Namespaces {
		fmt.Fprintf(&b, "ns %s %v\n", n.Name, n.Labels)
	}
	for _, p := range w.Pods {
		var ports any
		if len(p.Spec.Containers) > 0 {
			ports = p.Spec.Containers[0].Ports
		}
		fmt.Fprintf(&b, "pod %s/%s %v %v %v\n", p.Namespace, p.Name, p.Labels, p.Status.PodIPs, ports)
	}
	for _, p := range w.Policies {
		spec, _ := json.Marshal(p.Spec) // not %+v: it prints pointers
		fmt.Fprintf(&b, "policy %s/%s %s\n", p.Namespace, p.Name, spec)
	}
	for _, p := range w.ClusterPolicies {
		spec, _ := json.Marshal(p.Spec)
		fmt.Fprintf(&b, "clusternetworkpolicy %s %s\n", p.Name, spec)
	}
	return b.String()
}
