//go:build linux

package iptables

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
)

func kpod(tp *topo, i int, ns string, lbls map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("pod%d", i), Labels: lbls}}
	p.Spec.NodeName = "node"
	p.Spec.Containers = []corev1.Container{{Name: "c", Ports: ports}}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = tp.ips[i][0]
	p.Status.PodIPs = []corev1.PodIP{{IP: tp.ips[i][0]}, {IP: tp.ips[i][1]}}
	return p
}

func iport(p int) *intstr.IntOrString          { v := intstr.FromInt32(int32(p)); return &v }
func sport(s string) *intstr.IntOrString       { v := intstr.FromString(s); return &v }
func proto(p corev1.Protocol) *corev1.Protocol { return &p }

// basicEngine: pod0 a/web (named port http=80), pod1 a/cli, pod2 b/other.
//   - a/web: ingress to app=web only from app=cli on http (named), UDP 53, SCTP 80.
//   - b/out: egress of every pod in b only to 192.168.7.0/24 (and fd77::/64) on TCP 81.
func basicEngine(tp *topo) *translate.Engine {
	e := translate.NewEngine(translate.Options{NodeName: "node"})
	e.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}})
	e.UpsertNamespace(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "b"}})
	e.UpsertPod(kpod(tp, 0, "a", map[string]string{"app": "web"}, corev1.ContainerPort{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}))
	e.UpsertPod(kpod(tp, 1, "a", map[string]string{"app": "cli"}))
	e.UpsertPod(kpod(tp, 2, "b", map[string]string{"app": "other"}))
	e.UpsertPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web"}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cli"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Port: sport("http")}, {Protocol: proto(corev1.ProtocolUDP), Port: iport(53)}, {Protocol: proto(corev1.ProtocolSCTP), Port: iport(80)}},
		}},
	}})
	e.UpsertPolicy(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "out"}, Spec: networkingv1.NetworkPolicySpec{
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
		Egress: []networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.168.7.0/24"}}, {IPBlock: &networkingv1.IPBlock{CIDR: "fd77::/64"}}},
			Ports: []networkingv1.NetworkPolicyPort{{Port: iport(81)}},
		}},
	}})
	return e
}

type expect struct {
	src   int // pod index, -1 external
	dst   int // pod index, -1 external
	proto policy.Protocol
	port  int
	allow bool
}

var basicExpect = []expect{
	{1, 0, policy.TCP, 80, true},   // cli -> web on named port http
	{1, 0, policy.TCP, 81, false},  // not an allowed port
	{1, 0, policy.UDP, 53, true},   // UDP
	{1, 0, policy.SCTP, 80, true},  // SCTP
	{2, 0, policy.TCP, 80, false},  // not from cli (and b's egress is restricted)
	{-1, 0, policy.TCP, 80, false}, // off-cluster is never a pod-selector peer
	{-1, 1, policy.TCP, 80, true},  // cli is not selected: open
	{1, 2, policy.TCP, 80, true},   // b/out is egress-only: ingress open
	{2, -1, policy.TCP, 81, true},  // ipBlock egress on 81
	{2, -1, policy.TCP, 80, false}, // not 81
	{2, 1, policy.TCP, 81, false},  // not in the ipBlock
	{2, -1, policy.UDP, 53, false},
}

func (tp *topo) addr(i, fam int) string {
	if i < 0 {
		return []string{extV4, extV6}[fam]
	}
	return tp.ips[i][fam]
}

// check runs every expectation in both families, in parallel.
func (tp *topo) check(t *testing.T, exps []expect) {
	t.Helper()
	type res struct {
		e   expect
		fam int
		got bool
	}
	var wg sync.WaitGroup
	out := make(chan res, len(exps)*2)
	for _, e := range exps {
		for fam := 0; fam < 2; fam++ {
			wg.Add(1)
			go func(e expect, fam int) {
				defer wg.Done()
				out <- res{e, fam, tp.probeWant(e.src, tp.addr(e.dst, fam), e.proto, e.port, e.allow)}
			}(e, fam)
		}
	}
	wg.Wait()
	close(out)
	for r := range out {
		if r.got != r.e.allow {
			t.Errorf("pod%d -> pod%d %s/%d (IPv%d): allowed=%v, want %v", r.e.src, r.e.dst, r.e.proto, r.e.port, 4+2*r.fam, r.got, r.e.allow)
		}
	}
}

func forEachBackend(t *testing.T, f func(t *testing.T, mode Mode)) {
	for _, m := range []Mode{ModeNFT, ModeLegacy} {
		t.Run(string(m), func(t *testing.T) { f(t, m) })
	}
}

// TestKernelAllowDeny programs a model, reads it back and sends real TCP,
// UDP and SCTP packets through the node, in both families, on both
// backends; then reconcile finds nothing to repair.
func TestKernelAllowDeny(t *testing.T) {
	forEachBackend(t, func(t *testing.T, mode Mode) {
		tp := newTopo(t, 3)
		// Before any policy everything is open.
		tp.check(t, []expect{{2, 0, policy.TCP, 80, true}, {1, 0, policy.SCTP, 80, true}})
		d := tp.dataplane(t, mode, nil)
		e := basicEngine(tp)
		if err := d.Apply(context.Background(), e.State(), e.TakeChanges()); err != nil {
			t.Fatal(err)
		}
		for _, fam := range []string{"iptables", "ip6tables"} {
			save := tp.save(t, mode, fam)
			fwd := ""
			for _, l := range strings.Split(save, "\n") {
				if strings.HasPrefix(l, "-A FORWARD") {
					fwd = l
					break
				}
			}
			if !strings.Contains(fwd, "-j "+ChainMain) {
				t.Errorf("%s: first FORWARD rule is %q, want the NPM jump", fam, fwd)
			}
			for _, want := range []string{":" + ChainIngress, ":" + ChainEgress, groupChainOf(policy.Ingress, "a/web"), groupChainOf(policy.Egress, "b/out"), "a/web ingress rule 0"} {
				if !strings.Contains(save, want) {
					t.Errorf("%s-save lacks %q:\n%s", fam, want, save)
				}
			}
		}
		sets := tp.ipsetSave(t)
		for _, want := range []string{"hash:ip,port family inet ", "10.9.0.2,tcp:80", "fd09:0:0::2,tcp:80", "add acn-npm4-", "192.168.7.0/24", "fd77::/64"} {
			want = strings.Replace(want, "fd09:0:0::2", "fd09::2", 1)
			if !strings.Contains(sets, want) {
				t.Errorf("ipset save lacks %q:\n%s", want, sets)
			}
		}
		tp.check(t, basicExpect)
		n, err := d.Reconcile(context.Background())
		if err != nil || n != 0 {
			t.Errorf("reconcile right after apply: %d repairs, %v (iptables-save format mismatch?)", n, err)
		}
		// Another backend's jump is not ours to keep: the other backend is clean.
		other := ModeLegacy
		if mode == ModeLegacy {
			other = ModeNFT
		}
		if s := tp.save(t, other, "iptables"); strings.Contains(s, ChainPrefix) {
			t.Errorf("other backend %s has NPM rules:\n%s", other, s)
		}
		if err := d.Cleanup(context.Background()); err != nil {
			t.Fatal(err)
		}
		if s := tp.save(t, mode, "iptables") + tp.ipsetSave(t); strings.Contains(s, ChainPrefix) || strings.Contains(s, SetPrefix) {
			t.Errorf("cleanup left objects:\n%s", s)
		}
		tp.check(t, []expect{{2, 0, policy.TCP, 80, true}})
	})
}
