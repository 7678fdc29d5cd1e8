package policy

import "strings"

// Describe is the one-line description of an allow rule that `azure-npm
// explain` prints and flow logs carry: its peers and ports in words.
func (r Rule) Describe() string {
	peers := r.Comment
	if peers == "" {
		peers = "any peer"
	}
	ports := "any port"
	if len(r.Ports) > 0 {
		var ps []string
		for _, p := range r.Ports {
			ps = append(ps, p.String())
		}
		ports = strings.Join(ps, ", ")
	}
	return peers + " on " + ports
}

// DescribeDeny is the description of a default deny by the isolating
// policies, in the words `azure-npm explain` uses.
func DescribeDeny(policies []string) string {
	return "no rule of " + strings.Join(policies, ", ") + " allows it"
}
