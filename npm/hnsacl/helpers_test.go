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
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
)

// ---- Kubernetes object builders ----

type cport struct {
	name  string
	proto corev1.Protocol
	port  int32
}

func mkPod(ns, name string, lbls map[string]string, ips []string, ports ...cport) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls}}
	p.Spec.NodeName = "node"
	c := corev1.Container{Name: "c"}
	for _, cp := range ports {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: cp.name, Protocol: cp.proto, ContainerPort: cp.port})
	}
	p.Spec.Containers = []corev1.Container{c}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	p.Status.Phase = corev1.PodRunning
	return p
}

func mkNS(name string, lbls map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
}

func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func portP(proto corev1.Protocol, port int, end int) networkingv1.NetworkPolicyPort {
	pp := networkingv1.NetworkPolicyPort{Protocol: &proto}
	if port != 0 {
		p := intstr.FromInt32(int32(port))
		pp.Port = &p
	}
	if end != 0 {
		e := int32(end)
		pp.EndPort = &e
	}
	return pp
}

func tcp(port int) networkingv1.NetworkPolicyPort { return portP(corev1.ProtocolTCP, port, 0) }

func namedP(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Port: &p, Protocol: &proto}
}

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
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	np.Spec.PodSelector = *target
	np.Spec.PolicyTypes = types
	np.Spec.Ingress = ing
	np.Spec.Egress = eg
	return np
}

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	bothTypes   = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
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
