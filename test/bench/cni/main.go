//go:build linux

// Command cni measures CNI ADD and DEL latency of azure-vnet (bridge and
// transparent modes, IPv4-only and dual-stack) side by side with the
// reference bridge + host-local plugins (Debian's
// containernetworking-plugins), on this machine, in the same run, driven
// through libcni as containerd drives plugins. For azure-vnet it also
// measures how long after ADD returns the pod's first echo request to its
// gateway is answered, per family (a lost first ARP or neighbour
// solicitation, or duplicate address detection, shows as about 1 s).
//
// Every configuration gets a fresh "node" network namespace (veth eth0 to
// a "vnet" namespace with the gateway) and the same pool of pod
// namespaces; the machine's root namespace is never touched. State goes to
// tmpfs (/dev/shm), as /var/run is on a real node.
//
//	go run ./test/bench/cni -out out/bench/cni.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/open-acn/acn/cni/cnitest"
	"github.com/open-acn/acn/internal/benchfmt"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
)

const refDir = "/usr/lib/cni"

var (
	keepLogs string
	passes   int
)

// sampleSet pools one configuration's latencies over the passes.
type sampleSet struct {
	addSeq, delSeq, addPar, delPar []float64
	firstReply4, firstReply6       []float64
	parPods                        int
	parWall                        time.Duration
}

func (s *sampleSet) results(tg target, par int) []benchfmt.Result {
	params := func(conc int) map[string]string {
		return map[string]string{"plugin": tg.plugin, "mode": tg.mode, "families": tg.families, "concurrency": strconv.Itoa(conc)}
	}
	var rs []benchfmt.Result
	emit := func(op string, conc int, samples []float64) {
		for _, p := range []float64{50, 99} {
			rs = append(rs, benchfmt.Result{Name: fmt.Sprintf("cni_%s_latency_p%.0f", op, p), Value: round2(benchfmt.Percentile(samples, p)), Unit: "ms", Params: params(conc)})
		}
	}
	emit("add", 1, s.addSeq)
	emit("del", 1, s.delSeq)
	emit("add", par, s.addPar)
	rs = append(rs, benchfmt.Result{Name: "cni_add_throughput", Value: round2(float64(s.parPods) / s.parWall.Seconds()), Unit: "pods/s", Params: params(par)})
	emit("del", par, s.delPar)
	if len(s.firstReply4) > 0 {
		emit("ipv4_first_reply", 1, s.firstReply4)
	}
	if len(s.firstReply6) > 0 {
		emit("ipv6_first_reply", 1, s.firstReply6)
	}
	return rs
}

func main() {
	out := flag.String("out", "out/bench/cni.json", "write the results as JSON here")
	seq := flag.Int("n", 100, "sequential ADDs per configuration")
	par := flag.Int("parallel", 16, "concurrent ADDs in the parallel run")
	perWorker := flag.Int("per-worker", 8, "ADDs per concurrent worker in the parallel run")
	flag.IntVar(&passes, "passes", 2, "interleaved passes over the configurations (samples are split between them)")
	flag.StringVar(&keepLogs, "keep-logs", "", "copy azure-vnet's log of each mode into this directory (per-step timings)")
	flag.Parse()
	// Interrupted, the run stops between measurements; whatever it made
	// is removed on the way out (internal/owned).
	owned.Main(func(ctx context.Context) error {
		interrupted = ctx
		if err := run(*out, *seq, *par, *perWorker); err != nil {
			return fmt.Errorf("bench/cni: %w", err)
		}
		return nil
	})
}

// interrupted is done when the run is interrupted.
var interrupted context.Context

type target struct {
	plugin, mode string
	families     string // ipam.ipFamilies, comma-separated
	conf         func(n *node) map[string]interface{}
	cniVersion   string
}

func run(out string, seq, par, perWorker int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces)")
	}
	for _, p := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(refDir, p)); err != nil {
			return fmt.Errorf("reference plugin %s missing in %s (apt-get install containernetworking-plugins)", p, refDir)
		}
	}
	binDir, err := owned.MkdirTemp("", "acn-bench-cni-")
	if err != nil {
		return err
	}
	defer owned.RemoveDir(binDir)
	if err := cnitest.BuildRelease(binDir); err != nil { // measure what ships
		return fmt.Errorf("build plugins: %w", err)
	}

	total := seq
	if n := par * perWorker; n > total {
		total = n
	}
	fmt.Fprintf(os.Stderr, "creating %d pod namespaces...\n", total)
	pods, err := makePods(total)
	defer func() {
		for _, p := range pods {
			_ = p.ns.Delete()
		}
	}()
	if err != nil {
		return err
	}

	azure := func(mode, families string) func(n *node) map[string]interface{} {
		return func(n *node) map[string]interface{} {
			return map[string]interface{}{
				"type": "azure-vnet", "mode": mode, "stateDir": n.dir, "logFile": filepath.Join(n.dir, "azure-vnet.log"),
				"ipam": map[string]interface{}{"type": "azure-vnet-ipam", "environment": "file", "interfacesFile": n.ifsFile,
					"ipFamilies": strings.Split(families, ",")},
			}
		}
	}
	const v4, dual = "IPv4", "IPv4,IPv6"
	targets := []target{
		{"azure-vnet", "bridge", v4, azure("bridge", v4), "1.1.0"},
		{"azure-vnet", "bridge", dual, azure("bridge", dual), "1.1.0"},
		{"azure-vnet", "transparent", v4, azure("transparent", v4), "1.1.0"},
		{"azure-vnet", "transparent", dual, azure("transparent", dual), "1.1.0"},
		{"reference", "bridge+host-local", v4, func(n *node) map[string]interface{} {
			return map[string]interface{}{"type": "bridge", "bridge": "cni0", "isGateway": true,
				"ipam": map[string]interface{}{"type": "host-local", "subnet": "10.244.0.0/16", "dataDir": filepath.Join(n.dir, "host-local")}}
		}, "1.0.0"},
	}

	// The machine is shared: run the targets in several interleaved passes
	// (rotating the order) so a burst of someone else's load hits them all
	// alike, and pool the samples.
	samples := make([]*sampleSet, len(targets))
	for i := range samples {
		samples[i] = &sampleSet{}
	}
	for pass := 0; pass < passes; pass++ {
		for k := range targets {
			i := (k + pass) % len(targets)
			tg := targets[i]
			if err := interrupted.Err(); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "pass %d/%d: %s %s %s...\n", pass+1, passes, tg.plugin, tg.mode, tg.families)
			if err := measure(binDir, tg, pods, max(1, seq/passes), par, max(1, perWorker/passes), samples[i]); err != nil {
				return fmt.Errorf("%s %s: %w", tg.plugin, tg.mode, err)
			}
		}
	}
	var results []benchfmt.Result
	for i, tg := range targets {
		results = append(results, samples[i].results(tg, par)...)
	}
	results = append(results, dualStackRatios(targets, samples)...)
	benchfmt.PrintTable(os.Stdout, results)
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("(%d CPUs, load average %s)\n", runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "))
	return benchfmt.WriteJSON(out, results)
}

// dualStackRatios compares, per azure-vnet mode, the dual-stack ADD with
// the IPv4-only one of the same run (sequential p50 and p99): what a
// second family costs, independent of the machine's load.
func dualStackRatios(targets []target, samples []*sampleSet) []benchfmt.Result {
	v4 := map[string]*sampleSet{}
	for i, tg := range targets {
		if tg.plugin == "azure-vnet" && tg.families == "IPv4" {
			v4[tg.mode] = samples[i]
		}
	}
	var rs []benchfmt.Result
	for i, tg := range targets {
		base := v4[tg.mode]
		if tg.plugin != "azure-vnet" || tg.families == "IPv4" || base == nil {
			continue
		}
		for _, p := range []float64{50, 99} {
			ref := benchfmt.Percentile(base.addSeq, p)
			if ref <= 0 {
				continue
			}
			rs = append(rs, benchfmt.Result{Name: fmt.Sprintf("cni_dualstack_add_ratio_p%.0f", p),
				Value: round2(benchfmt.Percentile(samples[i].addSeq, p) / ref), Unit: "x",
				Params: map[string]string{"plugin": tg.plugin, "mode": tg.mode, "families": tg.families, "concurrency": "1", "versus": "IPv4"}})
		}
	}
	return rs
}

type pod struct {
	id string
	ns *netnstest.NS
}

func makePods(n int) ([]*pod, error) {
	pods := make([]*pod, n)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range pods {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ns, err := netnstest.Create("bp")
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if ns != nil {
				pods[i] = &pod{ns: ns}
			}
		}(i)
	}
	wg.Wait()
	var ok []*pod
	for _, p := range pods {
		if p != nil {
			ok = append(ok, p)
		}
	}
	return ok, firstErr
}

type node struct {
	ns, vnet *netnstest.NS
	dir      string
	ifsFile  string
}

func newNode(addrs int) (*node, error) {
	n := &node{}
	var err error
	if n.ns, err = netnstest.Create("bnode"); err != nil {
		return nil, err
	}
	if n.vnet, err = netnstest.Create("bvnet"); err != nil {
		n.close()
		return nil, err
	}
	if err := netnstest.LinkNS(n.ns, "eth0", cnitest.NodeIP+"/16", n.vnet, "gw0", cnitest.GatewayIP+"/16"); err != nil {
		n.close()
		return nil, err
	}
	for _, cmd := range [][]string{
		{"ip", "route", "add", "default", "via", cnitest.GatewayIP},
		{"ip", "addr", "add", cnitest.NodeIP6 + "/64", "dev", "eth0", "nodad"},
		{"ip", "-6", "route", "add", "default", "via", cnitest.GatewayIP6},
	} {
		if _, err := n.ns.Exec(cmd[0], cmd[1:]...); err != nil {
			n.close()
			return nil, err
		}
	}
	if _, err := n.vnet.Exec("ip", "addr", "add", cnitest.GatewayIP6+"/64", "dev", "gw0", "nodad"); err != nil {
		n.close()
		return nil, err
	}
	base := "/dev/shm"
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = ""
	}
	if n.dir, err = owned.MkdirTemp(base, "acn-bench-node-"); err != nil {
		n.close()
		return nil, err
	}
	n.ifsFile = filepath.Join(n.dir, "interfaces.json")
	return n, cnitest.WriteInterfaces(n.ifsFile, addrs)
}

func (n *node) close() {
	if n.ns != nil {
		_ = n.ns.Delete()
	}
	if n.vnet != nil {
		_ = n.vnet.Delete()
	}
	if n.dir != "" {
		_ = owned.RemoveDir(n.dir)
	}
}

func measure(binDir string, tg target, pods []*pod, seq, par, perWorker int, ss *sampleSet) error {
	n, err := newNode(len(pods) + 10)
	if err != nil {
		return err
	}
	defer n.close()
	if keepLogs != "" {
		defer func() {
			if data, err := os.ReadFile(filepath.Join(n.dir, "azure-vnet.log")); err == nil {
				_ = os.MkdirAll(keepLogs, 0o755)
				_ = os.WriteFile(filepath.Join(keepLogs, "azure-vnet-"+tg.mode+"-"+strings.ReplaceAll(tg.families, ",", "+")+".log"), data, 0o644)
			}
		}()
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{binDir, refDir}, filepath.Join(n.dir, "cache"), &cnitest.Exec{NS: n.ns, Dir: n.dir, Stderr: os.Stderr})
	conf := tg.conf(n)
	data, _ := json.Marshal(map[string]interface{}{"cniVersion": tg.cniVersion, "name": "bench", "plugins": []interface{}{conf}})
	list, err := libcni.NetworkConfFromBytes(data)
	if err != nil {
		return err
	}
	ctx := context.Background()
	round := 0
	rt := func(p *pod) *libcni.RuntimeConf {
		return &libcni.RuntimeConf{ContainerID: p.id, NetNS: p.ns.Path, IfName: "eth0",
			Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "bench"}, {"K8S_POD_NAME", p.id[:12]}}}
	}
	ids := func(ps []*pod) {
		round++
		for i, p := range ps {
			p.id = fmt.Sprintf("%016x%016x%032d", round, i, 0)[:64]
		}
	}
	var gw4, gw6 string // the gateways of the last ADD's result
	add := func(p *pod) (float64, error) {
		start := time.Now()
		res, err := cni.AddNetworkList(ctx, list, rt(p))
		d := ms(time.Since(start))
		if err == nil {
			if r, cerr := types100.NewResultFromResult(res); cerr == nil {
				for _, ipc := range r.IPs {
					if ipc.Address.IP.To4() == nil {
						gw6 = ipc.Gateway.String()
					} else {
						gw4 = ipc.Gateway.String()
					}
				}
			}
		}
		return d, err
	}
	del := func(p *pod) (float64, error) {
		start := time.Now()
		err := cni.DelNetworkList(ctx, list, rt(p))
		return ms(time.Since(start)), err
	}

	// Warm-up: the first ADD creates the bridge, the page cache gets the binaries.
	ids(pods[:1])
	if _, err := add(pods[0]); err != nil {
		return fmt.Errorf("warm-up ADD: %w", err)
	}
	if _, err := del(pods[0]); err != nil {
		return fmt.Errorf("warm-up DEL: %w", err)
	}

	// Sequential.
	sp := pods[:min(seq, len(pods))]
	ids(sp)
	var adds, dels []float64
	for _, p := range sp {
		gw4, gw6 = "", ""
		d, err := add(p)
		if err != nil {
			return fmt.Errorf("ADD: %w", err)
		}
		adds = append(adds, d)
		// azure-vnet only: the reference bridge's gateway answers too,
		// but its sequence is not what is measured here.
		if tg.plugin == "azure-vnet" {
			for _, f := range []struct {
				gw  string
				out *[]float64
			}{{gw4, &ss.firstReply4}, {gw6, &ss.firstReply6}} {
				if f.gw == "" {
					continue
				}
				start := time.Now()
				if err := cnitest.Ping(p.ns, f.gw); err != nil {
					return fmt.Errorf("first echo to %s after ADD: %w", f.gw, err)
				}
				*f.out = append(*f.out, ms(time.Since(start)))
			}
		}
	}
	for _, p := range sp {
		d, err := del(p)
		if err != nil {
			return fmt.Errorf("DEL: %w", err)
		}
		dels = append(dels, d)
	}
	ss.addSeq = append(ss.addSeq, adds...)
	ss.delSeq = append(ss.delSeq, dels...)

	// Parallel: par workers, each perWorker ADDs back to back.
	pp := pods[:min(par*perWorker, len(pods))]
	ids(pp)
	start := time.Now()
	padds, err := parallel(pp, par, add)
	wall := time.Since(start)
	if err != nil {
		return fmt.Errorf("parallel ADD: %w", err)
	}
	ss.addPar = append(ss.addPar, padds...)
	ss.parPods += len(pp)
	ss.parWall += wall
	pdels, err := parallel(pp, par, del)
	if err != nil {
		return fmt.Errorf("parallel DEL: %w", err)
	}
	ss.delPar = append(ss.delPar, pdels...)
	return nil
}

// parallel runs op on every pod from par workers (worker w takes pods w,
// w+par, ...) and returns the latencies and the first error.
func parallel(pods []*pod, par int, op func(*pod) (float64, error)) ([]float64, error) {
	var mu sync.Mutex
	var samples []float64
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(pods); i += par {
				d, err := op(pods[i])
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				samples = append(samples, d)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	return samples, firstErr
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }
