//go:build linux

// Command demo is `make demo`: a two-node cluster on this machine (network
// namespaces, the real kube-apiserver, pods plumbed by azure-vnet and
// azure-vnet-ipam, azure-npm on each node), the connectivity matrix before
// and after the sample policies of deploy/examples/, the lines azure-npm
// logged for them, and `azure-npm explain` on one connection. With KEEP=1
// it stays up until Ctrl-C and prints how to poke at it. DEMO_CLUSTER=real
// runs it on the real cluster of test/realcluster instead.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/internal/probe"
	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/test/cluster"
)

type demoPod struct {
	ns, name, app string
	node          int
	ports         []cluster.ContainerPort
}

var pods = []demoPod{
	{"demo", "frontend", "frontend", 0, nil},
	{"demo", "backend", "backend", 1, []cluster.ContainerPort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}, {Name: "metrics", Port: 81, Protocol: corev1.ProtocolTCP}}},
	{"demo", "db", "db", 0, nil},
	{"other", "client", "client", 1, nil},
}

// policies applied by the demo, from deploy/examples/.
var policyFiles = []string{"deny-all.yaml", "allow-frontend-to-backend.yaml"}

func main() {
	out := flag.String("out", "out", "build output directory (binaries)")
	flag.Parse()
	keep := os.Getenv("KEEP") == "1"
	run := run
	if os.Getenv("DEMO_CLUSTER") == "real" {
		run = func(ctx context.Context, _ string, keep bool) error { return runReal(ctx, keep) }
	}
	// Ctrl-C, SIGTERM or a closed stdout stops the demo and removes every
	// namespace, process and directory it made.
	owned.Main(func(ctx context.Context) error {
		if err := run(ctx, *out, keep); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		return nil
	})
}

func step(format string, args ...any) { fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...) }

func run(ctx context.Context, outDir string, keep bool) error {
	bin, err := filepath.Abs(outDir)
	if err != nil {
		return err
	}
	dir, err := owned.MkdirTemp("", "acn-demo-")
	if err != nil {
		return err
	}
	step("building a two-node cluster: VNet, control plane, nodes, azure-npm on each node")
	c, err := cluster.New(ctx, cluster.Config{Nodes: 2, BinDir: bin, Dir: dir, Logf: func(f string, a ...any) { fmt.Printf("    "+f+"\n", a...) }})
	if err != nil {
		_ = owned.RemoveDir(dir)
		return err
	}
	defer func() {
		step("cleaning up (namespaces acn-*, processes, %s)", dir)
		c.Close()
		_ = owned.RemoveDir(dir)
	}()

	step("creating namespaces and pods through the API; the CNI plumbs each pod on its node")
	var writes []cluster.Write
	for _, ns := range []string{"demo", "other"} {
		w, err := c.CreateNamespace(ctx, ns, nil)
		if err != nil {
			return err
		}
		writes = append(writes, w)
	}
	var live []*cluster.Pod
	for _, dp := range pods {
		ports := dp.ports
		if ports == nil {
			ports = []cluster.ContainerPort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
		}
		p, w, err := c.CreatePod(ctx, c.Nodes[dp.node], dp.ns, dp.name, map[string]string{"app": dp.app}, ports)
		if err != nil {
			return err
		}
		writes = append(writes, w)
		live = append(live, p)
		fmt.Printf("    %-15s on %s  ip %s\n", p.Key(), p.Node.Name, p.IP)
	}
	if _, err := c.WaitEnforced(ctx, writes, time.Minute); err != nil {
		return err
	}

	step("connectivity before any policy (TCP 80, a real connect from each pod)")
	before := c.Matrix(live, 80, probe.TCP, 500*time.Millisecond)
	printMatrix(live, before, nil)

	step("opting namespace demo in to flow logs of denied connections (annotation %s=deny)", flowlog.Annotation)
	if _, err := c.AnnotateNamespace(ctx, "demo", flowlog.Annotation, "deny"); err != nil {
		return err
	}

	step("applying deploy/examples/%s", strings.Join(policyFiles, " and deploy/examples/"))
	writes = nil
	var names []string
	for _, f := range policyFiles {
		np, err := readPolicy(filepath.Join("deploy", "examples", f))
		if err != nil {
			return err
		}
		w, err := c.CreatePolicy(ctx, np)
		if err != nil {
			return err
		}
		writes = append(writes, w)
		names = append(names, np.Namespace+"/"+np.Name)
		y, _ := yaml.Marshal(np.Spec)
		fmt.Printf("    %s:\n%s", np.Namespace+"/"+np.Name, indent(string(y), "      "))
	}
	took, err := c.WaitEnforced(ctx, writes, time.Minute)
	if err != nil {
		return err
	}
	fmt.Printf("    enforced on every node %.1f ms after the API accepted the last policy\n", float64(took.Microseconds())/1000)

	step("connectivity with the policies (changes marked *)")
	after := c.Matrix(live, 80, probe.TCP, 500*time.Millisecond)
	printMatrix(live, after, before)

	step("the denied attempts in the flow logs, with policy and rule (azure-npm flows --verdict deny, on each node)")
	time.Sleep(300 * time.Millisecond) // the last attempts' lines reach the files
	for _, n := range c.Nodes {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "azure-npm"), "flows", "--verdict", "deny", "--file", n.NPMFlowLog())
		outp, err := cmd.CombinedOutput()
		fmt.Printf("    %s $ azure-npm flows --verdict deny\n%s", n.Name, indent(string(outp), "    "))
		if err != nil {
			return fmt.Errorf("flows: %w", err)
		}
	}

	step("what azure-npm logged for these policies (%s)", c.Nodes[1].NPMLog())
	printLog(c.Nodes[1].NPMLog(), names, 14)

	step("azure-npm explain, asked on %s", c.Nodes[1].Name)
	for _, q := range [][2]string{{"demo/frontend", "demo/backend"}, {"demo/db", "demo/backend"}} {
		// On the node, through the agent's local socket: what
		// `kubectl exec ds/azure-npm -- azure-npm explain` does.
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", c.Nodes[1].NS.Name, filepath.Join(bin, "azure-npm"), "explain",
			"--socket", c.Nodes[1].NPMSocket(), "--from", q[0], "--to", q[1], "--port", "80/tcp")
		outp, err := cmd.CombinedOutput()
		fmt.Printf("    $ azure-npm explain --from %s --to %s --port 80/tcp\n%s", q[0], q[1], indent(string(outp), "    "))
		if err != nil {
			return fmt.Errorf("explain: %w", err)
		}
	}

	if keep {
		kubectl := filepath.Join(bin, "tools", "kubectl")
		step("KEEP=1: the cluster stays up until Ctrl-C. Try:")
		fmt.Printf("    ip netns exec %s %s --kubeconfig %s get pods -A -o wide\n", c.CP.Name, kubectl, c.API.Kubeconfig)
		fmt.Printf("    ip netns exec %s %s --kubeconfig %s delete networkpolicy -n demo deny-all\n", c.CP.Name, kubectl, c.API.Kubeconfig)
		fmt.Printf("    ip netns exec %s %s explain --socket %s --from demo/db --to demo/backend --port 80\n", c.Nodes[1].NS.Name, filepath.Join(bin, "azure-npm"), c.Nodes[1].NPMSocket())
		fmt.Printf("    %s status --socket %s\n", filepath.Join(bin, "azure-npm"), c.Nodes[1].NPMSocket())
		fmt.Printf("    ip netns exec %s iptables-save | grep AZURE-NPM\n", c.Nodes[1].NS.Name)
		fmt.Printf("    tail -f %s\n", c.Nodes[1].NPMLog())
		fmt.Printf("    %s flows --follow --file %s\n", filepath.Join(bin, "azure-npm"), c.Nodes[1].NPMFlowLog())
		<-ctx.Done()
	}
	return nil
}

func readPolicy(path string) (*networkingv1.NetworkPolicy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var np networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict(data, &np); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &np, nil
}

func printMatrix(pods []*cluster.Pod, m, prev map[[2]int]bool) {
	fmt.Printf("    %-16s", "from \\ to")
	for _, p := range pods {
		fmt.Printf("%-16s", p.Key())
	}
	fmt.Println()
	for i, s := range pods {
		fmt.Printf("    %-16s", s.Key())
		for j := range pods {
			cell := "-"
			if i != j {
				cell = "allowed"
				if !m[[2]int{i, j}] {
					cell = "DENIED"
				}
				if prev != nil && prev[[2]int{i, j}] != m[[2]int{i, j}] {
					cell += " *"
				}
			}
			fmt.Printf("%-16s", cell)
		}
		fmt.Println()
	}
}

func printLog(path string, policies []string, max int) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Printf("    (cannot read log: %v)\n", err)
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	shown, total := 0, 0
	for sc.Scan() {
		line := sc.Text()
		for _, p := range policies {
			if strings.Contains(line, p) {
				total++
				if shown < max {
					fmt.Println("    " + line)
					shown++
				}
				break
			}
		}
	}
	if total > shown {
		fmt.Printf("    ... %d more lines for these policies\n", total-shown)
	}
}

func indent(s, pfx string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = pfx + lines[i]
	}
	return strings.Join(lines, "\n") + "\n"
}
