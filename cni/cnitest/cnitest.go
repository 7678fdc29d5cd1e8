//go:build linux

// Package cnitest is what the plugin tests (cni/plugin) and the CNI
// benchmark (test/bench/cni) share: building the plugin binaries, running
// them through libcni from inside a "node" network namespace, and the
// node's interfaces file.
package cnitest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/internal/netnstest"
)

// Addresses of the simulated VNet: the node's NIC and the subnet gateway
// (held by the namespace playing the VNet).
const (
	Subnet    = "10.240.0.0/16"
	GatewayIP = "10.240.0.1"
	NodeIP    = "10.240.0.4"
	// The VNet's IPv6 subnet (a ULA: the documentation prefix is a
	// forbidden range).
	Subnet6    = "fd00:240::/64"
	GatewayIP6 = "fd00:240::1"
	NodeIP6    = "fd00:240::4"
)

// BuildPlugins builds azure-vnet and azure-vnet-ipam into dir for tests:
// with the failpoints build tag, so the crash tests can stop them at a step
// (cni/failpoint). The go tool's output goes to stderr.
func BuildPlugins(dir string) error {
	cmd := exec.Command(GoTool(), "build", "-tags", "failpoints", "-o", dir+"/",
		"github.com/open-acn/acn/cmd/azure-vnet", "github.com/open-acn/acn/cmd/azure-vnet-ipam")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// BuildRelease builds both plugins into dir the release way: `make
// azure-vnet azure-vnet-ipam` with OUT=dir, in the module root. The
// output of make goes to stderr.
func BuildRelease(dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("make", "--no-print-directory", "-C", root, "OUT="+dir, "GO="+GoTool(), "azure-vnet", "azure-vnet-ipam")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// moduleRoot is the directory of the project's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command(GoTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the module (go env GOMOD is %q)", mod)
	}
	return filepath.Dir(mod), nil
}

// GoTool is the go command: from PATH, else the toolchain this binary was
// built with (CI may run tests with a bare PATH).
func GoTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// WriteInterfaces writes the node's interfaces file: the primary NIC with
// NodeIP and `secondaries` addresses for pods (10.240.1.1 upwards, 250
// per /24), and the IPv6 subnet with NodeIP6 and as many IPv6 addresses
// (fd00:240::1:1 upwards).
func WriteInterfaces(path string, secondaries int) error {
	return WriteInterfacesDual(path, secondaries, secondaries)
}

// WriteInterfacesDual is WriteInterfaces with a number of addresses per
// family (0 IPv6 addresses: no IPv6 subnet at all).
func WriteInterfacesDual(path string, v4, v6 int) error {
	addrs := []ipam.IPAddress{{Address: NodeIP, IsPrimary: true}}
	for i := 0; i < v4; i++ {
		addrs = append(addrs, ipam.IPAddress{Address: fmt.Sprintf("10.240.%d.%d", 1+i/250, 1+i%250)})
	}
	subnets := []ipam.IPSubnet{{Prefix: Subnet, IPAddresses: addrs}}
	if v6 > 0 {
		addrs6 := []ipam.IPAddress{{Address: NodeIP6, IsPrimary: true}}
		for i := 0; i < v6; i++ {
			addrs6 = append(addrs6, ipam.IPAddress{Address: fmt.Sprintf("fd00:240::1:%x", i+1)})
		}
		subnets = append(subnets, ipam.IPSubnet{Prefix: Subnet6, IPAddresses: addrs6})
	}
	data, err := json.Marshal(ipam.Interfaces{Interfaces: []ipam.Interface{{MacAddress: "000D3A000001", IsPrimary: true,
		IPSubnets: subnets}}})
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// Exec is libcni's exec that forks the plugins from a thread inside NS,
// so they do their host-side work there. Whatever the config says (or
// fails to say, when it does not parse), logs and state stay in Dir,
// never in /var.
type Exec struct {
	NS  *netnstest.NS
	Dir string
	// Env, if set, returns extra environment for the next run.
	Env func() []string
	// Stderr receives the plugins' stderr (nil: discarded).
	Stderr io.Writer
	version.PluginDecoder
}

// ExecPlugin implements invoke.Exec.
func (e *Exec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	environ = append(environ, config.EnvLogFile+"="+filepath.Join(e.Dir, "plugin.log"), config.EnvStateDir+"="+e.Dir)
	if e.Env != nil {
		environ = append(environ, e.Env()...)
	}
	var out []byte
	var err error
	if derr := e.NS.Do(func() error {
		out, err = (&invoke.RawExec{Stderr: e.Stderr}).ExecPlugin(ctx, path, stdin, environ)
		return nil
	}); derr != nil {
		return nil, derr
	}
	return out, err
}

// FindInPath implements invoke.Exec.
func (e *Exec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// Ping sends up to three ICMP (or ICMPv6) echo requests, a second apart,
// from inside ns to dst and returns at the first reply. A link-local dst
// is reached through the namespace's eth0 (a pod's interface).
func Ping(ns *netnstest.NS, dst string) error {
	var c *icmp.PacketConn
	v6 := net.ParseIP(dst).To4() == nil
	network, laddr, proto := "ip4:icmp", "0.0.0.0", 1
	var echo, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if v6 {
		network, laddr, proto = "ip6:ipv6-icmp", "::", 58
		echo, reply = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	if err := ns.Do(func() error {
		var err error
		c, err = icmp.ListenPacket(network, laddr)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	buf := make([]byte, 1500)
	for seq := 1; seq <= 3; seq++ {
		msg := icmp.Message{Type: echo, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("acn-ping")}}
		b, _ := msg.Marshal(nil)
		dstAddr := &net.IPAddr{IP: net.ParseIP(dst)}
		if v6 && dstAddr.IP.IsLinkLocalUnicast() {
			// The pod's interface, by index: a zone name would be looked
			// up in the test's own namespace.
			if err := ns.Do(func() error {
				ifc, err := net.InterfaceByName("eth0")
				if err == nil {
					dstAddr.Zone = strconv.Itoa(ifc.Index)
				}
				return err
			}); err != nil {
				return err
			}
		}
		if _, err := c.WriteTo(b, dstAddr); err != nil {
			return fmt.Errorf("ping %s: %w", dst, err)
		}
		deadline := time.Now().Add(time.Second)
		_ = c.SetReadDeadline(deadline)
		for time.Now().Before(deadline) {
			nr, peer, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			m, err := icmp.ParseMessage(proto, buf[:nr])
			if err != nil || m.Type != reply {
				continue
			}
			pa, _ := peer.(*net.IPAddr)
			if e, ok := m.Body.(*icmp.Echo); ok && e.Seq == seq && pa != nil && pa.IP.Equal(net.ParseIP(dst)) {
				return nil
			}
		}
	}
	return fmt.Errorf("ping %s from %s: no reply", dst, ns.Name)
}
