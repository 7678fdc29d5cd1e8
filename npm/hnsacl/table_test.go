package hnsacl

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func tableWorld() ([]*corev1.Pod, []*corev1.Namespace) {
	pods := []*corev1.Pod{
		mkPod("default", "a", map[string]string{"app": "web"}, []string{"10.0.0.1"}, cport("http", corev1.ProtocolTCP, 8080), cport("dns", corev1.ProtocolUDP, 53)),
		mkPod("default", "b", map[string]string{"app": "db"}, []string{"10.0.0.2"}, cport("http", corev1.ProtocolTCP, 9090)),
		mkPod("other", "c", map[string]string{"app": "web"}, []string{"10.0.1.1"}),
	}
	nss := []*corev1.Namespace{mkNS("default", nil), mkNS("other", map[string]string{"team": "x"})}
	return pods, nss
}

type tableCase struct {
	name    string
	pols    []*networkingv1.NetworkPolicy
	opts    Options
	dual    bool     // pods get IPv6 addresses too
	want    []string // rendered fake state (see render)
	wantLog string   // an error log line containing this
}

func TestTableACLs(t *testing.T) {
	all := &metav1.LabelSelector{}
	web := sel("app", "web")
	cases := []tableCase{
		{name: "deny all ingress",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "deny", all, ingressOnly, nil, nil)},
			want: []string{
				"ep-a: Block In prio=4000",
				"ep-b: Block In prio=4000",
			},
		},
		{name: "deny all ingress with host probes",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "deny", all, ingressOnly, nil, nil)},
			opts: Options{HostIPs: []netip.Addr{netip.MustParseAddr("10.0.0.254")}},
			want: []string{
				"ep-a: Allow In prio=100 remote=10.0.0.254",
				"ep-a: Block In prio=4000",
				"ep-b: Allow In prio=100 remote=10.0.0.254",
				"ep-b: Block In prio=4000",
			},
		},
		{name: "allow all ingress",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "allow", web, ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(nil)}, nil)},
			want: []string{
				"ep-a: Allow In prio=200",
				"ep-a: Block In prio=4000",
			},
		},
		{name: "pod selector peer, tcp port",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(peers(podPeer(web)), tcp(5432))}, nil)},
			want: []string{
				"ep-b: Allow In prio=200 proto=6 remote={pods in namespace default with app=web}/4 lport=5432",
				"ep-b: Block In prio=4000",
				"set {pods in namespace default with app=web}/4 IPSET 10.0.0.1",
			},
		},
		{name: "namespace selector peer",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(peers(nsPeer(sel("team", "x"))))}, nil)},
			want: []string{
				"ep-b: Allow In prio=200 remote={pods with (all) in namespaces with team=x}/4",
				"ep-b: Block In prio=4000",
				"set {pods with (all) in namespaces with team=x}/4 IPSET 10.0.1.1",
			},
		},
		{name: "namespace and pod selector, two peers nested",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{
				in(peers(networkingv1.NetworkPolicyPeer{NamespaceSelector: sel("team", "x"), PodSelector: web}, podPeer(web)), tcp(80))}, nil)},
			want: []string{
				"ep-b: Allow In prio=200 proto=6 remote={nested pods with app=web in namespaces with team=x or pods in namespace default with app=web}/4 lport=80",
				"ep-b: Block In prio=4000",
				"set {nested pods with app=web in namespaces with team=x or pods in namespace default with app=web}/4 NESTEDIPSET {pods with app=web in namespaces with team=x}/4,{pods in namespace default with app=web}/4",
				"set {pods in namespace default with app=web}/4 IPSET 10.0.0.1",
				"set {pods with app=web in namespaces with team=x}/4 IPSET 10.0.1.1",
			},
		},
		{name: "named port ingress resolved per endpoint",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", all, ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(nil, namedP(corev1.ProtocolTCP, "http"))}, nil)},
			want: []string{
				"ep-a: Allow In prio=200 proto=6 lport=8080",
				"ep-a: Block In prio=4000",
				"ep-b: Allow In prio=200 proto=6 lport=9090",
				"ep-b: Block In prio=4000",
			},
		},
		{name: "named port egress grouped by port",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("other", "p", all, egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{out(peers(nsPeer(all)), namedP(corev1.ProtocolTCP, "http"))})},
			want: []string{
				"ep-c: Allow Out prio=200 proto=6 remote={named named port http/TCP of pods with (all) in namespaces with (all) port 8080/TCP}/4 rport=8080",
				"ep-c: Allow Out prio=200 proto=6 remote={named named port http/TCP of pods with (all) in namespaces with (all) port 9090/TCP}/4 rport=9090",
				"ep-c: Block Out prio=4000",
				"set {named named port http/TCP of pods with (all) in namespaces with (all) port 8080/TCP}/4 IPSET 10.0.0.1",
				"set {named named port http/TCP of pods with (all) in namespaces with (all) port 9090/TCP}/4 IPSET 10.0.0.2",
			},
		},
		{name: "endPort range",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(nil, portP(corev1.ProtocolTCP, 8000, 8080))}, nil)},
			want: []string{
				"ep-b: Allow In prio=200 proto=6 lport=8000-8080",
				"ep-b: Block In prio=4000",
			},
		},
		{name: "ipBlock with except",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(peers(ipPeer("10.1.0.0/16", "10.1.128.0/17", "10.1.0.0/24")))}, nil)},
			want: []string{
				"ep-b: Allow In prio=200 remote={ipBlock 10.1.0.0/16 except 10.1.0.0/24,10.1.128.0/17}/4",
				"ep-b: Block In prio=4000",
				"set {ipBlock 10.1.0.0/16 except 10.1.0.0/24,10.1.128.0/17}/4 IPSET 10.1.1.0/24,10.1.2.0/23,10.1.4.0/22,10.1.8.0/21,10.1.16.0/20,10.1.32.0/19,10.1.64.0/18",
			},
		},
		{name: "ipBlock 0.0.0.0/0 egress",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", sel("app", "db"), egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{out(peers(ipPeer("0.0.0.0/0", "10.0.0.0/8")), tcp(443))})},
			want: []string{
				"ep-b: Allow Out prio=200 proto=6 remote={ipBlock 0.0.0.0/0 except 10.0.0.0/8}/4 rport=443",
				"ep-b: Block Out prio=4000",
				"set {ipBlock 0.0.0.0/0 except 10.0.0.0/8}/4 IPSET 0.0.0.0/5,8.0.0.0/7,11.0.0.0/8,12.0.0.0/6,16.0.0.0/4,32.0.0.0/3,64.0.0.0/2,128.0.0.0/1",
			},
		},
		{name: "udp and protocol without port",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(nil, portP(corev1.ProtocolUDP, 53, 0), portP(corev1.ProtocolUDP, 0, 0))}, nil)},
			want: []string{
				"ep-b: Allow In prio=200 proto=17",
				"ep-b: Allow In prio=200 proto=17 lport=53",
				"ep-b: Block In prio=4000",
			},
		},
		{name: "sctp supported",
			opts: Options{SCTP: true},
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(nil, portP(corev1.ProtocolSCTP, 2905, 0))}, nil)},
			want: []string{
				"ep-b: Allow In prio=200 proto=132 lport=2905",
				"ep-b: Block In prio=4000",
			},
		},
		{name: "sctp unsupported fails closed",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{
				in(nil, portP(corev1.ProtocolSCTP, 2905, 0)), in(peers(podPeer(web)), portP(corev1.ProtocolSCTP, 2905, 0), tcp(80))}, nil)},
			wantLog: "SCTP is not enforced",
			want: []string{
				"ep-b: Allow In prio=200 proto=6 remote={pods in namespace default with app=web}/4 lport=80",
				"ep-b: Block In prio=4000",
				"set {pods in namespace default with app=web}/4 IPSET 10.0.0.1",
			},
		},
		{name: "egress only",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", web, egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{out(peers(podPeer(sel("app", "db"))), tcp(9090))})},
			want: []string{
				"ep-a: Allow Out prio=200 proto=6 remote={pods in namespace default with app=db}/4 rport=9090",
				"ep-a: Block Out prio=4000",
				"set {pods in namespace default with app=db}/4 IPSET 10.0.0.2",
			},
		},
		{name: "both directions",
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", sel("app", "db"), bothTypes,
				[]networkingv1.NetworkPolicyIngressRule{in(peers(podPeer(web)), tcp(9090))},
				[]networkingv1.NetworkPolicyEgressRule{out(peers(nsPeer(sel("team", "x"))), portP(corev1.ProtocolUDP, 53, 0))})},
			want: []string{
				"ep-b: Allow In prio=200 proto=6 remote={pods in namespace default with app=web}/4 lport=9090",
				"ep-b: Allow Out prio=200 proto=17 remote={pods with (all) in namespaces with team=x}/4 rport=53",
				"ep-b: Block In prio=4000",
				"ep-b: Block Out prio=4000",
				"set {pods in namespace default with app=web}/4 IPSET 10.0.0.1",
				"set {pods with (all) in namespaces with team=x}/4 IPSET 10.0.1.1",
			},
		},
		{name: "untranslatable policy fails closed",
			pols:    []*networkingv1.NetworkPolicy{mkPolicy("default", "bad", web, ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(peers(ipPeer("10.0.0.0/33")))}, nil)},
			wantLog: "translation failed",
			want: []string{
				"ep-a: Block In prio=4000",
				"ep-a: Block Out prio=4000",
			},
		},
		{name: "dual stack: one SetPolicy and ACL per family",
			dual: true,
			pols: []*networkingv1.NetworkPolicy{mkPolicy("default", "p", sel("app", "db"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{in(peers(podPeer(web)), tcp(80))}, nil)},
			want: []string{
				"ep-b: Allow In prio=200 proto=6 remote={pods in namespace default with app=web}/4 lport=80",
				"ep-b: Allow In prio=200 proto=6 remote={pods in namespace default with app=web}/6 lport=80",
				"ep-b: Block In prio=4000",
				"set {pods in namespace default with app=web}/4 IPSET 10.0.0.1",
				"set {pods in namespace default with app=web}/6 IPSET fd00::1",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pods, nss := tableWorld()
			if tc.dual {
				for i, p := range pods {
					v6 := []string{"fd00::1", "fd00::2", "fd00:1::1"}[i]
					p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: v6})
				}
			}
			f := NewFake()
			f.MaxACLsPerCall = 3
			addEndpoints(f, pods...)
			tc.opts.MaxACLsPerCall = 3
			d, logs := newObserved(t, f, tc.opts)
			st := translateAll(pods, nss, tc.pols)
			apply(t, d, st, nil)
			got := render(d, f)
			if tc.want == nil {
				t.Logf("got:\n\t%q", strings.Join(got, "\",\n\t\""))
				return
			}
			if diff := diffLines(got, tc.want); diff != "" {
				t.Errorf("fake HNS state differs:\n%s", diff)
			}
			if tc.wantLog != "" {
				found := false
				for _, e := range logs.FilterMessageSnippet("failing closed").All() {
					for _, fld := range e.Context {
						if strings.Contains(fld.String, tc.wantLog) {
							found = true
						}
					}
				}
				if !found {
					t.Errorf("no error log line mentioning %q", tc.wantLog)
				}
			}
		})
	}
}
