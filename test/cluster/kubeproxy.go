//go:build linux

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/internal/kubetest"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
)

// Kube-proxy modes (Config.KubeProxy).
const (
	KubeProxyIPTables = "iptables"
	KubeProxyNFTables = "nftables"
)

// kube-proxy's listeners inside each node's namespace.
const (
	kubeProxyHealthz = "127.0.0.1:10256"
	kubeProxyMetrics = "127.0.0.1:10249"
)

// KubeProxyParams are what differs between the nodes' kube-proxy
// configurations.
type KubeProxyParams struct {
	Kubeconfig string
	NodeName   string
	Mode       string // iptables or nftables
	// ClusterCIDR holds every pod address: traffic from a pod to a
	// ClusterIP keeps its pod source address (what policies match on);
	// traffic from elsewhere is masqueraded, as on a real node.
	ClusterCIDR string
}

// KubeProxyConfig is a KubeProxyConfiguration for one node. Conntrack
// limits and timeouts are left alone (maxPerCore 0, min 0, timeouts 0):
// nf_conntrack_max and the hash size are global, not per network
// namespace, so a kube-proxy setting them would change the machine. Every
// other write of kube-proxy (its iptables/nftables rules,
// net.ipv4.conf.all.route_localnet, conntrack entries) is per network
// namespace and lands in the node's.
func KubeProxyConfig(p KubeProxyParams) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
mode: %s
clusterCIDR: %s
metricsBindAddress: %s
healthzBindAddress: %s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, p.Kubeconfig, p.NodeName, p.Mode, p.ClusterCIDR, kubeProxyMetrics, kubeProxyHealthz)
}

// daemon is a process the harness runs inside a namespace: started with
// `ip netns exec` (which execs it, so the PID is the daemon's own),
// recorded by internal/owned, killed with the harness (parent-death
// signal) and stopped by PID.
type daemon struct {
	name string
	pid  int
	done chan struct{}
}

func startDaemon(ns *netnstest.NS, name, logPath string, argv ...string) (*daemon, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := owned.Start(cmd); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		owned.Exited(d.pid)
		logf.Close()
		close(d.done)
	}()
	return d, nil
}

func (d *daemon) running() bool {
	if d == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop sends SIGKILL (a crash) or SIGTERM (then SIGKILL after 10 s) to
// the daemon's PID and waits until it is gone.
func (d *daemon) stop(kill bool) {
	if !d.running() {
		return
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(d.pid, sig)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(d.pid, syscall.SIGKILL)
		<-d.done
	}
}

// services is what Config.KubeProxy adds to the cluster: one
// kube-controller-manager running the EndpointSlice controller in the
// control plane, one kube-proxy per node.
type services struct {
	kcm     *daemon
	proxies map[int]*daemon // by node index
	outside *Outside        // made on first use (outside.go)
}

// KubeProxyToolsMissing names the Kubernetes binaries Config.KubeProxy needs that
// are not built (make tools-node builds them).
func KubeProxyToolsMissing() []string {
	var missing []string
	for _, b := range []string{"kube-proxy", "kube-controller-manager"} {
		if st, err := os.Stat(filepath.Join(kubetest.ToolsDir(), b)); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// clusterCIDR is where pods get their addresses (kube-proxy's
// clusterCIDR).
func (c *Cluster) clusterCIDR() string {
	if c.cfg.CNIMode == "overlay" {
		return overlayCIDR
	}
	return vnetPrefix
}

// startServices registers the Node objects, starts the EndpointSlice
// controller and kube-proxy on every node, and waits until each
// kube-proxy has programmed its first sync.
func (c *Cluster) startServices(ctx context.Context) error {
	switch c.cfg.KubeProxy {
	case KubeProxyIPTables, KubeProxyNFTables:
	default:
		return fmt.Errorf("cluster: kube-proxy mode %q: want iptables or nftables", c.cfg.KubeProxy)
	}
	if m := KubeProxyToolsMissing(); len(m) > 0 {
		return fmt.Errorf("cluster: %v not built in %s: run `make tools-node`", m, kubetest.ToolsDir())
	}
	start := time.Now()
	c.svc = &services{proxies: map[int]*daemon{}}
	for _, n := range c.Nodes {
		if err := c.registerNode(ctx, n); err != nil {
			return err
		}
	}
	if err := c.startEndpointSliceController(); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if err := n.StartKubeProxy(ctx); err != nil {
			return err
		}
	}
	c.logf("kube-proxy (%s mode) on %d nodes and the EndpointSlice controller ready in %.1fs", c.cfg.KubeProxy, len(c.Nodes), time.Since(start).Seconds())
	return nil
}

// registerNode creates (or completes) the node's Node object with its
// InternalIP and a Ready condition: the EndpointSlice controller skips
// pods whose node does not exist, and kube-proxy takes its node address
// (NodePorts in nftables mode) from it. No kubelet keeps it fresh and no
// node lifecycle controller runs, so it stays as written.
func (c *Cluster) registerNode(ctx context.Context, n *Node) error {
	nodes := c.Client.CoreV1().Nodes()
	obj, err := nodes.Get(ctx, n.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		obj, err = nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name,
			Labels: map[string]string{corev1.LabelHostname: n.Name}}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("node object %s: %w", n.Name, err)
	}
	now := metav1.Now()
	obj.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP.String()}, {Type: corev1.NodeHostName, Address: n.Name}}
	obj.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "simulated node", LastHeartbeatTime: now, LastTransitionTime: now}}
	if _, err := nodes.UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node status %s: %w", n.Name, err)
	}
	return nil
}

// startEndpointSliceController runs kube-controller-manager in the
// control-plane namespace with the EndpointSlice controller only: Services
// get endpoints from the pods the harness marks Ready. It serves nothing
// (--secure-port=0) and acts with the admin kubeconfig.
func (c *Cluster) startEndpointSliceController() error {
	kc := c.API.Kubeconfig
	d, err := startDaemon(c.CP, "kube-controller-manager", filepath.Join(c.Dir, "kube-controller-manager.log"),
		filepath.Join(kubetest.ToolsDir(), "kube-controller-manager"),
		"--kubeconfig="+kc, "--controllers=endpointslice-controller", "--leader-elect=false",
		"--secure-port=0", "--concurrent-service-endpoint-syncs=10", "--endpointslice-updates-batch-period=0s", "--v=1")
	if err != nil {
		return err
	}
	c.svc.kcm = d
	return nil
}

// KubeProxyLog is the path of the node's kube-proxy log.
func (n *Node) KubeProxyLog() string { return filepath.Join(n.c.Dir, n.Name, "kube-proxy.log") }

// KubeProxyRunning reports whether the node's kube-proxy runs.
func (n *Node) KubeProxyRunning() bool {
	return n.c.svc != nil && n.c.svc.proxies[n.Index].running()
}

// KubeProxyPid is the node's kube-proxy process ID (0 when not running).
func (n *Node) KubeProxyPid() int {
	if !n.KubeProxyRunning() {
		return 0
	}
	return n.c.svc.proxies[n.Index].pid
}

// StartKubeProxy runs kube-proxy in the node's network namespace (only
// there: `ip netns exec` enters it before kube-proxy starts, and gives it
// the namespace's own /sys) with its own configuration file and log, and
// waits until its health check reports the first sync programmed.
func (n *Node) StartKubeProxy(ctx context.Context) error {
	c := n.c
	if c.svc == nil {
		return errors.New("cluster: built without kube-proxy (Config.KubeProxy)")
	}
	if n.KubeProxyRunning() {
		return fmt.Errorf("%s: kube-proxy already runs", n.Name)
	}
	conf := filepath.Join(c.Dir, n.Name, "kube-proxy.yaml")
	if err := os.WriteFile(conf, []byte(KubeProxyConfig(KubeProxyParams{Kubeconfig: c.API.Kubeconfig, NodeName: n.Name,
		Mode: c.cfg.KubeProxy, ClusterCIDR: c.clusterCIDR()})), 0o644); err != nil {
		return err
	}
	d, err := startDaemon(n.NS, "kube-proxy", n.KubeProxyLog(), filepath.Join(kubetest.ToolsDir(), "kube-proxy"), "--config="+conf, "--v=1")
	if err != nil {
		return err
	}
	c.svc.proxies[n.Index] = d
	deadline := time.Now().Add(60 * time.Second)
	for {
		if !d.running() {
			return fmt.Errorf("%s: kube-proxy exited; see %s", n.Name, n.KubeProxyLog())
		}
		if resp, err := n.http.Get("http://" + kubeProxyHealthz + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: kube-proxy not healthy after 60s; see %s", n.Name, n.KubeProxyLog())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopKubeProxy stops the node's kube-proxy: SIGKILL (a crash) when kill
// is set, else SIGTERM. Its rules stay in the node's kernel, as they do
// on a real node.
func (n *Node) StopKubeProxy(kill bool) {
	if n.c.svc == nil {
		return
	}
	if d := n.c.svc.proxies[n.Index]; d != nil {
		d.stop(kill)
		delete(n.c.svc.proxies, n.Index)
	}
}

// stopServices stops every kube-proxy and the controller manager.
func (c *Cluster) stopServices() {
	if c.svc == nil {
		return
	}
	for _, n := range c.Nodes {
		n.StopKubeProxy(false)
	}
	c.svc.kcm.stop(false)
	if c.svc.outside != nil {
		_ = c.svc.outside.NS.Delete()
	}
}

// KubeProxyRules is the node's kube-proxy state in its kernel: the nat
// table (iptables mode) or the kube-proxy tables (nftables mode).
func (n *Node) KubeProxyRules() (string, error) {
	if n.c.cfg.KubeProxy == KubeProxyNFTables {
		return n.NS.Exec("nft", "list", "table", "ip", "kube-proxy")
	}
	return n.NS.Exec("iptables-save", "-t", "nat")
}

// KubeProxyCleanup runs `kube-proxy --cleanup` in the node's namespace
// (kube-proxy stopped): it removes every rule, chain and jump kube-proxy
// made there, so its next start inserts them afresh, as on a rebooted
// node or a new kube-proxy version.
func (n *Node) KubeProxyCleanup() error {
	if n.KubeProxyRunning() {
		return fmt.Errorf("%s: kube-proxy runs; stop it before its cleanup", n.Name)
	}
	_, err := n.NS.Exec(filepath.Join(kubetest.ToolsDir(), "kube-proxy"), "--cleanup", "--v=0")
	return err
}
