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
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"

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

// BuildPlugins builds azure-vnet and azure-vnet-ipam into dir (the go
// tool's output goes to stderr).
func BuildPlugins(dir string) error {
	cmd := exec.Command(GoTool(), "build", "-o", dir+"/",
		"github.com/open-acn/acn/cmd/azure-vnet", "github.com/open-acn/acn/cmd/azure-vnet-ipam")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
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
