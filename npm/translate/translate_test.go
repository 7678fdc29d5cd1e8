package translate

import (
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/npm/translate/translatetest"
)

// world is the cluster every table case runs against. Node n1 hosts
// a/web, a/db, c/x (dual-stack) and the host-network and IP-less pods.
func world() Snapshot {
	host := mkPod("a", "host", "n1", map[string]string{"app": "web"}, []string{"192.168.0.10"}, cport("http", corev1.ProtocolTCP, 8080))
	host.Spec.HostNetwork = true
	return Snapshot{
		Namespaces: []*corev1.Namespace{
			mkNS("a", map[string]string{"team": "x"}),
			mkNS("b", map[string]string{"team": "y"}),
			mkNS("c", nil),
		},
		Pods: []*corev1.Pod{
			mkPod("a", "web", "n1", map[string]string{"app": "web"}, []string{"10.0.0.1"}, cport("http", corev1.ProtocolTCP, 80), cport("dns", corev1.ProtocolUDP, 53)),
			mkPod("a", "db", "n1", map[string]string{"app": "db", "tier": "back"}, []string{"10.0.0.2"}, cport("http", corev1.ProtocolTCP, 5432)),
			mkPod("b", "web", "n2", map[string]string{"app": "web"}, []string{"10.0.1.1"}, cport("http", corev1.ProtocolTCP, 8080), cport("http", corev1.ProtocolUDP, 8081)),
			mkPod("b", "cli", "n2", map[string]string{"app": "cli"}, []string{"10.0.1.2"}),
			mkPod("c", "x", "n1", nil, []string{"10.0.2.1", "fd00::21"}),
			host,
			mkPod("a", "pending", "n1", map[string]string{"app": "web"}, nil),
		},
	}
}

type tcase struct {
	name string
	pols []*networkingv1.NetworkPolicy
	want string
}

var (
	pEgress = translatetest.EgressOnly
	pBoth   = translatetest.BothTypes
	udp     = corev1.ProtocolUDP
	sctp    = corev1.ProtocolSCTP
)

func TestTranslateTable(t *testing.T) {
	cases := []tcase{
		{
			name: "no policy: nothing isolated",
			want: "",
		},
		{
			name: "deny all ingress (empty selector, no rules, default policyTypes); host-network and IP-less pods never selected",
			pols: []*networkingv1.NetworkPolicy{np("a", "deny", networkingv1.NetworkPolicySpec{})},
			want: `endpoint a/db [10.0.0.2] in=[a/deny] eg=[]
endpoint a/web [10.0.0.1] in=[a/deny] eg=[]
policy a/deny ingress=true egress=false
`,
		},
		{
			name: "policyTypes default to Egress too when egress rules exist; empty egress rule allows all",
			pols: []*networkingv1.NetworkPolicy{np("a", "p", networkingv1.NetworkPolicySpec{
				PodSelector: *sel("app", "web"),
				Egress:      []networkingv1.NetworkPolicyEgressRule{{}},
			})},
			want: `endpoint a/web [10.0.0.1] in=[a/p] eg=[a/p]
policy a/p ingress=true egress=true
  egress 0: any
`,
		},
		{
			name: "egress only, no rules: deny egress, ingress open",
			pols: []*networkingv1.NetworkPolicy{np("a", "p", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "db"), PolicyTypes: pEgress})},
			want: `endpoint a/db [10.0.0.2] in=[] eg=[a/p]
policy a/p ingress=false egress=true
`,
		},
		{
			name: "empty ingress rule allows all; both types",
			pols: []*networkingv1.NetworkPolicy{np("a", "p", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "db"), PolicyTypes: pBoth,
				Ingress: []networkingv1.NetworkPolicyIngressRule{{}}})},
			want: `endpoint a/db [10.0.0.2] in=[a/p] eg=[a/p]
policy a/p ingress=true egress=true
  ingress 0: any
`,
		},
		{
			name: "podSelector peer is same-namespace; namespaceSelector peer; both together; the host-network a/host (app=web) is never a peer",
			pols: []*networkingv1.NetworkPolicy{np("a", "p", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "db"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: sel("app", "web")},
					{NamespaceSelector: sel("team", "y")},
					{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: sel("app", "web")},
				}}}})},
			want: `endpoint a/db [10.0.0.2] in=[a/p] eg=[]
policy a/p ingress=true egress=false
  ingress 0: [10.0.0.1] [10.0.1.1 10.0.1.2] [10.0.0.1 10.0.1.1]
`,
		},
		{
			name: "matchExpressions In / NotIn (multi-value conjunction, matches pods lacking the key) / Exists / DoesNotExist",
			pols: []*networkingv1.NetworkPolicy{np("a", "p", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "db"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{
					{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: expr("app", metav1.LabelSelectorOpIn, "cli", "db")}}},
					{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: expr("app", metav1.LabelSelectorOpNotIn, "web", "cli")}}},
					{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: expr("tier", metav1.LabelSelectorOpExists)}}},
					{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}, PodSelector: expr("app", metav1.LabelSelectorOpDoesNotExist)}}},
					{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: expr("team", metav1.LabelSelectorOpNotIn, "x")}}},
				}})},
			want: `endpoint a/db [10.0.0.2] in=[a/p] eg=[]
policy a/p ingress=true egress=false
  ingress 0: [10.0.0.2 10.0.1.2]
  ingress 1: [10.0.0.2 10.0.2.1 fd00::21]
  ingress 2: [10.0.0.2]
  ingress 3: [10.0.2.1 fd00::21]
  ingress 4: [10.0.1.1 10.0.1.2 10.0.2.1 fd00::21]
`,
		},
		{
			name: "namespace selector on the automatic kubernetes.io/metadata.name label",
			pols: []*networkingv1.NetworkPolicy{np("a", "p", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "db"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel(NamespaceNameLabel, "c")}}}}})},
			want: `endpoint a/db [10.0.0.2] in=[a/p] eg=[]
policy a/p ingress=true egress=false
  ingress 0: [10.0.2.1 fd00::21]
`,
		},
		{
			name: "ports: numeric (default TCP), UDP, SCTP, endPort range, protocol without port",
			pols: []*networkingv1.NetworkPolicy{np("a", "p", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "db"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{tcp(80), portP(udp, 53, 0), portP(sctp, 9000, 9010), portP(udp, 0, 0)}}}})},
			want: `endpoint a/db [10.0.0.2] in=[a/p] eg=[]
policy a/p ingress=true egress=false
  ingress 0: any port 80/TCP port 53/UDP port 9000-9010/SCTP port any/UDP
`,
		},
		{
			name: "named port on ingress resolves per selected (destination) pod, protocol-aware",
			pols: []*networkingv1.NetworkPolicy{np("a", "p", networkingv1.NetworkPolicySpec{
				Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{named("", "http"), named(udp, "dns"), named(udp, "http")}}}})},
			want: `endpoint a/db [10.0.0.2] in=[a/p] eg=[]
endpoint a/web [10.0.0.1] in=[a/p] eg=[]
policy a/p ingress=true egress=false
  ingress 0: any port http/TCP=[10.0.0.1,tcp:80 10.0.0.2,tcp:5432] port dns/UDP=[10.0.0.1,udp:53] port http/UDP=[]
`,
		},
		{
			name: "named port on egress resolves on the peer pods; all pods when the peer is an ipBlock",
			pols: []*networkingv1.NetworkPolicy{np("a", "p", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "web"), PolicyTypes: pEgress,
				Egress: []networkingv1.NetworkPolicyEgressRule{
					{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "y")}}, Ports: []networkingv1.NetworkPolicyPort{named("", "http"), named(udp, "http")}},
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/16"}}}, Ports: []networkingv1.NetworkPolicyPort{named("", "http")}},
				}})},
			want: `endpoint a/web [10.0.0.1] in=[] eg=[a/p]
policy a/p ingress=false egress=true
  egress 0: [10.0.1.1 10.0.1.2] port http/TCP=[10.0.1.1,tcp:8080] port http/UDP=[10.0.1.1,udp:8081]
  egress 1: [10.0.0.0/16] port http/TCP=[10.0.0.1,tcp:80 10.0.0.2,tcp:5432 10.0.1.1,tcp:8080]
`,
		},
		{
			name: "ipBlock with except (overlapping excepts, except outside cidr ignored), 0.0.0.0/0 and ::/0 split into /1",
			pols: []*networkingv1.NetworkPolicy{np("c", "p", networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{}, PolicyTypes: pEgress,
				Egress: []networkingv1.NetworkPolicyEgressRule{
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.128.0.0/9", "10.0.0.0/9", "10.64.0.0/10", "192.168.0.0/16"}}}}},
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}}}}},
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}, {IPBlock: &networkingv1.IPBlock{CIDR: "::/0"}}}},
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "fd00::/64", Except: []string{"fd00::/65"}}}}},
				}})},
			want: `endpoint c/x [10.0.2.1 fd00::21] in=[] eg=[c/p]
policy c/p ingress=false egress=true
  egress 0: []
  egress 1: [0.0.0.0/5 8.0.0.0/7 11.0.0.0/8 12.0.0.0/6 16.0.0.0/4 32.0.0.0/3 64.0.0.0/2 128.0.0.0/1]
  egress 2: [0.0.0.0/1 128.0.0.0/1] [::/1 8000::/1]
  egress 3: [fd00::8000:0:0:0/65]
`,
		},
		{
			name: "policies are additive; node-local: only this node's pods become endpoints",
			pols: []*networkingv1.NetworkPolicy{
				np("a", "p1", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "web"), Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{tcp(80)}}}}),
				np("a", "p2", networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{}, Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{tcp(443)}}}}),
				np("b", "p3", networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{}}),
			},
			want: `endpoint a/db [10.0.0.2] in=[a/p2] eg=[]
endpoint a/web [10.0.0.1] in=[a/p1 a/p2] eg=[]
policy a/p1 ingress=true egress=false
  ingress 0: any port 80/TCP
policy a/p2 ingress=true egress=false
  ingress 0: any port 443/TCP
policy b/p3 ingress=true egress=false
`,
		},
		{
			name: "malformed CIDR fails closed (both directions, no rules) and does not stop other policies",
			pols: []*networkingv1.NetworkPolicy{
				np("a", "bad", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "web"), Ingress: []networkingv1.NetworkPolicyIngressRule{
					{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.300/8"}}}}}}),
				np("a", "good", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "db"), Ingress: []networkingv1.NetworkPolicyIngressRule{{}}}),
			},
			want: `endpoint a/db [10.0.0.2] in=[a/good] eg=[]
endpoint a/web [10.0.0.1] in=[a/bad] eg=[a/bad]
policy a/bad ingress=true egress=true FAILED
policy a/good ingress=true egress=false
  ingress 0: any
`,
		},
		{
			name: "invalid selector fails closed for the whole namespace",
			pols: []*networkingv1.NetworkPolicy{
				np("a", "bad", networkingv1.NetworkPolicySpec{PodSelector: *expr("app", "Bogus", "x"), Ingress: []networkingv1.NetworkPolicyIngressRule{{}}}),
			},
			want: `endpoint a/db [10.0.0.2] in=[a/bad] eg=[a/bad]
endpoint a/web [10.0.0.1] in=[a/bad] eg=[a/bad]
policy a/bad ingress=true egress=true FAILED
`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zap.ErrorLevel)
			s := world()
			s.Policies = tc.pols
			got := render(Translate(s, Options{NodeName: "n1", Logger: zap.New(core)}))
			if got != tc.want {
				t.Errorf("model mismatch\n--- got\n%s--- want\n%s", got, tc.want)
			}
			if strings.Contains(tc.want, "FAILED") && logs.Len() == 0 {
				t.Errorf("failed policy not logged at error")
			}
			// The incremental engine, fed in another order, agrees.
			e := NewEngine(Options{NodeName: "n1"})
			for _, p := range tc.pols {
				e.UpsertPolicy(p)
			}
			for _, p := range s.Pods {
				e.UpsertPod(p)
			}
			for _, n := range s.Namespaces {
				e.UpsertNamespace(n)
			}
			if got2 := render(e.State()); got2 != tc.want {
				t.Errorf("engine (policies first) mismatch\n--- got\n%s--- want\n%s", got2, tc.want)
			}
		})
	}
}

func TestSetsShared(t *testing.T) {
	s := world()
	s.Policies = []*networkingv1.NetworkPolicy{
		np("a", "p1", networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "web")}}}}}),
		np("a", "p2", networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"web"}}}}}}}}}),
		np("a", "p3", networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "web")}}}}}),
	}
	st := Translate(s, Options{NodeName: "n1"})
	if st.Policies["a/p1"].IngressRules[0].Peers[0] != st.Policies["a/p3"].IngressRules[0].Peers[0] {
		t.Errorf("identical selectors do not share a set")
	}
	if len(st.Sets) != 2 { // app=web and app in (web) are different canonical strings
		t.Errorf("got %d sets, want 2", len(st.Sets))
	}
	for id, set := range st.Sets {
		if len(id) != 13 || set.Comment == "" {
			t.Errorf("set %q: bad id or empty comment %q", id, set.Comment)
		}
	}
}

func TestSubtractPrefixes(t *testing.T) {
	for _, tc := range []struct {
		cidr   string
		except []string
		want   string
	}{
		{"10.0.0.0/24", nil, "10.0.0.0/24"},
		{"10.0.0.0/24", []string{"10.0.0.0/24"}, ""},
		{"10.0.0.0/24", []string{"10.0.0.0/8"}, ""},
		{"10.0.0.0/24", []string{"10.0.0.128/25", "10.0.0.0/26"}, "10.0.0.64/26"},
		{"10.0.0.0/30", []string{"10.0.0.1/32"}, "10.0.0.0/32 10.0.0.2/31"},
		{"0.0.0.0/0", nil, "0.0.0.0/1 128.0.0.0/1"},
		{"::/0", []string{"8000::/1"}, "::/1"},
	} {
		var ex []netip.Prefix
		for _, e := range tc.except {
			ex = append(ex, netip.MustParsePrefix(e))
		}
		var parts []string
		for _, p := range SubtractPrefixes(netip.MustParsePrefix(tc.cidr), ex) {
			parts = append(parts, p.String())
		}
		if got := strings.Join(parts, " "); got != tc.want {
			t.Errorf("%s except %v = %q, want %q", tc.cidr, tc.except, got, tc.want)
		}
	}
}
