package ipam

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
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
// hold the blocks as plain text (the words of the first line, e.g.
// "10.244.3.0/24" or "10.244.3.0/24,fd00:10:244:3::/64"). The first entry
// of each family is used (podCIDRs as in the Node's spec wins over
// podCIDR).
type PodCIDRFile struct {
	PodCIDR  string   `json:"podCIDR,omitempty"`
	PodCIDRs []string `json:"podCIDRs,omitempty"`
}

// ParsePodCIDRFile decodes the content of ipam.podCIDRFile: JSON
// {"podCIDRs":["10.244.3.0/24"]} or {"podCIDR":"10.244.3.0/24"}, or plain
// text whose first word is the block ('#' starts a comment line).
func ParsePodCIDRFile(data []byte) ([]*net.IPNet, error) {
	text := strings.TrimSpace(string(data))
	if strings.HasPrefix(text, "{") {
		var f PodCIDRFile
		if err := json.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("pod CIDR JSON: %w", err)
		}
		return podCIDRs(append(append([]string(nil), f.PodCIDRs...), f.PodCIDR))
	}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		return podCIDRs(strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' }))
	}
	return nil, fmt.Errorf("no pod CIDR in the file")
}

// podCIDRs parses a node's pod CIDRs: the first of each family counts.
func podCIDRs(ss []string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, s := range ss {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("pod CIDR %q: not a CIDR like 10.244.3.0/24 or fd00:10:244:3::/64", s)
		}
		if !ip.Equal(n.IP) {
			return nil, fmt.Errorf("pod CIDR %q has host bits set (want %s)", s, n)
		}
		if blockOf(out, config.FamilyOf(n.IP)) == nil {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no pod CIDR given")
	}
	return out, nil
}

func blockOf(blocks []*net.IPNet, family string) *net.IPNet {
	for _, b := range blocks {
		if config.FamilyOf(b.IP) == family {
			return b
		}
	}
	return nil
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

// OverlayBlocks returns the node's pod blocks for overlay mode, one per
// family of ipam.ipFamilies in that order, each checked against the
// cluster CIDR of its family (a mismatch, or a family the node has no
// block of, is a configuration error).
//
// ipam.subnet: the block itself. ipam.podCIDRFile: read every time (a
// local read is cheaper than a cache). ipam.kubeconfig: the Node's
// spec.podCIDRs, cached in <stateDir>/azure-vnet-ipam-node.json for
// queryInterval (maxAge < 0; 0 forces a read). Never called under the
// state lock.
func OverlayBlocks(ctx context.Context, cfg *config.NetConf, maxAge time.Duration, client *http.Client) ([]*net.IPNet, error) {
	var blocks []*net.IPNet
	from := "ipam.subnet"
	switch {
	case cfg.IPAM.SubnetNets != nil:
		blocks = cfg.IPAM.SubnetNets
	case cfg.IPAM.PodCIDRFile != "":
		from = cfg.IPAM.PodCIDRFile
		data, err := os.ReadFile(cfg.IPAM.PodCIDRFile)
		if err != nil {
			return nil, &SourceError{err}
		}
		if blocks, err = ParsePodCIDRFile(data); err != nil {
			return nil, &SourceError{fmt.Errorf("%s: %w", cfg.IPAM.PodCIDRFile, err)}
		}
	default:
		from = "the Node's spec.podCIDRs"
		var err error
		if blocks, err = nodeBlocks(ctx, cfg, maxAge, client); err != nil {
			return nil, err
		}
	}
	var out []*net.IPNet
	for _, fam := range cfg.IPAM.IPFamilies {
		b := blockOf(blocks, fam)
		if b == nil {
			return nil, config.Invalid("ipam.ipFamilies asks for %s, but %s has no %s block (%v)", fam, from, fam, blocks)
		}
		if err := config.ValidateBlock(b, cfg.IPAM.ClusterCIDRFor(fam)); err != nil {
			return nil, config.Invalid("%v", err)
		}
		out = append(out, b)
	}
	return out, nil
}

func nodeBlocks(ctx context.Context, cfg *config.NetConf, maxAge time.Duration, client *http.Client) ([]*net.IPNet, error) {
	node, err := NodeName(cfg)
	if err != nil {
		return nil, config.Invalid("ipam.nodeName: not set, $%s empty and no hostname: %v", config.EnvNodeName, err)
	}
	cachePath := filepath.Join(cfg.StateDir, "azure-vnet-ipam-node.json")
	var c nodeCache
	if ok, _, _ := store.Load(cachePath, &c); ok && c.Kubeconfig == cfg.IPAM.Kubeconfig && c.Node == node && fresh(cfg, c.Fetched, maxAge) {
		if b, err := podCIDRs(c.PodCIDRs); err == nil {
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
	b, err := podCIDRs(cidrs)
	if err != nil {
		return nil, &SourceError{fmt.Errorf("node %s: spec.podCIDRs %v: %w", node, cidrs, err)}
	}
	_ = store.Save(cachePath, &nodeCache{Kubeconfig: cfg.IPAM.Kubeconfig, Node: node, Fetched: time.Now(), PodCIDRs: cidrs})
	return b, nil
}

// OverlayPool is the pool of a node's block: every address but the
// network and broadcast addresses (a /24 gives 254 pods); IPv6: every
// address but the subnet-router anycast one (offset 0). azure-vnet's
// pods use 169.254.1.1 as gateway, so the block's first host is a pod
// address too; azure-vnet-ipam under another plugin returns the first
// host as the gateway (that plugin puts it on its bridge), so it is kept
// out of the pool there (reserveGateway).
func OverlayPool(block *net.IPNet, reserveGateway bool) *Pool {
	p := &Pool{Subnet: block, Gateway: FirstHost(block), Overlay: true, Ranged: true, First: 1}
	ones, bits := block.Mask.Size()
	hostBits := uint(bits - ones) // at most 64 (config.ValidateBlock)
	p.Last = math.MaxUint64
	if hostBits < 64 {
		p.Last = 1<<hostBits - 1
	}
	if config.FamilyOf(block.IP) == config.IPv4 {
		p.Last-- // broadcast
	}
	if reserveGateway {
		p.First = 2
	}
	return p
}
