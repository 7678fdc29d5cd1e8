//go:build linux

package dptest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/open-acn/acn/npm/translate"
)

// ClusterNetworkPolicies in the shared suite: cases of the table (tiers,
// priorities, actions, networks and named ports) and an update-without-gap
// scenario that changes priorities and actions under probe loops.

func cnp(name string, tier cnpv1.Tier, prio int32, subject cnpv1.ClusterNetworkPolicySubject) *cnpv1.ClusterNetworkPolicy {
	return &cnpv1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: cnpv1.ClusterNetworkPolicySpec{Tier: tier, Priority: prio, Subject: subject}}
}

func nsSubject(kv ...string) cnpv1.ClusterNetworkPolicySubject {
	return cnpv1.ClusterNetworkPolicySubject{Namespaces: Labels(kv...)}
}

func fromNS(kv ...string) []cnpv1.ClusterNetworkPolicyIngressPeer {
	return []cnpv1.ClusterNetworkPolicyIngressPeer{{Namespaces: Labels(kv...)}}
}

func fromPods(ns, pods *metav1.LabelSelector) []cnpv1.ClusterNetworkPolicyIngressPeer {
	return []cnpv1.ClusterNetworkPolicyIngressPeer{{Pods: &cnpv1.NamespacedPod{NamespaceSelector: *ns, PodSelector: *pods}}}
}

func tcpPort(n int32) []cnpv1.ClusterNetworkPolicyProtocol {
	return []cnpv1.ClusterNetworkPolicyProtocol{{TCP: &cnpv1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1.Port{Number: n}}}}
}

const (
	accept = cnpv1.ClusterNetworkPolicyRuleActionAccept
	deny   = cnpv1.ClusterNetworkPolicyRuleActionDeny
	pass   = cnpv1.ClusterNetworkPolicyRuleActionPass
)

// ClusterCases are the cases with ClusterNetworkPolicies (part of Cases).
func ClusterCases() []Case {
	// Admin: team=y may not reach namespace a on TCP 80 (priority 1), but
	// anything else from everywhere is accepted (priority 2), even though
	// a NetworkPolicy isolates a/web.
	adminDeny := cnp("guard", cnpv1.AdminTier, 1, nsSubject("team", "x"))
	adminDeny.Spec.Ingress = []cnpv1.ClusterNetworkPolicyIngressRule{{Name: "no-team-y-80", Action: deny, From: fromNS("team", "y"), Protocols: tcpPort(80)}}
	adminAccept := cnp("open", cnpv1.AdminTier, 2, nsSubject("team", "x"))
	adminAccept.Spec.Ingress = []cnpv1.ClusterNetworkPolicyIngressRule{{Name: "all-pods", Action: accept, From: []cnpv1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}}}

	// Admin Pass hands b's cli to the NetworkPolicy tier (which has no
	// policy there), whose absence lets the Baseline tier decide: deny.
	passCli := cnp("defer-cli", cnpv1.AdminTier, 0, nsSubject("team", "x"))
	passCli.Spec.Ingress = []cnpv1.ClusterNetworkPolicyIngressRule{{Name: "cli", Action: pass, From: fromPods(&metav1.LabelSelector{}, Labels("app", "cli"))}}
	acceptAll := cnp("accept-all", cnpv1.AdminTier, 5, nsSubject("team", "x"))
	acceptAll.Spec.Ingress = []cnpv1.ClusterNetworkPolicyIngressRule{{Name: "all", Action: accept, From: []cnpv1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}}}
	baseDeny := cnp("baseline-deny", cnpv1.BaselineTier, 3, nsSubject("team", "x"))
	baseDeny.Spec.Ingress = []cnpv1.ClusterNetworkPolicyIngressRule{{Name: "all", Action: deny, From: []cnpv1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}}}

	// Egress: namespace b may not reach pod0's address (a networks peer)
	// on its named port http; a Baseline Accept before a Baseline Deny.
	noWeb := cnp("no-web-http", cnpv1.AdminTier, 10, nsSubject("team", "y"))
	noWeb.Spec.Egress = []cnpv1.ClusterNetworkPolicyEgressRule{{Name: "web-http", Action: deny,
		To: []cnpv1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1.CIDR{"10.9.0.0/24", "fd09::/48"}}}, Protocols: []cnpv1.ClusterNetworkPolicyProtocol{{DestinationNamedPort: "http"}}}}
	baseAcceptDNS := cnp("a-dns", cnpv1.BaselineTier, 1, nsSubject("team", "y"))
	baseAcceptDNS.Spec.Egress = []cnpv1.ClusterNetworkPolicyEgressRule{{Name: "dns", Action: accept,
		To: []cnpv1.ClusterNetworkPolicyEgressPeer{{Namespaces: &metav1.LabelSelector{}}}, Protocols: []cnpv1.ClusterNetworkPolicyProtocol{{UDP: &cnpv1.ClusterNetworkPolicyProtocolUDP{}}}}}
	baseDenyPods := cnp("b-deny-pods", cnpv1.BaselineTier, 1, nsSubject("team", "y"))
	baseDenyPods.Spec.Egress = []cnpv1.ClusterNetworkPolicyEgressRule{{Name: "pods", Action: deny,
		To: []cnpv1.ClusterNetworkPolicyEgressPeer{{Namespaces: &metav1.LabelSelector{}}}}}

	return []Case{
		{Name: "cnp-admin-deny-before-accept-over-networkpolicy",
			Policies:        BasicPolicies()[:1],
			ClusterPolicies: []*cnpv1.ClusterNetworkPolicy{adminDeny, adminAccept},
			Expect: []Expect{{2, 0, tcpP, 80, false}, {3, 0, tcpP, 80, false}, {2, 0, tcpP, 81, true}, {3, 1, udpP, 53, true},
				{1, 0, tcpP, 81, true}, {-1, 0, tcpP, 80, false}, {0, 2, tcpP, 80, true}}},
		{Name: "cnp-admin-pass-then-baseline-deny",
			ClusterPolicies: []*cnpv1.ClusterNetworkPolicy{passCli, acceptAll, baseDeny},
			Expect: []Expect{{3, 0, tcpP, 80, false}, {1, 0, tcpP, 80, false}, {2, 0, tcpP, 80, true}, {2, 1, udpP, 53, true},
				{-1, 0, tcpP, 80, true}, {0, 3, tcpP, 80, true}}},
		{Name: "cnp-egress-networks-named-port-baseline-order",
			ClusterPolicies: []*cnpv1.ClusterNetworkPolicy{noWeb, baseAcceptDNS, baseDenyPods},
			NoOracle:        "networks peers are not modelled by policy-assistant",
			Expect: []Expect{{2, 0, tcpP, 80, false}, {3, 0, tcpP, 81, false}, {2, 0, udpP, 53, true}, {3, 1, udpP, 53, true},
				{2, 1, tcpP, 80, false}, {2, -1, tcpP, 80, true}, {3, -1, udpP, 53, true}, {0, 2, tcpP, 80, true}}},
	}
}

// EngineFor returns a translation engine fed with the cluster and a
// case's policies.
func (tp *Topo) EngineFor(c Case) *translate.Engine {
	e := tp.Engine(c.Policies...)
	for _, p := range c.ClusterPolicies {
		e.UpsertClusterPolicy(p)
	}
	return e
}

// RunClusterUpdateWithoutGap changes the priorities and actions of
// ClusterNetworkPolicies 40 times while probe loops run, with no
// NetworkPolicy, so the order of the Admin rules alone decides: an Admin
// Deny of pod2 -> pod0 TCP 80 stays ahead of an Admin rule accepting or
// passing everything to namespace a (equal priorities included: the name
// breaks the tie), and a third Admin policy comes and goes (pod0's
// dispatch group changes). pod2 -> pod0 must never connect and pod1 ->
// pod0 (accepted, or passed on to the default allow) never fail.
func RunClusterUpdateWithoutGap(t *testing.T, newDP NewDataplane, o Options) {
	tp := NewTopo(t, Pods)
	d := newDP(t, tp.Node)
	e := tp.Engine()
	ctx := context.Background()
	step := func(i int) {
		guard := cnp("a-guard", cnpv1.AdminTier, int32(i%3), nsSubject("team", "x"))
		guard.Spec.Ingress = []cnpv1.ClusterNetworkPolicyIngressRule{{Name: "pod2", Action: deny, From: fromPods(Labels("team", "y"), Labels("app", "other")), Protocols: tcpPort(80)}}
		open := cnp("b-open", cnpv1.AdminTier, int32(2+i%4), nsSubject("team", "x"))
		act := []cnpv1.ClusterNetworkPolicyRuleAction{accept, pass}[i%2]
		open.Spec.Ingress = []cnpv1.ClusterNetworkPolicyIngressRule{{Name: "everyone", Action: act, From: []cnpv1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}}, Protocols: tcpPort(80)}}
		e.UpsertClusterPolicy(guard)
		e.UpsertClusterPolicy(open)
		if i%4 < 2 {
			extra := cnp("c-extra", cnpv1.AdminTier, int32(i%7), nsSubject("team", "x"))
			extra.Spec.Ingress = []cnpv1.ClusterNetworkPolicyIngressRule{{Name: fmt.Sprint("r", i), Action: pass, From: fromNS("team", "x"), Protocols: tcpPort(81)}}
			e.UpsertClusterPolicy(extra)
		} else {
			e.DeleteClusterPolicy("c-extra")
		}
		if err := d.Apply(ctx, e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
	}
	step(0)
	tp.Check(t, []Expect{{2, 0, tcpP, 80, false}, {1, 0, tcpP, 80, true}})
	var done atomic.Bool
	var leaks, drops, probes atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		dst := tp.IPs[0][w%2]
		wg.Add(2)
		go func() {
			defer wg.Done()
			for !done.Load() {
				probes.Add(1)
				if tp.Probe(2, dst, tcpP, 80) {
					leaks.Add(1)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for !done.Load() {
				probes.Add(1)
				if !tp.ProbeAllowed(1, dst, tcpP, 80) {
					drops.Add(1)
				}
			}
		}()
	}
	for i := 1; i <= 40; i++ {
		step(i)
		time.Sleep(20 * time.Millisecond)
	}
	done.Store(true)
	wg.Wait()
	if leaks.Load() > 0 || drops.Load() > 0 {
		t.Errorf("during 40 priority and action changes: %d denied connections got through, %d allowed ones were dropped (of %d probes)", leaks.Load(), drops.Load(), probes.Load())
	} else {
		t.Logf("%d probes during 40 ClusterNetworkPolicy priority and action changes: no gap", probes.Load())
	}
	reconcileClean(t, d, "after the changes")
}
