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

func samePolicies(a, b []hns.Policy) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if canonical(a[i]) != canonical(b[i]) {
			return false
		}
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
