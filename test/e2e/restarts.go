//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/test/cluster"
)

// RestartNamespace holds the pods of the restart checks.
const RestartNamespace = "rs"

// RestartPhase is one restart sequence under the probe loop.
type RestartPhase struct {
	Name string
	// Paths are the denied paths probed, by name: probes, and those that
	// got through.
	Probes, Through map[string]int
	// Window is the longest time denied probes of one path kept getting
	// through (first to last of an unbroken run; a lone one counts as its
	// probe's duration).
	Window time.Duration
	// AllowedThrough counts the allowed control probes that connected
	// (the paths work at all).
	AllowedProbes, AllowedThrough int
}

// Restarts runs a loop of denied probes (pod -> pod address, pod ->
// ClusterIP, outside -> NodePort on the backend's node and on another
// node, externalTrafficPolicy Cluster: kube-proxy's masquerade mark) and
// an allowed control probe while it kills and restarts kube-proxy and
// azure-npm on every node in both orders, including kube-proxy inserting
// its chains afresh (--cleanup) after azure-npm placed its own. A denied
// probe that gets through is a failure.
func Restarts(ctx context.Context, c *cluster.Cluster, timeout time.Duration) ([]RestartPhase, error) {
	ns := RestartNamespace
	o, w, err := outsideAndNamespace(ctx, c, "restarts", ns)
	if err != nil {
		return nil, err
	}
	n0, n1 := c.Nodes[0], c.Nodes[1]
	writes := []cluster.Write{w}
	labels := map[string]string{"pod": "guarded"}
	guarded, w, err := c.CreatePod(ctx, n1, ns, "guarded", labels, cluster.DefaultPorts())
	if err != nil {
		return nil, err
	}
	writes = append(writes, w)
	client, w, err := c.CreatePod(ctx, n0, ns, "client", map[string]string{"pod": "client"}, cluster.DefaultPorts())
	if err != nil {
		return nil, err
	}
	writes = append(writes, w)
	tcp := corev1.ProtocolTCP
	port80 := intstr.FromInt32(80)
	w, err = c.CreatePolicy(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "allow-allowed-clients-only"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: labels},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: cluster.OutsideAllowedPrefix.String()}}},
			}},
		},
	})
	if err != nil {
		return nil, err
	}
	writes = append(writes, w)
	svcs := map[corev1.ServiceExternalTrafficPolicy]*corev1.Service{}
	var backends []cluster.ServiceBackend
	for _, etp := range []corev1.ServiceExternalTrafficPolicy{corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal} {
		svc, err := c.CreateService(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "guarded-" + strings.ToLower(string(etp))},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ExternalTrafficPolicy: etp, Selector: labels,
				Ports: []corev1.ServicePort{{Name: "http", Protocol: tcp, Port: 80, TargetPort: port80}}},
		})
		if err != nil {
			return nil, err
		}
		svcs[etp] = svc
		backends = append(backends, cluster.ServiceBackend{Namespace: ns, Service: svc.Name, ClusterIP: svc.Spec.ClusterIP, PortName: "http",
			Protocol: tcp, IP: guarded.IP, Port: 80, Also: []string{fmt.Sprint(svc.Spec.Ports[0].NodePort)}})
	}
	if err := waitServicesReady(ctx, c, writes, backends); err != nil {
		return nil, err
	}
	cl := svcs[corev1.ServiceExternalTrafficPolicyCluster]
	vip := netip.MustParseAddr(cl.Spec.ClusterIP)
	nodePort := uint16(cl.Spec.Ports[0].NodePort)
	localPort := uint16(svcs[corev1.ServiceExternalTrafficPolicyLocal].Spec.Ports[0].NodePort)
	denied := []struct {
		name  string
		probe func() bool
	}{
		{"pod -> pod address", func() bool { return c.Probe(client, guarded.IP, 80, probe.TCP, timeout) }},
		{"pod -> ClusterIP", func() bool { return c.ProbeTo(client, guarded, vip, 80, probe.TCP, timeout) }},
		{"outside (denied) -> NodePort on backend's node", func() bool {
			return o.TCPConnect(o.Denied, netip.AddrPortFrom(n1.IP, nodePort), timeout)
		}},
		{"outside (denied) -> NodePort on other node", func() bool {
			return o.TCPConnect(o.Denied, netip.AddrPortFrom(n0.IP, nodePort), timeout)
		}},
	}
	allowed := func() bool { return o.TCPConnect(o.Allowed, netip.AddrPortFrom(n1.IP, localPort), timeout) }

	restartProxies := func(cleanup bool) error {
		for _, n := range c.Nodes {
			n.StopKubeProxy(true)
			if cleanup {
				if err := n.KubeProxyCleanup(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	startProxies := func() error {
		for _, n := range c.Nodes {
			if err := n.StartKubeProxy(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	stopNPM := func() {
		for _, n := range c.Nodes {
			n.StopNPM(true)
		}
	}
	startNPM := func() error {
		for _, n := range c.Nodes {
			if err := n.StartNPM(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	settle := func() error {
		// Hold the loop a while after the last start: a displaced jump
		// shows until the agent repairs it.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(3 * time.Second):
			return nil
		}
	}
	phases := []struct {
		name string
		run  func() error
	}{
		{"kube-proxy killed and restarted, azure-npm running", func() error {
			if err := restartProxies(false); err != nil {
				return err
			}
			return startProxies()
		}},
		{"azure-npm killed and restarted, kube-proxy running", func() error {
			stopNPM()
			return startNPM()
		}},
		{"both killed; azure-npm starts, then kube-proxy with fresh chains (--cleanup)", func() error {
			stopNPM()
			if err := restartProxies(true); err != nil {
				return err
			}
			if err := startNPM(); err != nil {
				return err
			}
			return startProxies()
		}},
		{"both killed; kube-proxy starts with fresh chains (--cleanup), then azure-npm", func() error {
			stopNPM()
			if err := restartProxies(true); err != nil {
				return err
			}
			if err := startProxies(); err != nil {
				return err
			}
			return startNPM()
		}},
		{"kube-proxy killed, fresh chains (--cleanup), restarted, azure-npm running", func() error {
			if err := restartProxies(true); err != nil {
				return err
			}
			return startProxies()
		}},
	}
	var out []RestartPhase
	for _, ph := range phases {
		res := RestartPhase{Name: ph.name, Probes: map[string]int{}, Through: map[string]int{}}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, d := range denied {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var runStart, last time.Time
				for {
					select {
					case <-stop:
						return
					default:
					}
					t0 := time.Now()
					through := d.probe()
					mu.Lock()
					res.Probes[d.name]++
					if through {
						res.Through[d.name]++
						if runStart.IsZero() {
							runStart = t0
						}
						last = time.Now()
						if w := last.Sub(runStart); w > res.Window {
							res.Window = w
						}
					} else {
						runStart = time.Time{}
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ok := allowed()
				mu.Lock()
				res.AllowedProbes++
				if ok {
					res.AllowedThrough++
				}
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
		err := ph.run()
		if err == nil {
			err = settle()
		}
		close(stop)
		wg.Wait()
		out = append(out, res)
		if err != nil {
			return out, fmt.Errorf("%s: %w", ph.name, err)
		}
	}
	return out, nil
}

// RenderRestarts prints the phases as a table, each line prefixed by
// label, and returns how many denied probes got through in all.
func RenderRestarts(phases []RestartPhase, label string, out io.Writer) int {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "configuration\trestart\tdenied path\tdenied probes\tgot through\tallowed control ok\tlongest window\t")
	leaks := 0
	for _, ph := range phases {
		first := true
		for _, path := range slices.Sorted(maps.Keys(ph.Probes)) {
			ctl, win := "", ""
			if first {
				ctl = fmt.Sprintf("%d/%d", ph.AllowedThrough, ph.AllowedProbes)
				win = ph.Window.Round(time.Millisecond).String()
				first = false
			}
			mark := ""
			if ph.Through[path] > 0 {
				mark = "  <-- LEAK"
			}
			leaks += ph.Through[path]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d%s\t%s\t%s\t\n", label, ph.Name, path, ph.Probes[path], ph.Through[path], mark, ctl, win)
		}
	}
	_ = tw.Flush()
	return leaks
}
