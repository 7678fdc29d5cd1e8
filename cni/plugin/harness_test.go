//go:build linux

package plugin_test

// The test harness drives the real plugin binaries through libcni, the way
// containerd does. The "node" is a network namespace with a veth eth0 to a
// second namespace playing the VNet (its end holds the subnet gateway
// 10.240.0.1); every pod is a namespace of its own. libcni forks the
// plugin from a goroutine locked into the node namespace, so the plugin
// does its host-side work there, never in the machine's root namespace.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/open-acn/acn/cni/cnitest"
	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/network"
	"github.com/open-acn/acn/cni/plugin"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
)

// Reference plugins from Debian's containernetworking-plugins.
const refPluginDir = "/usr/lib/cni"

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() == 0 && !fuzzing() {
		dir, err := owned.MkdirTemp("", "acn-cni-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := cnitest.BuildPlugins(dir); err != nil {
			fmt.Fprintln(os.Stderr, "build plugins:", err)
			os.Exit(1)
		}
		binDir = dir
		code := m.Run()
		_ = owned.RemoveDir(dir)
		removeRelease()
		os.Exit(code)
	}
	code := m.Run()
	removeRelease()
	os.Exit(code)
}

// fuzzing reports whether this process fuzzes (go test -fuzz starts a
// coordinator and workers, each running TestMain): the fuzz target needs no
// plugin binaries, and building them per worker would starve it.
func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// Addresses of the simulated VNet.
const (
	subnet     = cnitest.Subnet
	gatewayIP  = cnitest.GatewayIP
	nodeIP     = cnitest.NodeIP
	subnet6    = cnitest.Subnet6
	gatewayIP6 = cnitest.GatewayIP6
	nodeIP6    = cnitest.NodeIP6
)

// stateDir is where a node keeps state, logs and the libcni cache: on
// tmpfs like /var/run on a real node (fsync is then cheap), falling back
// to the test's temp dir.
func stateDir(t testing.TB) string {
	if os.Getenv("ACN_TEST_STATE_ON_DISK") != "" {
		return t.TempDir() // to see the cost of fsync on a real disk
	}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := owned.MkdirTemp("/dev/shm", "acn-cni-test-")
		if err == nil {
			t.Cleanup(func() { _ = owned.RemoveDir(d) })
			return d
		}
	}
	return t.TempDir()
}

type node struct {
	t        testing.TB
	ns, vnet *netnstest.NS
	dir      string // state, logs, libcni cache
	ifsFile  string
	cni      *libcni.CNIConfig
	env      []string // extra environment for the next plugin runs
	mu       sync.Mutex
}

// newNode makes the node and VNet namespaces and an interfaces file with
// `secondaries` addresses for pods (10.240.1.0 upwards).
func newNode(t testing.TB, secondaries int) *node {
	t.Helper()
	if binDir == "" {
		netnstest.RequireRoot(t)
	}
	n := &node{t: t, dir: stateDir(t)}
	n.ns = netnstest.New(t, "node")
	n.vnet = netnstest.New(t, "vnet")
	netnstest.Link(t, n.ns, "eth0", nodeIP+"/16", n.vnet, "gw0", gatewayIP+"/16")
	n.ns.MustExec(t, "ip", "route", "add", "default", "via", gatewayIP)
	// IPv6 on the same link (no DAD: the test network is fresh).
	n.ns.MustExec(t, "ip", "addr", "add", nodeIP6+"/64", "dev", "eth0", "nodad")
	n.vnet.MustExec(t, "ip", "addr", "add", gatewayIP6+"/64", "dev", "gw0", "nodad")
	n.ns.MustExec(t, "ip", "-6", "route", "add", "default", "via", gatewayIP6)
	// The VNet fabric delivers a pod's address to the node's NIC; proxy ARP
	// on eth0 plays that role for transparent mode (in bridge mode the pod
	// answers ARP itself through the bridge).
	n.ns.MustExec(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/eth0/proxy_arp; echo 0 > /proc/sys/net/ipv4/neigh/eth0/proxy_delay")
	n.ifsFile = filepath.Join(n.dir, "interfaces.json")
	n.writeInterfaces(secondaries)
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{binDir, refPluginDir}, filepath.Join(n.dir, "cache"), n.exec())
	return n
}

func (n *node) writeInterfaces(secondaries int) {
	if err := cnitest.WriteInterfaces(n.ifsFile, secondaries); err != nil {
		n.t.Fatal(err)
	}
}

// exec runs plugins from a thread inside the node namespace, with the
// node's extra environment.
func (n *node) exec() *cnitest.Exec {
	return &cnitest.Exec{NS: n.ns, Dir: n.dir, Env: n.getEnv}
}

func (n *node) setEnv(kv ...string) {
	n.mu.Lock()
	n.env = kv
	n.mu.Unlock()
}

func (n *node) getEnv() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.env
}

// netConf is the azure-vnet plugin entry of a conflist.
func (n *node) netConf(mode string, extra map[string]interface{}) map[string]interface{} {
	c := map[string]interface{}{
		"type":     "azure-vnet",
		"mode":     mode,
		"stateDir": n.dir,
		"logFile":  filepath.Join(n.dir, "azure-vnet.log"),
		"logLevel": "debug",
		"ipam": map[string]interface{}{
			"type":           "azure-vnet-ipam",
			"environment":    "file",
			"interfacesFile": n.ifsFile,
		},
		"dns": map[string]interface{}{"nameservers": []string{"168.63.129.16"}},
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// withFamilies sets ipam.ipFamilies of a netConf (nil: the default).
func withFamilies(c map[string]interface{}, families []string) map[string]interface{} {
	if families != nil {
		c["ipam"].(map[string]interface{})["ipFamilies"] = families
	}
	return c
}

// list builds a conflist of the given plugin entries.
func (n *node) list(cniVersion string, plugins ...map[string]interface{}) *libcni.NetworkConfigList {
	n.t.Helper()
	data, err := json.Marshal(map[string]interface{}{"cniVersion": cniVersion, "name": "azure", "plugins": plugins})
	if err != nil {
		n.t.Fatal(err)
	}
	l, err := libcni.NetworkConfFromBytes(data)
	if err != nil {
		n.t.Fatalf("conflist: %v\n%s", err, data)
	}
	return l
}

type pod struct {
	id string
	ns *netnstest.NS
}

func (n *node) newPod(name string) *pod {
	n.t.Helper()
	return &pod{id: containerID(name), ns: netnstest.New(n.t, "pod")}
}

// containerID makes a 64-hex-digit ID as containerd does.
func containerID(name string) string {
	s := fmt.Sprintf("%x", name)
	for len(s) < 64 {
		s += "0"
	}
	return s[:64]
}

func (p *pod) rt() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: p.id, NetNS: p.ns.Path, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", "pod-" + p.id[:6]}}}
}

func (n *node) add(l *libcni.NetworkConfigList, p *pod) (*types100.Result, error) {
	r, err := n.cni.AddNetworkList(context.Background(), l, p.rt())
	if err != nil {
		return nil, err
	}
	return types100.NewResultFromResult(r)
}

func (n *node) mustAdd(l *libcni.NetworkConfigList, p *pod) *types100.Result {
	n.t.Helper()
	r, err := n.add(l, p)
	if err != nil {
		n.t.Fatalf("ADD %s: %v", p.id[:8], err)
	}
	return r
}

func (n *node) del(l *libcni.NetworkConfigList, p *pod) error {
	return n.cni.DelNetworkList(context.Background(), l, p.rt())
}

func (n *node) mustDel(l *libcni.NetworkConfigList, p *pod) {
	n.t.Helper()
	if err := n.del(l, p); err != nil {
		n.t.Fatalf("DEL %s: %v", p.id[:8], err)
	}
}

func (n *node) handle() *netlink.Handle {
	n.t.Helper()
	h, err := n.ns.Handle()
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(h.Close)
	return h
}

// podIP returns the address of the pod's interface in an IPv4-only result.
func podIP(t testing.TB, res *types100.Result) net.IP {
	t.Helper()
	if len(res.IPs) != 1 {
		t.Fatalf("want 1 IP in result, got %d", len(res.IPs))
	}
	return res.IPs[0].Address.IP
}

// resultIPs returns every address of a result, in its order.
func resultIPs(res *types100.Result) []net.IP {
	var out []net.IP
	for _, ipc := range res.IPs {
		out = append(out, ipc.Address.IP)
	}
	return out
}

// assertGone checks that nothing of the pod remains: no host veth, no
// host route or neighbour for its address, no interface in the pod, no
// endpoint or allocation in the state files.
func (n *node) assertGone(p *pod, ip net.IP) {
	n.t.Helper()
	h := n.handle()
	veth := network.HostVethName(p.id, "eth0")
	if _, err := h.LinkByName(veth); err == nil {
		n.t.Errorf("host veth %s still exists", veth)
	}
	if ip != nil {
		routes, _ := h.RouteList(nil, netlink.FAMILY_ALL)
		for _, r := range routes {
			if r.Dst != nil && r.Dst.IP.Equal(ip) {
				n.t.Errorf("route to %s still exists: %v", ip, r)
			}
		}
		neighs, _ := h.NeighList(0, netlink.FAMILY_ALL)
		for _, nb := range neighs {
			if nb.IP.Equal(ip) && nb.State&netlink.NUD_PERMANENT != 0 {
				n.t.Errorf("permanent neighbour %s still exists", ip)
			}
		}
	}
	if out, err := p.ns.Exec("ip", "-o", "link", "show"); err == nil && strings.Contains(out, "eth0") {
		n.t.Errorf("pod still has eth0: %s", out)
	}
	vs, is := n.state()
	if ep, ok := vs.Endpoints[p.id+"/eth0"]; ok {
		n.t.Errorf("state still has endpoint %+v", ep)
	}
	if a := is.Find(p.id, "eth0"); a != nil {
		n.t.Errorf("address %s still allocated to %s", a.IP, p.id[:8])
	}
}

func (n *node) state() (*plugin.VnetState, *ipam.State) {
	vs := &plugin.VnetState{Endpoints: map[string]*plugin.Endpoint{}}
	if data, err := os.ReadFile(filepath.Join(n.dir, plugin.VnetStateFile)); err == nil {
		_ = json.Unmarshal(data, vs)
	}
	is := ipam.NewState()
	if data, err := os.ReadFile(filepath.Join(n.dir, plugin.IPAMStateFile)); err == nil {
		_ = json.Unmarshal(data, is)
	}
	is.Normalize()
	return vs, is
}

// ownedVeths lists the azure-vnet veths in the node.
func (n *node) ownedVeths() []network.Owned {
	n.t.Helper()
	o, err := network.ListOwned(n.handle())
	if err != nil {
		n.t.Fatal(err)
	}
	return o
}

// cniCode extracts the CNI error code from a libcni error.
func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// ping sends ICMP (or ICMPv6) echo requests from inside ns to dst and
// waits for a reply.
func ping(ns *netnstest.NS, dst string) error { return cnitest.Ping(ns, dst) }

func init() {
	// Plugins run from goroutines locked into the node namespace; give the
	// runtime room for many of them.
	runtime.GOMAXPROCS(runtime.NumCPU())
}
