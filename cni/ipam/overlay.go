//go:build linux

package ipam

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/store"
)

// PodCIDRFile is the JSON form of ipam.podCIDRFile. The file may instead
// hold the block as plain text (its first word, e.g. "10.244.3.0/24").
// The first IPv4 entry is used (podCIDRs as in the Node's spec wins over
// podCIDR).
type PodCIDRFile struct {
	PodCIDR  string   `json:"podCIDR,omitempty"`
	PodCIDRs []string `json:"podCIDRs,omitempty"`
}

// ParsePodCIDRFile decodes the content of ipam.podCIDRFile: JSON
// {"podCIDRs":["10.244.3.0/24"]} or {"podCIDR":"10.244.3.0/24"}, or plain
// text whose first word is the block ('#' starts a comment line).
func ParsePodCIDRFile(data []byte) (*net.IPNet, error) {
	text := strings.TrimSpace(string(data))
	if strings.HasPrefix(text, "{") {
		var f PodCIDRFile
		if err := json.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("pod CIDR JSON: %w", err)
		}
		return firstIPv4CIDR(append(append([]string(nil), f.PodCIDRs...), f.PodCIDR))
	}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return firstIPv4CIDR(strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' }))
	}
	return nil, fmt.Errorf("no pod CIDR in the file")
}

func firstIPv4CIDR(ss []string) (*net.IPNet, error) {
	var bad []string
	for _, s := range ss {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			bad = append(bad, s)
			continue
		}
		if ip.To4() == nil {
			continue // the IPv6 half of a dual-stack node
		}
		if !ip.Equal(n.IP) {
			return nil, fmt.Errorf("pod CIDR %q has host bits set (want %s)", s, n)
		}
		return n, nil
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("pod CIDR %q: not a CIDR like 10.244.3.0/24", bad[0])
	}
	return nil, fmt.Errorf("no IPv4 pod CIDR given")
}

// nodeCache is what the kubeconfig source keeps between invocations (the
// plugin is a new process per call): the Node's podCIDRs and when they
// were read.
type nodeCache struct {
	Kubeconfig string    `json:"kubeconfig"`
	Node       string    `json:"node"`
	Fetched    time.Time `json:"fetched"`
	PodCIDRs   []string  `json:"podCIDRs"`
}

// NodeName is the Node overlay reads: ipam.nodeName, $K8S_NODE_NAME, or
// the hostname (lower-cased, as the kubelet registers it).
func NodeName(cfg *config.NetConf) (string, error) {
	if cfg.IPAM.NodeName != "" {
		return cfg.IPAM.NodeName, nil
	}
	if n := os.Getenv(config.EnvNodeName); n != "" {
		return n, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", err
	}
	return strings.ToLower(h), nil
}

// OverlayBlock returns the node's pod block for overlay mode and checks
// it against the cluster CIDR (a mismatch is a configuration error).
//
// ipam.subnet: the block itself. ipam.podCIDRFile: read every time (a
// local read is cheaper than a cache). ipam.kubeconfig: the Node's
// spec.podCIDRs, cached in <stateDir>/azure-vnet-ipam-node.json for
// queryInterval (maxAge < 0; 0 forces a read). Never called under the
// state lock.
func OverlayBlock(ctx context.Context, cfg *config.NetConf, maxAge time.Duration, client *http.Client) (*net.IPNet, error) {
	var block *net.IPNet
	switch {
	case cfg.IPAM.SubnetNet != nil:
		block = cfg.IPAM.SubnetNet
	case cfg.IPAM.PodCIDRFile != "":
		data, err := os.ReadFile(cfg.IPAM.PodCIDRFile)
		if err != nil {
			return nil, &SourceError{err}
		}
		if block, err = ParsePodCIDRFile(data); err != nil {
			return nil, &SourceError{fmt.Errorf("%s: %w", cfg.IPAM.PodCIDRFile, err)}
		}
	default:
		var err error
		if block, err = nodeBlock(ctx, cfg, maxAge, client); err != nil {
			return nil, err
		}
	}
	if err := config.ValidateBlock(block, cfg.IPAM.ClusterCIDRNet); err != nil {
		return nil, config.Invalid("%v", err)
	}
	return block, nil
}

func nodeBlock(ctx context.Context, cfg *config.NetConf, maxAge time.Duration, client *http.Client) (*net.IPNet, error) {
	node, err := NodeName(cfg)
	if err != nil {
		return nil, config.Invalid("ipam.nodeName: not set, $%s empty and no hostname: %v", config.EnvNodeName, err)
	}
	cachePath := filepath.Join(cfg.StateDir, "azure-vnet-ipam-node.json")
	var c nodeCache
	if ok, _, _ := store.Load(cachePath, &c); ok && c.Kubeconfig == cfg.IPAM.Kubeconfig && c.Node == node && fresh(cfg, c.Fetched, maxAge) {
		if b, err := firstIPv4CIDR(c.PodCIDRs); err == nil {
			return b, nil
		}
	}
	kc, err := LoadKubeconfig(cfg.IPAM.Kubeconfig)
	if err != nil {
		return nil, config.Invalid("ipam.kubeconfig %s: %v", cfg.IPAM.Kubeconfig, err)
	}
	cidrs, err := kc.NodePodCIDRs(ctx, node, client)
	if err != nil {
		return nil, &SourceError{err}
	}
	b, err := firstIPv4CIDR(cidrs)
	if err != nil {
		return nil, &SourceError{fmt.Errorf("node %s: spec.podCIDRs %v: %w", node, cidrs, err)}
	}
	_ = store.Save(cachePath, &nodeCache{Kubeconfig: cfg.IPAM.Kubeconfig, Node: node, Fetched: time.Now(), PodCIDRs: cidrs})
	return b, nil
}

// OverlayPool is the pool of a node's block: every address but the
// network and broadcast addresses (a /24 gives 254 pods). azure-vnet's
// pods use 169.254.1.1 as gateway, so the block's first host is a pod
// address too; azure-vnet-ipam under another plugin returns the first
// host as the gateway (that plugin puts it on its bridge), so it is kept
// out of the pool there (reserveGateway).
func OverlayPool(block *net.IPNet, reserveGateway bool) *Pool {
	p := &Pool{Subnet: block, Gateway: FirstHost(block), Overlay: true}
	ones, bits := block.Mask.Size()
	base := binary.BigEndian.Uint32(block.IP.To4())
	size := uint32(1) << uint(bits-ones)
	first := uint32(1)
	if reserveGateway {
		first = 2
	}
	for off := first; off+1 < size; off++ {
		ip := make(net.IP, 4)
		binary.BigEndian.PutUint32(ip, base+off)
		p.Addresses = append(p.Addresses, ip)
	}
	return p
}
