package translate

import (
	"fmt"
	"strings"

	"go.uber.org/zap"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/policy"
)

// ClusterNetworkPolicy (sigs.k8s.io/network-policy-api, policy.networking.k8s.io/v1beta1)
// becomes a policy.Policy of tier Admin or Baseline whose rules carry
// actions; policy.Tier documents the order of evaluation. Peers and ports
// reuse the NetworkPolicy machinery: a namespaces or pods peer is the set
// of a namespace × pod selector, a networks peer one ipBlock set per CIDR,
// a named port a (pod IP, protocol, port) set per protocol.
//
// A nodes peer is the set of the addresses of the Nodes it selects
// (nodes.go). Fail closed, as the API requires: a peer or protocol this
// translator does not implement — an empty one (a field of a newer API
// version), domainNames — makes an Accept rule match nothing through it and a
// Deny or Pass rule match everything. Each is reported as a problem. An
// object that cannot be translated at all (a bad selector, CIDR, tier,
// action or port) denies all traffic of its subjects in both directions at
// its tier and priority; when even its subject cannot be read, its
// subjects are every pod of the cluster.

// compileCluster translates a ClusterNetworkPolicy; it registers nothing.
// problems lists what was failed closed inside an otherwise valid object.
func compileCluster(cnp *cnpv1.ClusterNetworkPolicy) (c *compiled, sels []selSpec, problems []string, err error) {
	tier, err := clusterTier(cnp.Spec.Tier)
	if err != nil {
		return nil, nil, nil, err
	}
	target, err := clusterSubject(cnp.Spec.Subject)
	if err != nil {
		return nil, nil, nil, err
	}
	pol := &policy.Policy{Name: cnp.Name, Tier: tier, Priority: cnp.Spec.Priority, Selector: target.readable}
	c = &compiled{pol: pol, target: target.key}
	selm := map[string]selSpec{target.key: target}
	sets := map[string]setSpec{}
	addSet := func(s setSpec) { sets[s.id] = s }
	for i, r := range cnp.Spec.Ingress {
		peers := make([]clusterPeer, len(r.From))
		for j, p := range r.From {
			peers[j] = clusterPeer{namespaces: p.Namespaces, pods: p.Pods}
		}
		rule, keep, probs, err := compileClusterRule(policy.Ingress, i, r.Name, r.Action, peers, r.Protocols, target, selm, addSet)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("ingress rule %d: %w", i, err)
		}
		problems = append(problems, probs...)
		pol.Ingress = true // a direction with rules is governed, even if a rule matches nothing
		if keep {
			pol.IngressRules = append(pol.IngressRules, rule)
		}
	}
	for i, r := range cnp.Spec.Egress {
		peers := make([]clusterPeer, len(r.To))
		for j, p := range r.To {
			peers[j] = clusterPeer{namespaces: p.Namespaces, pods: p.Pods, nodes: p.Nodes, networks: p.Networks, domains: p.DomainNames}
		}
		rule, keep, probs, err := compileClusterRule(policy.Egress, i, r.Name, r.Action, peers, r.Protocols, target, selm, addSet)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("egress rule %d: %w", i, err)
		}
		problems = append(problems, probs...)
		pol.Egress = true
		if keep {
			pol.EgressRules = append(pol.EgressRules, rule)
		}
	}
	return c, c.finish(selm, sets), problems, nil
}

func clusterTier(t cnpv1.Tier) (policy.Tier, error) {
	switch t {
	case cnpv1.AdminTier:
		return policy.TierAdmin, nil
	case cnpv1.BaselineTier:
		return policy.TierBaseline, nil
	}
	return 0, fmt.Errorf("unknown tier %q", t)
}

func clusterSubject(s cnpv1.ClusterNetworkPolicySubject) (selSpec, error) {
	switch {
	case s.Namespaces != nil && s.Pods == nil:
		sp, err := nsSelectorSpec(s.Namespaces, &metav1.LabelSelector{})
		if err != nil {
			return sp, fmt.Errorf("subject: %w", err)
		}
		return sp, nil
	case s.Pods != nil && s.Namespaces == nil:
		sp, err := nsSelectorSpec(&s.Pods.NamespaceSelector, &s.Pods.PodSelector)
		if err != nil {
			return sp, fmt.Errorf("subject: %w", err)
		}
		return sp, nil
	}
	return selSpec{}, fmt.Errorf("subject: want exactly one of namespaces and pods")
}

// clusterPeer is an ingress or egress peer (ingress peers have only
// namespaces and pods).
type clusterPeer struct {
	namespaces *metav1.LabelSelector
	pods       *cnpv1.NamespacedPod
	nodes      *metav1.LabelSelector
	networks   []cnpv1.CIDR
	domains    []cnpv1.DomainName
}

// compileClusterRule translates one rule. keep is false for a rule that
// can match nothing (an Accept whose every peer failed closed).
func compileClusterRule(dir policy.Direction, idx int, name string, action cnpv1.ClusterNetworkPolicyRuleAction, peers []clusterPeer,
	protos []cnpv1.ClusterNetworkPolicyProtocol, target selSpec, sels map[string]selSpec, addSet func(setSpec)) (rule policy.Rule, keep bool, problems []string, err error) {
	switch action {
	case cnpv1.ClusterNetworkPolicyRuleActionAccept:
		rule.Action = policy.ActionAllow
	case cnpv1.ClusterNetworkPolicyRuleActionDeny:
		rule.Action = policy.ActionDeny
	case cnpv1.ClusterNetworkPolicyRuleActionPass:
		rule.Action = policy.ActionPass
	default:
		return rule, false, nil, fmt.Errorf("unknown action %q", action)
	}
	rule.Name = name
	label := fmt.Sprintf("%s rule %d", dir, idx)
	if name != "" {
		label += " (" + name + ")"
	}
	// failOpenPeer: a peer we cannot enforce. Accept: it matches nothing;
	// Deny/Pass: the whole rule matches everything.
	matchAll := false
	failed := func(what string) {
		verdict := "matches nothing through it"
		if rule.Action != policy.ActionAllow {
			verdict = "matches all traffic (fail closed)"
			matchAll = true
		}
		problems = append(problems, fmt.Sprintf("%s (%s): %s; the rule %s", label, rule.Action, what, verdict))
	}
	var desc []string
	var podScope []selSpec
	anyNonPod := false
	for j, p := range peers {
		set := 0
		for _, b := range []bool{p.namespaces != nil, p.pods != nil, p.nodes != nil, len(p.networks) > 0, len(p.domains) > 0} {
			if b {
				set++
			}
		}
		switch {
		case set != 1:
			failed(fmt.Sprintf("peer %d sets %d of namespaces, pods, nodes, networks, domainNames (want exactly one: a peer type this version does not know?)", j, set))
		case p.namespaces != nil || p.pods != nil:
			var s selSpec
			var err error
			if p.namespaces != nil {
				s, err = nsSelectorSpec(p.namespaces, &metav1.LabelSelector{})
			} else {
				s, err = nsSelectorSpec(&p.pods.NamespaceSelector, &p.pods.PodSelector)
			}
			if err != nil {
				return rule, false, nil, fmt.Errorf("peer %d: %w", j, err)
			}
			sels[s.key] = s
			ss := ipSetSpec(s)
			addSet(ss)
			rule.Peers = append(rule.Peers, policy.Peer{SetID: ss.id})
			desc = append(desc, s.readable)
			podScope = append(podScope, s)
		case len(p.networks) > 0:
			for _, n := range p.networks {
				ss, err := ipBlockSpec(&networkingv1.IPBlock{CIDR: string(n)})
				if err != nil {
					return rule, false, nil, fmt.Errorf("peer %d: %w", j, err)
				}
				addSet(ss)
				rule.Peers = append(rule.Peers, policy.Peer{SetID: ss.id})
				desc = append(desc, strings.TrimPrefix(ss.readable, "ipBlock "))
			}
			anyNonPod = true
		case p.nodes != nil:
			ss, err := nodeSetSpec(p.nodes)
			if err != nil {
				return rule, false, nil, fmt.Errorf("peer %d: %w", j, err)
			}
			addSet(ss)
			rule.Peers = append(rule.Peers, policy.Peer{SetID: ss.id})
			desc = append(desc, ss.readable)
			anyNonPod = true
		default:
			failed(fmt.Sprintf("peer %d: domainNames (FQDN) peers are not supported", j))
		}
	}
	if matchAll {
		rule.Peers, rule.Ports = nil, nil
		rule.Comment = label + ": all traffic (a peer failed closed)"
		return rule, true, problems, nil
	}
	if len(rule.Peers) == 0 {
		return rule, false, problems, nil // every peer failed: an Accept matching nothing
	}
	word := "from"
	if dir == policy.Egress {
		word = "to"
	}
	for j, pr := range protos {
		set := 0
		for _, b := range []bool{pr.TCP != nil, pr.UDP != nil, pr.SCTP != nil, pr.DestinationNamedPort != ""} {
			if b {
				set++
			}
		}
		if set != 1 {
			if rule.Action == policy.ActionAllow {
				problems = append(problems, fmt.Sprintf("%s (Accept): protocol %d sets %d of tcp, udp, sctp, destinationNamedPort (want exactly one); it matches nothing", label, j, set))
				continue
			}
			problems = append(problems, fmt.Sprintf("%s (%s): protocol %d sets %d of tcp, udp, sctp, destinationNamedPort (want exactly one); the rule matches every port (fail closed)", label, rule.Action, j, set))
			rule.Ports = nil
			protos = nil
			break
		}
		if pr.DestinationNamedPort != "" {
			var scope []selSpec
			switch {
			case dir == policy.Ingress:
				scope = []selSpec{target}
			case anyNonPod:
				scope = []selSpec{allPodsSpec()}
			default:
				scope = podScope
			}
			for _, s := range scope {
				sels[s.key] = s
			}
			// A named port names a container port of any protocol.
			for _, proto := range []policy.Protocol{policy.TCP, policy.UDP, policy.SCTP} {
				ss := namedPortSpec(scope, pr.DestinationNamedPort, proto)
				addSet(ss)
				rule.Ports = append(rule.Ports, policy.Port{Protocol: proto, Name: pr.DestinationNamedPort, SetID: ss.id})
			}
			continue
		}
		proto, dp := policy.TCP, (*cnpv1.Port)(nil)
		switch {
		case pr.TCP != nil:
			dp = pr.TCP.DestinationPort
		case pr.UDP != nil:
			proto, dp = policy.UDP, pr.UDP.DestinationPort
		default:
			proto, dp = policy.SCTP, pr.SCTP.DestinationPort
		}
		pp := policy.Port{Protocol: proto}
		if dp != nil {
			switch {
			case dp.Range != nil && dp.Number == 0:
				if dp.Range.Start < 1 || dp.Range.End > 65535 || dp.Range.Start > dp.Range.End {
					return rule, false, nil, fmt.Errorf("protocol %d: port range %d-%d invalid", j, dp.Range.Start, dp.Range.End)
				}
				pp.Port, pp.EndPort = uint16(dp.Range.Start), uint16(dp.Range.End)
				if pp.EndPort == pp.Port {
					pp.EndPort = 0
				}
			case dp.Range == nil && dp.Number >= 1 && dp.Number <= 65535:
				pp.Port = uint16(dp.Number)
			default:
				return rule, false, nil, fmt.Errorf("protocol %d: destinationPort wants exactly one of number (1-65535) and range", j)
			}
		}
		rule.Ports = append(rule.Ports, pp)
	}
	if len(protos) > 0 && len(rule.Ports) == 0 {
		return rule, false, problems, nil // an Accept whose every protocol failed
	}
	pd := make([]string, 0, len(rule.Ports))
	for _, p := range rule.Ports {
		pd = append(pd, p.String())
	}
	rule.Comment = label + ": " + word + " " + strings.Join(desc, "; ")
	if len(pd) > 0 {
		rule.Comment += " ports " + strings.Join(pd, ",")
	}
	return rule, true, problems, nil
}

// failClosedCluster is the translation of a ClusterNetworkPolicy that
// cannot be translated: at its tier and priority it denies all traffic of
// its subjects in both directions; its subjects are every pod of the
// cluster when its subject cannot be read.
func failClosedCluster(cnp *cnpv1.ClusterNetworkPolicy, err error) (*compiled, []selSpec) {
	tier, terr := clusterTier(cnp.Spec.Tier)
	if terr != nil {
		tier = policy.TierAdmin
	}
	t, serr := clusterSubject(cnp.Spec.Subject)
	if serr != nil {
		t = allPodsSpec()
		t.readable = "every pod of the cluster (subject invalid)"
	}
	deny := []policy.Rule{{Action: policy.ActionDeny, Comment: "all traffic: the policy cannot be translated (fail closed)"}}
	pol := &policy.Policy{Name: cnp.Name, Tier: tier, Priority: cnp.Spec.Priority, Selector: t.readable, Ingress: true, Egress: true,
		IngressRules: deny, EgressRules: append([]policy.Rule(nil), deny...), Error: err.Error()}
	return &compiled{pol: pol, target: t.key, sels: []string{t.key}}, []selSpec{t}
}

// UpsertClusterPolicy adds or replaces a ClusterNetworkPolicy. It returns
// the problems found (nil when it translated completely): what was failed
// closed, or why the whole object was (each also logged at error).
func (e *Engine) UpsertClusterPolicy(cnp *cnpv1.ClusterNetworkPolicy) []string {
	key := policy.ClusterPolicyKey(cnp.Name)
	c, sels, problems, err := compileCluster(cnp)
	if err == nil {
		err = e.checkCollisions(c)
	}
	if err != nil {
		e.log.Error("cluster network policy cannot be translated; denying all traffic of its subjects at its tier and priority",
			zap.String("policy", key), zap.String("tier", string(cnp.Spec.Tier)), zap.String("reason", err.Error()))
		c, sels = failClosedCluster(cnp, err)
		problems = []string{err.Error()}
	} else {
		for _, p := range problems {
			e.log.Error("cluster network policy rule failed closed", zap.String("policy", key), zap.String("tier", string(cnp.Spec.Tier)), zap.String("reason", p))
		}
	}
	// A cluster-scoped policy has no namespace: its own annotation, set by
	// the administrator who owns it, decides what it logs, else
	// flowLog.default (a malformed one: the daemon logs and counts it).
	c.pol.FlowLog, _ = flowlog.Mode(cnp.Annotations, e.opts.FlowLog)
	e.install(key, c, sels)
	return problems
}

// DeleteClusterPolicy removes a ClusterNetworkPolicy.
func (e *Engine) DeleteClusterPolicy(name string) { e.uninstall(policy.ClusterPolicyKey(name)) }

// withoutBaseline drops the Baseline-tier keys when a NetworkPolicy
// isolates the pod in that direction.
func withoutBaseline(st *policy.State, keys []string, np bool) []string {
	if !np {
		return keys
	}
	out := keys[:0]
	for _, k := range keys {
		if p := st.Policies[k]; p == nil || p.Tier != policy.TierBaseline {
			out = append(out, k)
		}
	}
	return out
}
