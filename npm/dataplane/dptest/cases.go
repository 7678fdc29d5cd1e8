//go:build linux

package dptest

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
	"github.com/open-acn/acn/npm/translate/translatetest"
)

// NodeName is the node every test pod runs on.
const NodeName = "node"

// Pods is the number of pods of the cases' cluster.
const Pods = 4

// Expect is one probe and its expected outcome: a new connection from
// pod Src to pod Dst (index -1: the off-cluster namespace), in both
// families.
type Expect struct {
	Src, Dst int
	Proto    policy.Protocol
	Port     int
	Allow    bool
}

// Case is one cluster state and the decisions the kernel must make.
type Case struct {
	Name            string
	Policies        []*networkingv1.NetworkPolicy
	ClusterPolicies []*cnpv1.ClusterNetworkPolicy
	// NoOracle says why the oracle cannot check the case's table ("": it can).
	NoOracle string
	Expect   []Expect
}

// Pod builds test pod i of the topology (IPs of pod i, node NodeName).
func (tp *Topo) Pod(i int, ns string, lbls map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return translatetest.Pod(ns, fmt.Sprintf("pod%d", i), NodeName, lbls, tp.IPs[i][:], ports...)
}

// Cluster is the namespaces and pods every case shares:
//
//	ns a (team=x): pod0 app=web (container ports http=80/TCP, dns=53/UDP), pod1 app=cli
//	ns b (team=y): pod2 app=other tier=db, pod3 app=cli
func (tp *Topo) Cluster() ([]*corev1.Namespace, []*corev1.Pod) {
	nss := []*corev1.Namespace{
		translatetest.Namespace("a", map[string]string{"team": "x"}),
		translatetest.Namespace("b", map[string]string{"team": "y"}),
	}
	pods := []*corev1.Pod{
		tp.Pod(0, "a", map[string]string{"app": "web"},
			translatetest.CPort("http", corev1.ProtocolTCP, 80), translatetest.CPort("dns", corev1.ProtocolUDP, 53)),
		tp.Pod(1, "a", map[string]string{"app": "cli"}),
		tp.Pod(2, "b", map[string]string{"app": "other", "tier": "db"}),
		tp.Pod(3, "b", map[string]string{"app": "cli"}),
	}
	return nss, pods
}

// Engine returns a translation engine fed with the cluster and policies.
func (tp *Topo) Engine(pols ...*networkingv1.NetworkPolicy) *translate.Engine {
	e := translate.NewEngine(translate.Options{NodeName: NodeName})
	nss, pods := tp.Cluster()
	for _, n := range nss {
		e.UpsertNamespace(n)
	}
	for _, p := range pods {
		e.UpsertPod(p)
	}
	for _, p := range pols {
		e.UpsertPolicy(p)
	}
	return e
}

// ---- builders ----

// IntPort and NamedPort build policy ports.
func IntPort(p int) *intstr.IntOrString         { v := intstr.FromInt32(int32(p)); return &v }
func NamedPort(s string) *intstr.IntOrString    { v := intstr.FromString(s); return &v }
func protoP(p corev1.Protocol) *corev1.Protocol { return &p }
func int32p(v int32) *int32                     { return &v }

// Labels is a matchLabels selector.
func Labels(kv ...string) *metav1.LabelSelector { return translatetest.Labels(kv...) }

func ports(ps ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return ps }

var (
	expr = translatetest.Expr
	np   = translatetest.Policy
	tcp  = translatetest.TCP

	egressOnly  = translatetest.EgressOnly
	ingressOnly = translatetest.IngressOnly
	both        = translatetest.BothTypes
)

const (
	tcpP  = policy.TCP
	udpP  = policy.UDP
	sctpP = policy.SCTP
)

// BasicPolicies: a/web admits only app=cli of its namespace on the named
// port http, UDP 53 and SCTP 80; every pod of b may only egress to
// 192.168.7.0/24 and fd77::/64 on TCP 81.
func BasicPolicies() []*networkingv1.NetworkPolicy {
	return []*networkingv1.NetworkPolicy{
		np("a", "web", networkingv1.NetworkPolicySpec{
			PodSelector: *Labels("app", "web"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: Labels("app", "cli")}},
				Ports: ports(networkingv1.NetworkPolicyPort{Port: NamedPort("http")},
					networkingv1.NetworkPolicyPort{Protocol: protoP(corev1.ProtocolUDP), Port: IntPort(53)},
					networkingv1.NetworkPolicyPort{Protocol: protoP(corev1.ProtocolSCTP), Port: IntPort(80)}),
			}},
		}),
		np("b", "out", networkingv1.NetworkPolicySpec{
			PolicyTypes: egressOnly,
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.7.0/24"}}, {IPBlock: &networkingv1.IPBlock{CIDR: "fd77::/64"}}},
				Ports: ports(tcp(81)),
			}},
		}),
	}
}

// BasicExpect are the decisions under BasicPolicies.
var BasicExpect = []Expect{
	{1, 0, tcpP, 80, true},   // cli -> web on the named port http
	{1, 0, tcpP, 81, false},  // not an allowed port
	{1, 0, udpP, 53, true},   // UDP
	{1, 0, sctpP, 80, true},  // SCTP
	{2, 0, tcpP, 80, false},  // not from cli (and b's egress is restricted)
	{-1, 0, tcpP, 80, false}, // off-cluster is never a pod-selector peer
	{-1, 1, tcpP, 80, true},  // cli is not selected: open
	{1, 2, tcpP, 80, true},   // b/out is egress-only: ingress open
	{2, -1, tcpP, 81, true},  // ipBlock egress on 81
	{2, -1, tcpP, 80, false}, // not 81
	{2, 1, tcpP, 81, false},  // not in the ipBlock
	{2, -1, udpP, 53, false},
	{3, -1, tcpP, 81, true},
}

// Cases is the shared table: every semantic of the NPM core issue that a
// kernel must enforce, in both families.
func Cases() []Case {
	return append([]Case{
		{Name: "named-port-udp-sctp-ipblock-egress", Policies: BasicPolicies(), Expect: BasicExpect},
		{Name: "default-deny-ingress-namespace",
			Policies: []*networkingv1.NetworkPolicy{np("a", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: ingressOnly})},
			Expect: []Expect{
				{2, 0, tcpP, 80, false}, {2, 1, tcpP, 80, false}, {1, 0, tcpP, 80, false}, {-1, 1, tcpP, 80, false},
				{2, 0, udpP, 53, false}, {3, 1, sctpP, 80, false},
				{0, 2, tcpP, 80, true}, {1, 3, tcpP, 80, true}, {0, -1, tcpP, 80, true}, {3, 2, udpP, 53, true},
			}},
		{Name: "allow-all-rule-is-additive-with-deny",
			Policies: []*networkingv1.NetworkPolicy{
				np("a", "deny", networkingv1.NetworkPolicySpec{PolicyTypes: ingressOnly}),
				np("a", "all", networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{}}}),
			},
			Expect: []Expect{{2, 0, tcpP, 80, true}, {-1, 1, tcpP, 81, true}, {3, 0, udpP, 53, true}, {2, 1, sctpP, 80, true}}},
		{Name: "namespace-and-pod-selector-together",
			Policies: []*networkingv1.NetworkPolicy{np("a", "web", networkingv1.NetworkPolicySpec{
				PodSelector: *Labels("app", "web"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
					{NamespaceSelector: Labels("team", "y"), PodSelector: Labels("app", "cli")}}}},
			})},
			Expect: []Expect{{3, 0, tcpP, 80, true}, {3, 0, udpP, 53, true}, {2, 0, tcpP, 80, false}, {1, 0, tcpP, 80, false},
				{-1, 0, tcpP, 80, false}, {3, 1, tcpP, 80, true}}},
		{Name: "match-expressions-notin-doesnotexist-in",
			Policies: []*networkingv1.NetworkPolicy{
				np("a", "web", networkingv1.NetworkPolicySpec{
					PodSelector: *expr("app", metav1.LabelSelectorOpIn, "web"),
					Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
						{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: expr("app", metav1.LabelSelectorOpNotIn, "cli")}}}},
				}),
				np("b", "eg", networkingv1.NetworkPolicySpec{
					PodSelector: *expr("tier", metav1.LabelSelectorOpDoesNotExist),
					PolicyTypes: egressOnly,
					Egress: []networkingv1.NetworkPolicyEgressRule{{
						To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: expr("team", metav1.LabelSelectorOpIn, "x")}},
						Ports: ports(tcp(80)),
					}},
				}),
			},
			Expect: []Expect{
				{2, 0, tcpP, 80, true},   // app=other NotIn (cli)
				{1, 0, tcpP, 80, false},  // cli
				{3, 0, tcpP, 80, false},  // cli (egress allows, ingress does not)
				{-1, 0, tcpP, 80, false}, // a negation never matches off-cluster addresses
				{3, 1, tcpP, 80, true}, {3, 1, tcpP, 81, false}, {3, 2, tcpP, 80, false}, {3, -1, tcpP, 80, false},
				{2, -1, tcpP, 80, true}, // pod2 has a tier: not selected by b/eg
			}},
		{Name: "ipblock-except-and-port-range",
			Policies: []*networkingv1.NetworkPolicy{np("a", "web", networkingv1.NetworkPolicySpec{
				PodSelector: *Labels("app", "web"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{
						{IPBlock: &networkingv1.IPBlock{CIDR: "10.9.0.0/16", Except: []string{"10.9.1.0/24"}}},
						{IPBlock: &networkingv1.IPBlock{CIDR: "fd09::/32", Except: []string{"fd09:0:1::/48"}}},
					},
					Ports: ports(networkingv1.NetworkPolicyPort{Port: IntPort(80), EndPort: int32p(81)}),
				}},
			})},
			Expect: []Expect{{2, 0, tcpP, 80, true}, {2, 0, tcpP, 81, true}, {3, 0, tcpP, 81, true}, {1, 0, tcpP, 80, false},
				{-1, 0, tcpP, 80, false}, {2, 0, udpP, 53, false}, {2, 0, sctpP, 80, false}}},
		{Name: "egress-deny-all-but-dns-to-web",
			Policies: []*networkingv1.NetworkPolicy{np("b", "eg", networkingv1.NetworkPolicySpec{
				PolicyTypes: egressOnly,
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: Labels("team", "x"), PodSelector: Labels("app", "web")}},
					Ports: ports(networkingv1.NetworkPolicyPort{Protocol: protoP(corev1.ProtocolUDP), Port: IntPort(53)}),
				}},
			})},
			Expect: []Expect{{2, 0, udpP, 53, true}, {3, 0, udpP, 53, true}, {2, 0, tcpP, 80, false}, {3, 1, udpP, 53, false},
				{2, -1, tcpP, 80, false}, {3, 2, tcpP, 80, false}, {0, 2, tcpP, 80, true}, {-1, 3, tcpP, 81, true}}},
		{Name: "egress-to-everything-except-a-cidr",
			Policies: []*networkingv1.NetworkPolicy{np("a", "out", networkingv1.NetworkPolicySpec{
				PodSelector: *Labels("app", "cli"),
				PolicyTypes: egressOnly,
				Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{
					{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.9.0.0/24"}}},
					{IPBlock: &networkingv1.IPBlock{CIDR: "::/0", Except: []string{"fd09::/48"}}},
				}}},
			})},
			Expect: []Expect{{1, 0, tcpP, 80, false}, {1, 2, tcpP, 80, true}, {1, -1, tcpP, 81, true}, {1, 3, udpP, 53, true},
				{1, 0, sctpP, 80, false}, {0, 1, tcpP, 80, true}}},
		{Name: "ingress-and-egress-types-two-policies-additive",
			Policies: []*networkingv1.NetworkPolicy{
				np("a", "both", networkingv1.NetworkPolicySpec{
					PodSelector: *Labels("app", "web"),
					PolicyTypes: both,
					Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: Labels("app", "cli")}}}},
					Egress: []networkingv1.NetworkPolicyEgressRule{{
						To:    []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: &metav1.LabelSelector{}}},
						Ports: ports(tcp(81)),
					}},
				}),
				np("a", "extra", networkingv1.NetworkPolicySpec{
					PodSelector: *Labels("app", "web"),
					Ingress: []networkingv1.NetworkPolicyIngressRule{{
						From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: Labels("team", "y")}},
						Ports: ports(tcp(81)),
					}},
				}),
			},
			Expect: []Expect{{1, 0, tcpP, 80, true}, {2, 0, tcpP, 80, false}, {2, 0, tcpP, 81, true}, {3, 0, tcpP, 81, true},
				{0, 2, tcpP, 81, true}, {0, 2, tcpP, 80, false}, {0, -1, tcpP, 81, false}, {-1, 0, tcpP, 81, false}, {0, 1, udpP, 53, false}}},
		{Name: "protocols-sctp-and-any-udp-port",
			Policies: []*networkingv1.NetworkPolicy{np("a", "proto", networkingv1.NetworkPolicySpec{
				PodSelector: *Labels("app", "web"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{
					{Ports: ports(networkingv1.NetworkPolicyPort{Protocol: protoP(corev1.ProtocolSCTP), Port: IntPort(80)})},
					{Ports: ports(networkingv1.NetworkPolicyPort{Protocol: protoP(corev1.ProtocolUDP)})},
				},
			})},
			Expect: []Expect{{2, 0, sctpP, 80, true}, {-1, 0, sctpP, 80, true}, {2, 0, udpP, 53, true}, {2, 0, tcpP, 80, false}, {1, 0, tcpP, 81, false}}},
	}, ClusterCases()...)
}
