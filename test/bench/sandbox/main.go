//go:build linux

// Command sandbox measures pod sandbox creation as kubelet asks for it: the
// CRI RunPodSandbox call to containerd, which starts the pause container
// and runs the CNI ADD. Two nodes of the real cluster (test/realcluster,
// containerd only, same build and configuration) get different conflists:
// node-0 the shipped deploy/cni/10-azure.conflist (azure-vnet transparent,
// azure-vnet-ipam from the Azure host endpoint, portmap), node-1 Debian's
// reference bridge + host-local (+ portmap). Sequential creations give
// p50/p99; then 16 workers create sandboxes at once.
//
//	go run ./test/bench/sandbox -out out/bench/sandbox.json
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/open-acn/acn/internal/benchfmt"
	"github.com/open-acn/acn/internal/kubetest"
	"github.com/open-acn/acn/test/realcluster"
)

const refConflist = `{
  "cniVersion": "1.0.0",
  "name": "reference",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

func main() {
	out := flag.String("out", "out/bench/sandbox.json", "write the results as JSON here")
	seq := flag.Int("n", 30, "sequential sandboxes per configuration")
	par := flag.Int("parallel", 16, "concurrent workers in the parallel run")
	perWorker := flag.Int("per-worker", 2, "sandboxes per worker in the parallel run")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Println("bench/sandbox: skipped: needs root (a real cluster's nodes)")
		os.Exit(0)
	}
	if m := realcluster.MissingTools(kubetest.ToolsDir()); len(m) > 0 {
		fmt.Fprintf(os.Stderr, "bench/sandbox: %v not built: run `make tools-node`\n", m)
		os.Exit(1)
	}
	if err := run(*out, *seq, *par, *perWorker); err != nil {
		fmt.Fprintln(os.Stderr, "bench/sandbox:", err)
		os.Exit(1)
	}
}

type target struct {
	plugin, conflist string
	node             *realcluster.Node
}

func run(out string, seq, par, perWorker int) error {
	ctx := context.Background()
	c, err := realcluster.New(ctx, realcluster.Config{RuntimeOnly: true})
	if err != nil {
		return err
	}
	defer c.Close()
	root := kubetest.ModuleRoot()
	azure, err := os.ReadFile(filepath.Join(root, "deploy", "cni", "10-azure.conflist"))
	if err != nil {
		return err
	}
	targets := []target{{"azure-vnet", string(azure), c.Nodes[0]}, {"bridge+host-local", refConflist, c.Nodes[1]}}
	var rs []benchfmt.Result
	for _, tg := range targets {
		if err := install(tg, root); err != nil {
			return err
		}
		r, err := measure(ctx, tg, seq, par, perWorker)
		if err != nil {
			return fmt.Errorf("%s: %w", tg.plugin, err)
		}
		rs = append(rs, r...)
	}
	benchfmt.PrintTable(os.Stdout, rs)
	return benchfmt.WriteJSON(out, rs)
}

// install puts the plugins and the conflist into the node's /opt/cni/bin
// and /etc/cni/net.d (what the installer DaemonSet does in the cluster).
func install(tg target, root string) error {
	bin := tg.node.HostPath("/opt/cni/bin")
	for src, dst := range map[string]string{
		filepath.Join(root, "out", "azure-vnet"):      "azure-vnet",
		filepath.Join(root, "out", "azure-vnet-ipam"): "azure-vnet-ipam",
		"/usr/lib/cni/bridge":                         "bridge",
		"/usr/lib/cni/host-local":                     "host-local",
		"/usr/lib/cni/portmap":                        "portmap",
		"/usr/lib/cni/loopback":                       "loopback",
	} {
		if err := copyFile(src, filepath.Join(bin, dst), 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(tg.node.HostPath("/etc/cni/net.d"), "10-bench.conflist"), []byte(tg.conflist), 0o644)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func measure(ctx context.Context, tg target, seq, par, perWorker int) ([]benchfmt.Result, error) {
	conn, err := grpc.NewClient("unix://"+tg.node.ContainerdSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	// containerd loads the conflist asynchronously: wait for NetworkReady.
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
		ready := false
		if err == nil {
			for _, cond := range st.Status.Conditions {
				if cond.Type == runtimeapi.NetworkReady && cond.Status {
					ready = true
				}
			}
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("containerd on %s: network not ready after 30s (%v)", tg.node.Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var mu sync.Mutex
	var ids []string
	n := 0
	create := func() (time.Duration, error) {
		mu.Lock()
		n++
		name := fmt.Sprintf("bench-%d", n)
		mu.Unlock()
		cfg := &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Uid: name, Namespace: "bench"},
			Hostname: name,
			Linux:    &runtimeapi.LinuxPodSandboxConfig{CgroupParent: tg.node.CgroupRoot() + "/bench"},
		}
		start := time.Now()
		resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		d := time.Since(start)
		if err != nil {
			return d, err
		}
		mu.Lock()
		ids = append(ids, resp.PodSandboxId)
		mu.Unlock()
		return d, nil
	}
	cleanup := func() error {
		for _, id := range ids {
			if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				return err
			}
			if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				return err
			}
		}
		ids = nil
		return nil
	}
	var seqMs []float64
	for i := 0; i < seq; i++ {
		d, err := create()
		if err != nil {
			return nil, err
		}
		seqMs = append(seqMs, ms(d))
		// Keep the node at a pod count a node has: remove in batches of 10.
		if len(ids) >= 10 {
			if err := cleanup(); err != nil {
				return nil, err
			}
		}
	}
	if err := cleanup(); err != nil {
		return nil, err
	}
	var parMs []float64
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				d, err := create()
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				parMs = append(parMs, ms(d))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	if err := cleanup(); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, firstErr
	}
	params := func(conc int) map[string]string {
		return map[string]string{"plugin": tg.plugin, "runtime": "containerd", "concurrency": strconv.Itoa(conc)}
	}
	var rs []benchfmt.Result
	for _, p := range []float64{50, 99} {
		rs = append(rs, benchfmt.Result{Name: fmt.Sprintf("sandbox_create_latency_p%.0f", p), Value: round2(benchfmt.Percentile(seqMs, p)), Unit: "ms", Params: params(1)})
	}
	for _, p := range []float64{50, 99} {
		rs = append(rs, benchfmt.Result{Name: fmt.Sprintf("sandbox_create_latency_p%.0f", p), Value: round2(benchfmt.Percentile(parMs, p)), Unit: "ms", Params: params(par)})
	}
	rs = append(rs, benchfmt.Result{Name: "sandbox_create_throughput", Value: round2(float64(len(parMs)) / wall.Seconds()), Unit: "sandboxes/s", Params: params(par)})
	return rs, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }
