package winplugin

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"

	"github.com/open-acn/acn/cni/hns"
)

func parseIP(s string) net.IP { return net.ParseIP(s) }

// canonical re-encodes a policy's settings so that CHECK compares content,
// not the formatting HNS answers with.
func canonical(p hns.Policy) string {
	var v interface{}
	if err := json.Unmarshal(p.Settings, &v); err != nil {
		return p.Type + string(p.Settings)
	}
	b, _ := json.Marshal(v)
	return p.Type + string(b)
}

// hasPolicies says whether every policy of want is on the endpoint (have).
// Others may be there too: the NetworkPolicy agent adds its ACLs to the
// same endpoints.
func hasPolicies(want, have []hns.Policy) bool {
	got := map[string]int{}
	for _, p := range have {
		got[canonical(p)]++
	}
	for _, p := range want {
		c := canonical(p)
		if got[c] == 0 {
			return false
		}
		got[c]--
	}
	return true
}

func policyString(ps []hns.Policy) string {
	var b bytes.Buffer
	b.WriteString("[")
	for i, p := range ps {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(canonical(p))
	}
	b.WriteString("]")
	return b.String()
}

// normDNS treats nil and empty lists alike.
func normDNS(d hns.DNS) string {
	return strings.Join([]string{d.Domain, strings.Join(d.Search, ","), strings.Join(d.ServerList, ","), strings.Join(d.Options, ",")}, "|")
}
