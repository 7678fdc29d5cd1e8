//go:build linux

package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// RootNetnsState is what kube-proxy (or azure-npm) would change in the
// machine's root network namespace if it ran there or wrote a global
// setting: the iptables, ip6tables and nftables rules (counters and
// timestamps left out) and the sysctls kube-proxy writes. Two calls
// around a run must return the same.
func RootNetnsState() (string, error) {
	var b strings.Builder
	for _, argv := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%v: %v: %s", argv, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			if strings.HasPrefix(line, ":") {
				line, _, _ = strings.Cut(line, " [")
			}
			b.WriteString(line + "\n")
		}
	}
	for _, f := range []string{"/proc/sys/net/ipv4/conf/all/route_localnet", "/proc/sys/net/netfilter/nf_conntrack_max",
		"/sys/module/nf_conntrack/parameters/hashsize", "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established",
		"/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait", "/proc/sys/net/ipv4/ip_forward",
		"/proc/sys/net/bridge/bridge-nf-call-iptables"} {
		data, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "%s=%s", f, data)
	}
	return b.String(), nil
}
