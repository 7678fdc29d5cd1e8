package translate

import (
	"fmt"
	"sort"
	"strings"

	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// test object builders, shared with the dataplanes' tests
var (
	cport = translatetest.CPort
	mkPod = translatetest.Pod
	mkNS  = translatetest.Namespace
	sel   = translatetest.Labels
	expr  = translatetest.Expr
	tcp   = translatetest.TCP
	portP = translatetest.ProtoPort
	named = translatetest.Named
	np    = translatetest.Policy
)

// render writes a state out as canonical text: endpoints, then policies
// with every rule's peers and ports expanded to their set members.
func render(s *policy.State) string {
	var b strings.Builder
	var eks []string
	for k := range s.Endpoints {
		eks = append(eks, k)
	}
	sort.Strings(eks)
	for _, k := range eks {
		e := s.Endpoints[k]
		fmt.Fprintf(&b, "endpoint %s %v in=%v eg=%v\n", k, e.IPs, e.Ingress, e.Egress)
	}
	var pks []string
	for k := range s.Policies {
		pks = append(pks, k)
	}
	sort.Strings(pks)
	for _, k := range pks {
		p := s.Policies[k]
		fmt.Fprintf(&b, "policy %s ingress=%v egress=%v", k, p.Ingress, p.Egress)
		if p.Error != "" {
			b.WriteString(" FAILED")
		}
		b.WriteString("\n")
		for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
			for i, r := range p.Rules(d) {
				fmt.Fprintf(&b, "  %s %d:", d, i)
				if len(r.Peers) == 0 {
					b.WriteString(" any")
				}
				for _, pe := range r.Peers {
					fmt.Fprintf(&b, " %s", renderSet(s, pe.SetID))
				}
				for _, pt := range r.Ports {
					fmt.Fprintf(&b, " port %s", pt)
					if pt.SetID != "" {
						fmt.Fprintf(&b, "=%s", renderSet(s, pt.SetID))
					}
				}
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}

func renderSet(s *policy.State, id string) string {
	set := s.Sets[id]
	if set == nil {
		return "MISSING(" + id + ")"
	}
	ms := set.Sorted()
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}
