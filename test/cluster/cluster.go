//go:build linux

// Package cluster is a whole Kubernetes cluster on one machine, made of
// network namespaces, with every real part of the product in the path:
//
//	vnet   the fabric: a bridge (10.224.0.1/16) joining every node and the
//	       control plane, as the Azure VNet does
//	cp     the control plane: etcd + kube-apiserver on 10.224.0.2:6443
//	node-i a node: eth0 = 10.224.0.(10+i)/16; pods plumbed by azure-vnet and
//	       azure-vnet-ipam through libcni (transparent or bridge mode), the
//	       IPAM fed by a per-node interfaces file listing that node's pod
//	       addresses 10.224.(i+1).x; one azure-npm process in the namespace,
//	       exactly as the DaemonSet would run it
//	pod-*  one namespace per pod running podserver (TCP/UDP echo, raw SCTP)
//
// With Config.KubeProxy, every node also runs the real kube-proxy (iptables
// or nftables mode) in its namespace, and the control plane runs
// kube-controller-manager's EndpointSlice controller, so Services reach the
// pods the harness marks Ready (kubeproxy.go, services.go).
//
// Where the Azure fabric routes a node's pod addresses to it, the harness
// adds the same routes (transparent mode); in bridge mode pods are on the
// VNet's L2 segment. In overlay mode node-i's pods get 10.244.i.x from the
// block in its Node object's spec.podCIDRs (read by azure-vnet with the
// admin kubeconfig), cluster CIDR 10.244.0.0/16, and the harness routes
// every block via its node in the nodes and the VNet.
//
// With IPFamily ipv6 or dual the VNet also carries fd00:224::/64 (gateway
// fd00:224::1, node-i fd00:224::(10+i)) and pods get IPv6 addresses:
// fd00:224::(i+1):x from the interfaces file's IPv6 subnet (transparent,
// bridge), or in overlay from the Node's second block fd00:10:244::i:0/120
// of the cluster CIDR fd00:10:244::/56. Nodes and the control plane keep
// their IPv4 addresses (the API server is reached over IPv4). Nothing
// outside these namespaces is touched, and Close removes them all.
package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/open-acn/acn/internal/kubetest"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/npm/localsock"
)

// Addressing of the simulated VNet.
const (
	vnetPrefix  = "10.224.0.0/16"
	vnetGateway = "10.224.0.1"
	cpAddress   = "10.224.0.2"
	// IPv6 of the VNet (a ULA: the documentation prefix is a range the
	// plugins refuse).
	vnetPrefix6  = "fd00:224::/64"
	vnetGateway6 = "fd00:224::1"
	cpAddress6   = "fd00:224::2"
	overlayCIDR  = "10.244.0.0/16"
	overlayCIDR6 = "fd00:10:244::/56"
	// PodsPerNode addresses are listed in each node's interfaces file.
	PodsPerNode = 48
	// NPMPort is azure-npm's network listener (metricsAddr :10091 on every
	// address of the node, as the DaemonSet runs it): health and metrics
	// only. The harness reads /status through the node's local socket.
	NPMPort  = 10091
	npmReady = "127.0.0.1:10091"
)

// Config describes the cluster to build.
type Config struct {
	Nodes     int    // default 2
	CNIMode   string // "transparent" (default), "bridge" or "overlay"
	Dataplane string // azure-npm --dataplane; default iptables
	// IPFamily of the pods: "ipv4" (default), "ipv6" or "dual" (both,
	// IPv4 first).
	IPFamily string
	// BinDir holds azure-vnet, azure-vnet-ipam, azure-npm and podserver;
	// default <module root>/out.
	BinDir string
	// Dir keeps state, logs and kubeconfigs; default a new temp dir.
	Dir string
	// NoNPM skips starting azure-npm on the nodes.
	NoNPM bool
	// RealNodes configures the API server for real kubelets
	// (kubetest.Options.Nodes); test/realcluster builds on this cluster.
	RealNodes bool
	// KubeProxy runs kube-proxy in this mode ("iptables" or "nftables")
	// in every node's namespace, and kube-controller-manager's
	// EndpointSlice controller in the control plane, so Services work
	// (kubeproxy.go); "" = no Services.
	KubeProxy string
	// NPMConfig is appended to each agent's configuration file (YAML
	// lines, e.g. "batchWindow: 20ms"; a key given here wins).
	NPMConfig string
	// FlowLogDefault is the agents' flowLog.default (none when empty);
	// each node's flow log is NPMFlowLog.
	FlowLogDefault string
	// NPMReadyTimeout bounds StartNPM's wait for /readyz (informers
	// synced, first full program); default 60s. A cluster of hundreds of
	// thousands of API objects needs longer.
	NPMReadyTimeout time.Duration
	// Logf receives progress lines; nil = silent.
	Logf func(format string, args ...any)
}

// Cluster is a running simulated cluster.
type Cluster struct {
	cfg    Config
	Dir    string
	VNet   *netnstest.NS
	CP     *netnstest.NS
	API    *kubetest.Server
	Client kubernetes.Interface
	Nodes  []*Node

	ownDir bool      // Dir was made by New (Close removes it)
	svc    *services // Config.KubeProxy's processes (nil without)

	mu   sync.Mutex
	pods map[string]*Pod // "ns/name"
}

// Node is one simulated node.
type Node struct {
	Name      string
	Index     int
	NS        *netnstest.NS
	IP        netip.Addr
	PodPrefix netip.Prefix
	// IP6 and PodPrefix6 are the node's IPv6 address and pod range (the
	// cluster's pods have IPv6).
	IP6        netip.Addr
	PodPrefix6 netip.Prefix
	confList   *libcni.NetworkConfigList
	conf       map[string]any // the conflist, to derive per-pod variants
	cni        *libcni.CNIConfig
	npm        *exec.Cmd
	npmDone    chan struct{}
	http       *http.Client // dials from inside the node's namespace
	local      *http.Client // azure-npm's local socket
	c          *Cluster
}

// Pod is one pod: a namespace plumbed by the CNI, running podserver.
type Pod struct {
	Namespace, Name string
	Node            *Node
	NS              *netnstest.NS
	IP              netip.Addr   // the first of IPs
	IPs             []netip.Addr // one per family of the cluster, in its order
	ContainerID     string
	server          *exec.Cmd
	mu              sync.Mutex
	sctpSeen        map[uint32]bool
	// udpPorts rotates UDP probe source ports so no probe from this pod
	// reuses a 5-tuple that conntrack may still hold as established.
	udpPorts probe.SourcePorts
}

// Key is "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// IPFor is the pod's address of family ("IPv4" or "IPv6"); invalid when
// the pod has none.
func (p *Pod) IPFor(family string) netip.Addr {
	for _, ip := range p.IPs {
		if familyOf(ip) == family {
			return ip
		}
	}
	return netip.Addr{}
}

func familyOf(ip netip.Addr) string {
	if ip.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// Families, as the plugins' ipam.ipFamilies and Kubernetes name them.
const (
	IPv4 = "IPv4"
	IPv6 = "IPv6"
)

// ParseIPFamily checks an IPFamily value ("" is ipv4).
func ParseIPFamily(s string) (string, error) {
	switch s {
	case "", "ipv4":
		return "ipv4", nil
	case "ipv6", "dual":
		return s, nil
	}
	return "", fmt.Errorf("IP family %q: want ipv4, ipv6 or dual", s)
}

// Families are the pods' families, in the order of their addresses.
func (c *Cluster) Families() []string {
	switch c.cfg.IPFamily {
	case "ipv6":
		return []string{IPv6}
	case "dual":
		return []string{IPv4, IPv6}
	}
	return []string{IPv4}
}

func (c *Cluster) hasV6() bool { return c.cfg.IPFamily == "ipv6" || c.cfg.IPFamily == "dual" }

func (c *Cluster) logf(format string, args ...any) {
	if c.cfg.Logf != nil {
		c.cfg.Logf(format, args...)
	}
}

// New builds the cluster. On error everything created so far is removed.
func New(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 2
	}
	if cfg.CNIMode == "" {
		cfg.CNIMode = "transparent"
	}
	if cfg.Dataplane == "" {
		cfg.Dataplane = "iptables"
	}
	if cfg.IPFamily, err = ParseIPFamily(cfg.IPFamily); err != nil {
		return nil, err
	}
	if cfg.BinDir == "" {
		cfg.BinDir = filepath.Join(kubetest.ModuleRoot(), "out")
	}
	if err := BinariesBuilt(cfg.BinDir); err != nil {
		return nil, err
	}
	ownDir := cfg.Dir == ""
	if ownDir {
		if cfg.Dir, err = owned.MkdirTemp("", "acn-cluster-"); err != nil {
			return nil, err
		}
	}
	c := &Cluster{cfg: cfg, Dir: cfg.Dir, ownDir: ownDir, pods: map[string]*Pod{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	start := time.Now()
	if c.VNet, err = netnstest.Create("vnet"); err != nil {
		return nil, err
	}
	if err := c.noDAD(c.VNet); err != nil {
		return nil, err
	}
	for _, cmd := range [][]string{
		{"ip", "link", "add", "br0", "type", "bridge"},
		{"ip", "addr", "add", vnetGateway + "/16", "dev", "br0"},
		{"ip", "link", "set", "br0", "up"},
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
	} {
		if _, err := c.VNet.Exec(cmd[0], cmd[1:]...); err != nil {
			return nil, err
		}
	}
	if c.hasV6() {
		for _, cmd := range [][]string{
			{"ip", "addr", "add", vnetGateway6 + "/64", "dev", "br0", "nodad"},
			{"sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"},
		} {
			if _, err := c.VNet.Exec(cmd[0], cmd[1:]...); err != nil {
				return nil, err
			}
		}
	}
	if c.CP, err = netnstest.Create("cp"); err != nil {
		return nil, err
	}
	if err := c.attach(c.CP, "cp", cpAddress, cpAddress6); err != nil {
		return nil, err
	}
	if c.API, err = kubetest.Start(ctx, kubetest.Options{Dir: filepath.Join(c.Dir, "apiserver"), NetNS: c.CP, Address: cpAddress, Nodes: cfg.RealNodes}); err != nil {
		return nil, err
	}
	if c.Client, err = c.API.Client(); err != nil {
		return nil, err
	}
	c.logf("control plane ready at %s in %.1fs", c.API.URL, c.API.StartupTime.Seconds())
	for i := 0; i < cfg.Nodes; i++ {
		n, err := c.addNode(ctx, i)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	if cfg.CNIMode == "transparent" || cfg.CNIMode == "overlay" {
		// The fabric's job in Azure: route each node's pod addresses to it.
		for _, n := range c.Nodes {
			for _, m := range c.Nodes {
				if m != n {
					if _, err := n.NS.Exec("ip", "route", "add", m.PodPrefix.String(), "via", m.IP.String()); err != nil {
						return nil, err
					}
				}
			}
			if _, err := c.VNet.Exec("ip", "route", "add", n.PodPrefix.String(), "via", n.IP.String()); err != nil {
				return nil, err
			}
			if !c.hasV6() {
				continue
			}
			for _, m := range c.Nodes {
				if m != n {
					if _, err := n.NS.Exec("ip", "-6", "route", "add", m.PodPrefix6.String(), "via", m.IP6.String()); err != nil {
						return nil, err
					}
				}
			}
			if _, err := c.VNet.Exec("ip", "-6", "route", "add", n.PodPrefix6.String(), "via", n.IP6.String()); err != nil {
				return nil, err
			}
		}
	}
	if cfg.KubeProxy != "" {
		if err := c.startServices(ctx); err != nil {
			return nil, err
		}
	}
	if !cfg.NoNPM {
		for _, n := range c.Nodes {
			if err := n.StartNPM(ctx); err != nil {
				return nil, err
			}
		}
	}
	c.logf("cluster of %d nodes (%s mode, %s dataplane, pods %s) ready in %.1fs", cfg.Nodes, cfg.CNIMode, cfg.Dataplane, strings.Join(c.Families(), "+"), time.Since(start).Seconds())
	return c, nil
}

// noDAD turns duplicate address detection off in a new namespace of the
// fabric (before its links exist) when pods have IPv6. The links' own
// link-local addresses would otherwise stay tentative for a second or
// more after the cluster is built, and a node forwarding a pod's packet
// to another node (transparent, overlay) cannot send the neighbour
// solicitation for that node without a usable link-local source (the
// kernel drops it): the first IPv6 packet between nodes was lost to the
// 1 s retransmit. A real node's NIC is up long before its pods.
func (c *Cluster) noDAD(ns *netnstest.NS) error {
	if !c.hasV6() {
		return nil
	}
	_, err := ns.Exec("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return err
}

// forward turns routing on in a node's namespace, as on every Kubernetes
// node (kubeadm's preflight requires it; cloud node images set it), not
// only once the CNI plugin has plumbed the node's first pod. A node that
// runs no pod still forwards: kube-proxy DNATs a NodePort or
// load-balancer packet it receives to a pod of another node
// (externalTrafficPolicy Cluster), and without forwarding the kernel
// drops it after the DNAT, before any policy sees it. The node's IPv6
// default route is static, so forwarding's effect on router
// advertisements does not matter here.
func (c *Cluster) forward(ns *netnstest.NS) error {
	args := []string{"-qw", "net.ipv4.ip_forward=1"}
	if c.hasV6() {
		args = append(args, "net.ipv6.conf.all.forwarding=1")
	}
	_, err := ns.Exec("sysctl", args...)
	return err
}

// attach connects ns to the VNet bridge with eth0 = addr/16 and, when
// pods have IPv6, addr6/64.
func (c *Cluster) attach(ns *netnstest.NS, peer, addr, addr6 string) error {
	if err := c.noDAD(ns); err != nil {
		return err
	}
	if err := netnstest.LinkNS(ns, "eth0", addr+"/16", c.VNet, peer, ""); err != nil {
		return err
	}
	if _, err := c.VNet.Exec("ip", "link", "set", peer, "master", "br0"); err != nil {
		return err
	}
	cmds := [][]string{{"ip", "route", "add", "default", "via", vnetGateway}}
	if c.hasV6() {
		// No DAD: the addresses are unique by construction, and a
		// tentative address would delay the node's first second.
		cmds = append(cmds, []string{"ip", "addr", "add", addr6 + "/64", "dev", "eth0", "nodad"},
			[]string{"ip", "-6", "route", "add", "default", "via", vnetGateway6})
	}
	for _, cmd := range cmds {
		if _, err := ns.Exec(cmd[0], cmd[1:]...); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) addNode(ctx context.Context, i int) (*Node, error) {
	n := &Node{Name: fmt.Sprintf("node-%d", i), Index: i, c: c,
		IP:         netip.MustParseAddr(fmt.Sprintf("10.224.0.%d", 10+i)),
		PodPrefix:  netip.MustParsePrefix(fmt.Sprintf("10.224.%d.0/24", i+1)),
		IP6:        netip.MustParseAddr(fmt.Sprintf("fd00:224::%x", 10+i)),
		PodPrefix6: netip.MustParsePrefix(fmt.Sprintf("fd00:224::%x:0/112", i+1))}
	var err error
	if c.cfg.CNIMode == "overlay" {
		n.PodPrefix = netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i))
		n.PodPrefix6 = netip.MustParsePrefix(fmt.Sprintf("fd00:10:244::%x:0/120", i))
	}
	if n.NS, err = netnstest.Create("node" + strconv.Itoa(i)); err != nil {
		return nil, err
	}
	if err := c.attach(n.NS, fmt.Sprintf("n%d", i), n.IP.String(), n.IP6.String()); err != nil {
		return nil, err
	}
	if err := c.forward(n.NS); err != nil {
		return nil, err
	}
	dir := filepath.Join(c.Dir, n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	mac, err := n.NS.Exec("cat", "/sys/class/net/eth0/address")
	if err != nil {
		return nil, err
	}
	// The interfaces file: what the Azure host would say about this node's
	// NIC: its primary address and the secondary addresses for pods.
	addrs := []map[string]any{{"Address": n.IP.String(), "IsPrimary": true}}
	for k := 0; k < PodsPerNode; k++ {
		addrs = append(addrs, map[string]any{"Address": fmt.Sprintf("10.224.%d.%d", i+1, 10+k)})
	}
	subnets := []any{map[string]any{"Prefix": vnetPrefix, "IPAddresses": addrs}}
	if c.hasV6() {
		addrs6 := []map[string]any{{"Address": n.IP6.String(), "IsPrimary": true}}
		for k := 0; k < PodsPerNode; k++ {
			addrs6 = append(addrs6, map[string]any{"Address": fmt.Sprintf("fd00:224::%x:%x", i+1, 10+k)})
		}
		subnets = append(subnets, map[string]any{"Prefix": vnetPrefix6, "IPAddresses": addrs6})
	}
	ifaces := map[string]any{"Interfaces": []any{map[string]any{
		"MacAddress": strings.TrimSpace(mac), "IsPrimary": true,
		"IPSubnets": subnets,
	}}}
	ifFile := filepath.Join(dir, "interfaces.json")
	if err := writeJSON(ifFile, ifaces); err != nil {
		return nil, err
	}
	conf := map[string]any{
		"cniVersion": "1.1.0",
		"name":       "azure",
		"plugins": []any{map[string]any{
			"type":     "azure-vnet",
			"mode":     c.cfg.CNIMode,
			"master":   "eth0",
			"bridge":   "azure0",
			"stateDir": filepath.Join(dir, "state"),
			"logFile":  filepath.Join(dir, "azure-vnet.log"),
			"ipam": map[string]any{
				"type":           "azure-vnet-ipam",
				"environment":    "file",
				"interfacesFile": ifFile,
			},
		}},
	}
	if c.cfg.IPFamily != "ipv4" {
		conf["plugins"].([]any)[0].(map[string]any)["ipam"].(map[string]any)["ipFamilies"] = c.Families()
	}
	if c.cfg.CNIMode == "overlay" {
		if err := c.overlayNode(ctx, n, conf["plugins"].([]any)[0].(map[string]any)); err != nil {
			return nil, err
		}
	}
	n.conf = conf
	data, _ := json.Marshal(conf)
	if n.confList, err = libcni.ConfListFromBytes(data); err != nil {
		return nil, fmt.Errorf("%s conflist: %w", n.Name, err)
	}
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{c.cfg.BinDir, "/usr/lib/cni", "/opt/cni/bin"}, filepath.Join(dir, "cni-cache"), nil)
	n.http = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := n.NS.Do(func() error {
				var err error
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		}}}
	n.local = localsock.Client(n.NPMSocket(), 2*time.Second)
	return n, nil
}

// overlayNode registers the node's Node object with its pod block and
// points azure-vnet's IPAM at it (overlay mode).
func (c *Cluster) overlayNode(ctx context.Context, n *Node, plugin map[string]any) error {
	var blocks, cidrs []string
	for _, f := range c.Families() {
		if f == IPv4 {
			blocks, cidrs = append(blocks, n.PodPrefix.String()), append(cidrs, overlayCIDR)
		} else {
			blocks, cidrs = append(blocks, n.PodPrefix6.String()), append(cidrs, overlayCIDR6)
		}
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name},
		Spec: corev1.NodeSpec{PodCIDR: blocks[0], PodCIDRs: blocks}}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("node object %s: %w", n.Name, err)
	}
	plugin["mode"] = "transparent"
	ipam := map[string]any{
		"type":        "azure-vnet-ipam",
		"environment": "overlay",
		"clusterCIDR": strings.Join(cidrs, ","),
		"kubeconfig":  c.API.Kubeconfig,
		"nodeName":    n.Name,
	}
	if c.cfg.IPFamily != "ipv4" {
		ipam["ipFamilies"] = c.Families()
	}
	plugin["ipam"] = ipam
	return nil
}

// BinariesBuilt reports which binaries the cluster runs are missing from
// binDir ("" = <module root>/out).
func BinariesBuilt(binDir string) error {
	if binDir == "" {
		binDir = filepath.Join(kubetest.ModuleRoot(), "out")
	}
	var missing []string
	for _, b := range []string{"azure-vnet", "azure-vnet-ipam", "azure-npm", "podserver"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cluster: %v not built in %s: run `make all podserver`", missing, binDir)
	}
	return nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// SetDataplane selects the dataplane of the next StartNPM on every node.
func (c *Cluster) SetDataplane(dataplane string) { c.cfg.Dataplane = dataplane }

// NPMLog is the path of the node's azure-npm log.
func (n *Node) NPMLog() string { return filepath.Join(n.c.Dir, n.Name, "azure-npm.log") }

// NPMFlowLog is the path of the node's azure-npm flow log (flowLog.file),
// unless NPMConfig sets flowLog.
func (n *Node) NPMFlowLog() string { return filepath.Join(n.c.Dir, n.Name, "azure-npm-flows.log") }

// NPMSocket is the path of the node's azure-npm local socket (/status,
// /explain, pprof): each node's agent has its own, as each real node has
// its own /run/azure-npm.
func (n *Node) NPMSocket() string { return filepath.Join(n.c.Dir, n.Name, "run", "npm.sock") }

// StartNPM runs azure-npm in the node's namespace, as the DaemonSet would,
// and waits until it reports ready.
func (n *Node) StartNPM(ctx context.Context) error {
	cfgFile := filepath.Join(n.c.Dir, n.Name, "npm.yaml")
	cfg := npmConfig(n.c.cfg.NPMConfig)
	if !strings.Contains("\n"+cfg, "\nflowLog:") {
		// Each node's agent its own flow log, never the host's /var/log.
		def := n.c.cfg.FlowLogDefault
		if def == "" {
			def = "none"
		}
		cfg += "flowLog:\n  default: " + def + "\n  file: " + n.NPMFlowLog() + "\n"
	}
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", n.NS.Name, filepath.Join(n.c.cfg.BinDir, "azure-npm"), "start",
		"--kubeconfig", n.c.API.Kubeconfig, "--node-name", n.Name, "--config", cfgFile,
		"--dataplane", n.c.cfg.Dataplane, "--metrics-addr", fmt.Sprintf(":%d", NPMPort), "--socket", n.NPMSocket(), "--log-file", n.NPMLog())
	stderr, err := os.OpenFile(filepath.Join(n.c.Dir, n.Name, "azure-npm.stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := owned.Start(cmd); err != nil {
		stderr.Close()
		return err
	}
	n.npm, n.npmDone = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		owned.Exited(cmd.Process.Pid)
		stderr.Close()
		close(done)
	}(n.npmDone)
	timeout := n.c.cfg.NPMReadyTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-n.npmDone:
			return fmt.Errorf("%s: azure-npm exited; see %s", n.Name, filepath.Join(n.c.Dir, n.Name, "azure-npm.stderr"))
		default:
		}
		if resp, err := n.http.Get("http://" + npmReady + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: azure-npm not ready after %s", n.Name, timeout)
}

// npmConfig is the agents' configuration: fast reconcile and batches,
// pprof on, with the top-level keys of extra replacing the defaults'.
func npmConfig(extra string) string {
	base := []string{"reconcileInterval: 5s", "batchWindow: 5ms", "enablePprof: true", "log:\n  level: info"}
	var b strings.Builder
	for _, line := range base {
		key, _, _ := strings.Cut(line, ":")
		if !strings.HasPrefix(extra, key+":") && !strings.Contains(extra, "\n"+key+":") {
			b.WriteString(line + "\n")
		}
	}
	if extra != "" {
		b.WriteString(strings.TrimSuffix(extra, "\n") + "\n")
	}
	return b.String()
}

// NPMPid is the azure-npm process ID (0 when not running). `ip netns exec`
// execs the binary, so the PID is azure-npm's own.
func (n *Node) NPMPid() int {
	if n.npm == nil || n.npm.Process == nil {
		return 0
	}
	return n.npm.Process.Pid
}

// StopNPM stops azure-npm: SIGTERM (graceful), or SIGKILL when kill is set.
func (n *Node) StopNPM(kill bool) {
	if n.npm == nil {
		return
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = n.npm.Process.Signal(sig)
	select {
	case <-n.npmDone:
	case <-time.After(10 * time.Second):
		_ = n.npm.Process.Kill()
		<-n.npmDone
	}
	n.npm = nil
}

// NPMGet fetches target ("/status?object=...") from the node's azure-npm
// through its local socket: the access path of `azure-npm status` and of a
// user's `kubectl exec ds/azure-npm -- azure-npm ...`.
func (n *Node) NPMGet(target string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := localsock.Get(ctx, n.local, n.NPMSocket(), target)
	if err != nil {
		return b, fmt.Errorf("%s: %w", n.Name, err)
	}
	return b, nil
}

// NPMMetrics fetches /metrics from the node's azure-npm network listener
// (inside the node's namespace).
func (n *Node) NPMMetrics() ([]byte, error) {
	resp, err := n.http.Get("http://" + npmReady + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s /metrics: %s", n.Name, resp.Status)
	}
	return b, err
}

// NPMGeneration is the number of successful kernel transactions the
// node's azure-npm has made (its /status generation).
func (n *Node) NPMGeneration() (uint64, error) {
	b, err := n.NPMGet("/status")
	if err != nil {
		return 0, err
	}
	var st struct {
		Generation uint64 `json:"generation"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("%s: /status: %w", n.Name, err)
	}
	return st.Generation, nil
}

// ObjectEnforced reports whether the node's azure-npm enforces the object
// at resourceVersion rv or later (rv 0: absent).
func (n *Node) ObjectEnforced(key string, rv uint64) (bool, error) {
	b, err := n.NPMGet("/status?" + url.Values{"object": {key}}.Encode())
	if err != nil {
		return false, err
	}
	var st struct {
		Present         bool   `json:"present"`
		ResourceVersion uint64 `json:"resourceVersion"`
		Pending         bool   `json:"pending"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return false, err
	}
	if st.Pending {
		return false, nil
	}
	if rv == 0 {
		return !st.Present, nil
	}
	return st.Present && st.ResourceVersion >= rv, nil
}

// Write is one API change whose enforcement a step waits for.
type Write struct {
	Key string // "pod/ns/name", "namespace//name", "policy/ns/name", "endpointslice/ns/name", ...
	RV  uint64 // resourceVersion written; 0 = deleted
}

func rvOf(m metav1.Object) uint64 {
	v, _ := strconv.ParseUint(m.GetResourceVersion(), 10, 64)
	return v
}

// WaitEnforced waits until every node's azure-npm enforces every write and
// returns how long that took.
func (c *Cluster) WaitEnforced(ctx context.Context, writes []Write, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for _, n := range c.Nodes {
		if n.npm == nil {
			continue
		}
		for _, w := range writes {
			for {
				ok, err := n.ObjectEnforced(w.Key, w.RV)
				if ok {
					break
				}
				if time.Now().After(deadline) {
					return time.Since(start), fmt.Errorf("%s did not enforce %s@%d within %s (last error: %v)", n.Name, w.Key, w.RV, timeout, err)
				}
				select {
				case <-ctx.Done():
					return time.Since(start), ctx.Err()
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
	}
	return time.Since(start), nil
}

// CreateNamespace creates a namespace with labels.
func (c *Cluster) CreateNamespace(ctx context.Context, name string, labels map[string]string) (Write, error) {
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		return Write{}, err
	}
	return Write{Key: "namespace//" + name, RV: rvOf(ns)}, nil
}

// SetNamespaceLabels replaces a namespace's labels (keeping the API
// server's kubernetes.io/metadata.name).
func (c *Cluster) SetNamespaceLabels(ctx context.Context, name string, labels map[string]string) (Write, error) {
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Write{}, err
	}
	l := map[string]string{"kubernetes.io/metadata.name": name}
	for k, v := range labels {
		l[k] = v
	}
	ns.Labels = l
	ns, err = c.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
	if err != nil {
		return Write{}, err
	}
	return Write{Key: "namespace//" + name, RV: rvOf(ns)}, nil
}

// AnnotateNamespace sets one annotation of a namespace (e.g. the flow-log
// opt-in npm.open-acn.io/flow-log).
func (c *Cluster) AnnotateNamespace(ctx context.Context, name, key, value string) (Write, error) {
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Write{}, err
	}
	if ns.Annotations == nil {
		ns.Annotations = map[string]string{}
	}
	ns.Annotations[key] = value
	ns, err = c.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
	if err != nil {
		return Write{}, err
	}
	return Write{Key: "namespace//" + name, RV: rvOf(ns)}, nil
}

// ContainerPort is a port the pod declares (named like cyclonus's
// serve-80-tcp).
type ContainerPort struct {
	Name     string
	Port     int32
	Protocol corev1.Protocol
}

// DefaultPorts are what every e2e pod serves: 80 and 81 on TCP, UDP, SCTP.
func DefaultPorts() []ContainerPort {
	var out []ContainerPort
	for _, p := range []int32{80, 81} {
		for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
			out = append(out, ContainerPort{Name: fmt.Sprintf("serve-%d-%s", p, strings.ToLower(string(proto))), Port: p, Protocol: proto})
		}
	}
	return out
}

// CreatePod creates the pod in the API (spec.nodeName set), plumbs it with
// the CNI on its node, starts podserver in it, and patches status.podIP.
func (c *Cluster) CreatePod(ctx context.Context, node *Node, namespace, name string, labels map[string]string, ports []ContainerPort) (*Pod, Write, error) {
	return c.CreatePodWithIP(ctx, node, namespace, name, labels, ports, netip.Addr{})
}

// CreatePodWithIP is CreatePod asking the IPAM for a given address
// (ipam.ipAddress), e.g. to reuse a deleted pod's IP at once.
func (c *Cluster) CreatePodWithIP(ctx context.Context, node *Node, namespace, name string, labels map[string]string, ports []ContainerPort, ip netip.Addr) (*Pod, Write, error) {
	var cports []corev1.ContainerPort
	for _, p := range ports {
		cports = append(cports, corev1.ContainerPort{Name: p.Name, ContainerPort: p.Port, Protocol: p.Protocol})
	}
	kpod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node.Name, Containers: []corev1.Container{{Name: "podserver", Image: "podserver", Ports: cports}},
			TerminationGracePeriodSeconds: new(int64)},
	}
	kpod, err := c.Client.CoreV1().Pods(namespace).Create(ctx, kpod, metav1.CreateOptions{})
	if err != nil {
		return nil, Write{}, err
	}
	p := &Pod{Namespace: namespace, Name: name, Node: node, ContainerID: fmt.Sprintf("%s-%s-%s", namespace, name, string(kpod.UID)), sctpSeen: map[uint32]bool{}}
	if p.NS, err = netnstest.Create("pod"); err != nil {
		return nil, Write{}, err
	}
	if p.IPs, err = node.cniAdd(ctx, p, ip); err != nil {
		_ = p.NS.Delete()
		return nil, Write{}, err
	}
	p.IP = p.IPs[0]
	if err := p.startServer(c.cfg.BinDir, ports); err != nil {
		_ = node.cniDel(ctx, p)
		_ = p.NS.Delete()
		return nil, Write{}, err
	}
	// Ready, as kubelet would report a pod whose server answers: the
	// EndpointSlice controller publishes only ready pods to kube-proxy.
	now := metav1.Now()
	kpod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.IP.String(),
		HostIP: node.IP.String(), StartTime: &now, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}}
	for _, ip := range p.IPs {
		kpod.Status.PodIPs = append(kpod.Status.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	kpod, err = c.Client.CoreV1().Pods(namespace).UpdateStatus(ctx, kpod, metav1.UpdateOptions{})
	if err != nil {
		return nil, Write{}, err
	}
	c.mu.Lock()
	c.pods[p.Key()] = p
	c.mu.Unlock()
	return p, Write{Key: "pod/" + p.Key(), RV: rvOf(kpod)}, nil
}

// SetPodLabels replaces a pod's labels.
func (c *Cluster) SetPodLabels(ctx context.Context, namespace, name string, labels map[string]string) (Write, error) {
	kpod, err := c.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Write{}, err
	}
	kpod.Labels = labels
	kpod, err = c.Client.CoreV1().Pods(namespace).Update(ctx, kpod, metav1.UpdateOptions{})
	if err != nil {
		return Write{}, err
	}
	return Write{Key: "pod/" + namespace + "/" + name, RV: rvOf(kpod)}, nil
}

// DeletePod removes the pod from the API, then tears its network down.
func (c *Cluster) DeletePod(ctx context.Context, namespace, name string) (Write, error) {
	zero := int64(0)
	if err := c.Client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		return Write{}, err
	}
	c.mu.Lock()
	p := c.pods[namespace+"/"+name]
	delete(c.pods, namespace+"/"+name)
	c.mu.Unlock()
	if p != nil {
		p.stopServer()
		if err := p.Node.cniDel(ctx, p); err != nil {
			return Write{}, err
		}
		_ = p.NS.Delete()
	}
	return Write{Key: "pod/" + namespace + "/" + name}, nil
}

// Pod returns a pod by namespace and name.
func (c *Cluster) Pod(namespace, name string) *Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pods[namespace+"/"+name]
}

// CreatePolicy creates a NetworkPolicy.
func (c *Cluster) CreatePolicy(ctx context.Context, np *networkingv1.NetworkPolicy) (Write, error) {
	np = np.DeepCopy()
	np.ResourceVersion = ""
	out, err := c.Client.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
	if err != nil {
		return Write{}, err
	}
	return Write{Key: "policy/" + np.Namespace + "/" + np.Name, RV: rvOf(out)}, nil
}

// UpdatePolicy replaces a NetworkPolicy's spec.
func (c *Cluster) UpdatePolicy(ctx context.Context, np *networkingv1.NetworkPolicy) (Write, error) {
	cur, err := c.Client.NetworkingV1().NetworkPolicies(np.Namespace).Get(ctx, np.Name, metav1.GetOptions{})
	if err != nil {
		return Write{}, err
	}
	cur.Spec = *np.Spec.DeepCopy()
	cur.Labels = np.Labels
	out, err := c.Client.NetworkingV1().NetworkPolicies(np.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		return Write{}, err
	}
	return Write{Key: "policy/" + np.Namespace + "/" + np.Name, RV: rvOf(out)}, nil
}

// DeletePolicy deletes a NetworkPolicy.
func (c *Cluster) DeletePolicy(ctx context.Context, namespace, name string) (Write, error) {
	if err := c.Client.NetworkingV1().NetworkPolicies(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return Write{}, err
	}
	return Write{Key: "policy/" + namespace + "/" + name}, nil
}

func (n *Node) runtimeConf(p *Pod) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: p.ContainerID,
		NetNS:       p.NS.Path,
		IfName:      "eth0",
		Args:        [][2]string{{"K8S_POD_NAMESPACE", p.Namespace}, {"K8S_POD_NAME", p.Name}},
	}
}

// cniAdd runs ADD in the node's namespace (the plugin inherits the
// namespace of the thread that starts it) and returns the pod's
// addresses, in the result's order (the cluster's families).
func (n *Node) cniAdd(ctx context.Context, p *Pod, requested netip.Addr) ([]netip.Addr, error) {
	list := n.confList
	if requested.IsValid() {
		data, _ := json.Marshal(n.conf)
		var conf map[string]any
		_ = json.Unmarshal(data, &conf)
		plugin := conf["plugins"].([]any)[0].(map[string]any)
		plugin["ipam"].(map[string]any)["ipAddress"] = requested.String()
		data, _ = json.Marshal(conf)
		var err error
		if list, err = libcni.ConfListFromBytes(data); err != nil {
			return nil, err
		}
	}
	var ips []netip.Addr
	err := n.NS.Do(func() error {
		res, err := n.cni.AddNetworkList(ctx, list, n.runtimeConf(p))
		if err != nil {
			return fmt.Errorf("CNI ADD %s on %s: %w", p.Key(), n.Name, err)
		}
		data, _ := json.Marshal(res)
		var parsed struct {
			IPs []struct {
				Address string `json:"address"`
			} `json:"ips"`
		}
		if err := json.Unmarshal(data, &parsed); err != nil || len(parsed.IPs) != len(n.c.Families()) {
			return fmt.Errorf("CNI ADD %s: want one IP per family %v in result %s", p.Key(), n.c.Families(), data)
		}
		for i, rip := range parsed.IPs {
			pfx, err := netip.ParsePrefix(rip.Address)
			if err != nil {
				return err
			}
			if f := familyOf(pfx.Addr()); f != n.c.Families()[i] {
				return fmt.Errorf("CNI ADD %s: address %d is %s, want %v in result %s", p.Key(), i, f, n.c.Families(), data)
			}
			ips = append(ips, pfx.Addr())
		}
		return nil
	})
	return ips, err
}

func (n *Node) cniDel(ctx context.Context, p *Pod) error {
	return n.NS.Do(func() error {
		if err := n.cni.DelNetworkList(ctx, n.confList, n.runtimeConf(p)); err != nil {
			return fmt.Errorf("CNI DEL %s on %s: %w", p.Key(), n.Name, err)
		}
		return nil
	})
}

// startServer runs podserver on the pod's TCP and UDP ports (its default,
// 80 and 81, when ports has none of a protocol).
func (p *Pod) startServer(binDir string, ports []ContainerPort) error {
	args := []string{"netns", "exec", p.NS.Name, filepath.Join(binDir, "podserver")}
	for flag, proto := range map[string]corev1.Protocol{"--tcp": corev1.ProtocolTCP, "--udp": corev1.ProtocolUDP} {
		var list []string
		for _, cp := range ports {
			if cp.Protocol == proto {
				list = append(list, strconv.Itoa(int(cp.Port)))
			}
		}
		if len(list) > 0 {
			args = append(args, flag, strings.Join(list, ","))
		}
	}
	cmd := exec.Command("ip", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := owned.Start(cmd); err != nil {
		return err
	}
	p.server = cmd
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		first := true
		for sc.Scan() {
			line := sc.Text()
			if first {
				ready <- line == "ready"
				first = false
				continue
			}
			f := strings.Fields(line)
			if len(f) == 4 && f[0] == "sctp" {
				if tag, err := strconv.ParseUint(f[3], 10, 32); err == nil {
					p.mu.Lock()
					p.sctpSeen[uint32(tag)] = true
					p.mu.Unlock()
				}
			}
		}
		if first {
			ready <- false
		}
		_ = cmd.Wait()
		owned.Exited(cmd.Process.Pid)
	}()
	select {
	case ok := <-ready:
		if !ok {
			return fmt.Errorf("podserver in %s did not start", p.Key())
		}
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("podserver in %s: no ready line within 10s", p.Key())
	}
}

func (p *Pod) stopServer() {
	if p.server != nil && p.server.Process != nil {
		_ = p.server.Process.Kill()
	}
}

func (p *Pod) sawSCTP(tag uint32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sctpSeen[tag]
}

// Matrix probes every ordered pair of distinct pods (by index in pods)
// on port over proto, one after the other.
func (c *Cluster) Matrix(pods []*Pod, port int, proto string, timeout time.Duration) map[[2]int]bool {
	m := map[[2]int]bool{}
	for i, s := range pods {
		for j, d := range pods {
			if i != j {
				m[[2]int{i, j}] = c.Probe(s, d.IP, port, proto, timeout)
			}
		}
	}
	return m
}

// Probe reports whether a new connection from pod src to dst:port over
// proto gets through within timeout.
func (c *Cluster) Probe(src *Pod, dst netip.Addr, port int, proto string, timeout time.Duration) bool {
	return c.ProbeTo(src, nil, dst, port, proto, timeout)
}

// ProbeTo is Probe to dst, an address that leads to the pod dstPod (a
// Service's): an SCTP INIT counts as through when dstPod's server sees it.
// A nil dstPod is the pod whose address is dst.
func (c *Cluster) ProbeTo(src, dstPod *Pod, dst netip.Addr, port int, proto string, timeout time.Duration) bool {
	addr := net.JoinHostPort(dst.String(), strconv.Itoa(port))
	ok := false
	switch proto {
	case probe.TCP:
		_ = src.NS.Do(func() error { ok = probe.TCPConnect(addr, timeout); return nil })
	case probe.UDP:
		payload := fmt.Sprintf("%s->%s:%d@%d", src.Key(), dst, port, time.Now().UnixNano())
		port := src.udpPorts.Next()
		_ = src.NS.Do(func() error { ok = probe.UDPRoundTripFrom(port, addr, payload, timeout); return nil })
	case probe.SCTP:
		if dstPod == nil {
			c.mu.Lock()
			for _, p := range c.pods {
				if slices.Contains(p.IPs, dst) {
					dstPod = p
				}
			}
			c.mu.Unlock()
		}
		if dstPod == nil {
			return false
		}
		tag := uint32(time.Now().UnixNano()) | 1
		if err := src.NS.Do(func() error { return probe.SendSCTPInit(dst, uint16(port), tag) }); err != nil {
			return false
		}
		for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if dstPod.sawSCTP(tag) {
				return true
			}
		}
	}
	return ok
}

// Close stops every process and removes every namespace and file.
func (c *Cluster) Close() {
	c.stopServices()
	for _, n := range c.Nodes {
		n.StopNPM(false)
	}
	c.mu.Lock()
	pods := make([]*Pod, 0, len(c.pods))
	for _, p := range c.pods {
		pods = append(pods, p)
	}
	c.pods = map[string]*Pod{}
	c.mu.Unlock()
	for _, p := range pods {
		p.stopServer()
		_ = p.Node.cniDel(context.Background(), p)
		_ = p.NS.Delete()
	}
	if c.API != nil {
		_ = c.API.Stop()
	}
	for _, n := range c.Nodes {
		_ = n.NS.Delete()
	}
	if c.CP != nil {
		_ = c.CP.Delete()
	}
	if c.VNet != nil {
		_ = c.VNet.Delete()
	}
	if c.ownDir {
		_ = owned.RemoveDir(c.Dir)
	}
}

// DeleteNamespace deletes a namespace with its pods and policies. There is
// no kube-controller-manager in the simulation, so the harness does the
// namespace controller's work: it empties the namespace, then removes the
// "kubernetes" finalizer so the name can be reused at once.
func (c *Cluster) DeleteNamespace(ctx context.Context, name string) ([]Write, error) {
	var writes []Write
	c.mu.Lock()
	var pods []*Pod
	for _, p := range c.pods {
		if p.Namespace == name {
			pods = append(pods, p)
		}
	}
	c.mu.Unlock()
	for _, p := range pods {
		w, err := c.DeletePod(ctx, p.Namespace, p.Name)
		if err != nil {
			return nil, err
		}
		writes = append(writes, w)
	}
	if err := c.deleteServices(ctx, name); err != nil {
		return nil, err
	}
	nps, err := c.Client.NetworkingV1().NetworkPolicies(name).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, np := range nps.Items {
		w, err := c.DeletePolicy(ctx, name, np.Name)
		if err != nil {
			return nil, err
		}
		writes = append(writes, w)
	}
	if err := c.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		ns, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			break // gone
		}
		if len(ns.Spec.Finalizers) > 0 {
			ns.Spec.Finalizers = nil
			if _, err := c.Client.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
				return nil, fmt.Errorf("finalize namespace %s: %w", name, err)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("namespace %s still present after 30s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return append(writes, Write{Key: "namespace//" + name}), nil
}

// Pods returns every pod of the cluster.
func (c *Cluster) Pods() []*Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Pod, 0, len(c.pods))
	for _, p := range c.pods {
		out = append(out, p)
	}
	return out
}
