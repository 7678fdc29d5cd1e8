package hnsacl

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// ---- Kubernetes object builders (shared ones: translatetest) ----

var (
	cport  = translatetest.CPort
	mkNS   = translatetest.Namespace
	sel    = translatetest.Labels
	portP  = translatetest.ProtoPort
	namedP = translatetest.Named
)

// mkPod is a pod of this node.
func mkPod(ns, name string, lbls map[string]string, ips []string, ports ...corev1.ContainerPort) *corev1.Pod {
	return translatetest.Pod(ns, name, "node", lbls, ips, ports...)
}

func tcp(port int) networkingv1.NetworkPolicyPort { return portP(corev1.ProtocolTCP, port, 0) }

func podPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

func nsPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func ipPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func in(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports}
}

func out(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports}
}

func peers(ps ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return ps }

func mkPolicy(ns, name string, target *metav1.LabelSelector, types []networkingv1.PolicyType, ing []networkingv1.NetworkPolicyIngressRule, eg []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return translatetest.Policy(ns, name, networkingv1.NetworkPolicySpec{PodSelector: *target, PolicyTypes: types, Ingress: ing, Egress: eg})
}

var (
	ingressOnly = translatetest.IngressOnly
	egressOnly  = translatetest.EgressOnly
	bothTypes   = translatetest.BothTypes
)

// ---- fake HNS helpers ----

func epID(p *corev1.Pod) string { return "ep-" + p.Name }

func addEndpoints(f *Fake, pods ...*corev1.Pod) {
	for _, p := range pods {
		var ips []netip.Addr
		for _, ip := range p.Status.PodIPs {
			ips = append(ips, netip.MustParseAddr(ip.IP))
		}
		f.AddEndpoint(epID(p), ips...)
	}
}

func allLocal(*corev1.Pod) bool { return true }

func newObserved(t *testing.T, f *Fake, o Options) (*Dataplane, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	o.HNS = f
	o.Logger = zap.New(core)
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d, logs
}

var idRE = regexp.MustCompile(`acn-[a-z0-9]+-[46]`)

// symbols names every SetPolicy by what it holds: {comment}/4.
func symbols(d *Dataplane, f *Fake) map[string]string {
	sym := map[string]string{}
	for id, sp := range f.Sets() {
		e := d.want[id]
		c := "?"
		if e != nil {
			c = e.comment
		}
		kind := ""
		switch {
		case sp.Type == NestedIPSet:
			kind = "nested "
		case strings.HasPrefix(id, Prefix+"p"):
			kind = "named "
		}
		sym[id] = "{" + kind + c + "}/" + id[len(id)-1:]
	}
	return sym
}

// render describes the fake's state: one line per SetPolicy and per ACL
// (IDs replaced by symbols), sorted.
func render(d *Dataplane, f *Fake) []string {
	sym := symbols(d, f)
	repl := func(s string) string {
		return idRE.ReplaceAllStringFunc(s, func(id string) string {
			if v, ok := sym[id]; ok {
				return v
			}
			return id
		})
	}
	var lines []string
	for id, sp := range f.Sets() {
		lines = append(lines, fmt.Sprintf("set %s %s %s", sym[id], sp.Type, repl(sp.Values)))
	}
	for _, ep := range f.EndpointIDs() {
		for _, a := range f.ACLs(ep) {
			a.ID = ""
			s := a.String()
			lines = append(lines, ep+": "+repl(strings.TrimSuffix(s, " id=")))
		}
	}
	sort.Strings(lines)
	return lines
}

func apply(t *testing.T, d *Dataplane, st *policy.State, ch *policy.Changes) {
	t.Helper()
	if err := d.Apply(context.Background(), st, ch); err != nil {
		t.Fatal(err)
	}
}

func translateAll(pods []*corev1.Pod, nss []*corev1.Namespace, pols []*networkingv1.NetworkPolicy) *policy.State {
	return translate.Translate(translate.Snapshot{Pods: pods, Namespaces: nss, Policies: pols}, translate.Options{IsLocal: allLocal})
}

func diffLines(got, want []string) string {
	g, w := map[string]bool{}, map[string]bool{}
	for _, l := range got {
		g[l] = true
	}
	for _, l := range want {
		w[l] = true
	}
	var s strings.Builder
	for _, l := range want {
		if !g[l] {
			fmt.Fprintf(&s, "  missing: %s\n", l)
		}
	}
	for _, l := range got {
		if !w[l] {
			fmt.Fprintf(&s, "  extra:   %s\n", l)
		}
	}
	return s.String()
}
