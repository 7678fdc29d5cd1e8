//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/open-acn/acn/test/realcluster"
)

// e2e runs the upstream NetworkPolicy specs on a fresh real cluster per
// configuration (dataplane x CNI mode) and prints one result line each.
func e2e(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("realcluster e2e", flag.ContinueOnError)
	dataplanes := fs.String("dataplanes", "iptables,nftables", "azure-npm dataplanes, one cluster each")
	cnis := fs.String("cni", "transparent", "azure-vnet modes (transparent, bridge), one cluster each")
	proxyMode := fs.String("proxy-mode", "iptables", "kube-proxy mode")
	procs := fs.Int("procs", 3, "ginkgo parallel processes")
	focus := fs.String("focus", realcluster.UpstreamFocus, "ginkgo --focus")
	skip := fs.String("skip", realcluster.UpstreamSkip, "ginkgo --skip")
	noDrill := fs.Bool("no-drill", false, "skip the failure drill after the suite")
	conformance := fs.Bool("conformance", true, "run the network-policy-api conformance suite after the upstream specs")
	conformanceBin := fs.String("conformance-bin", "", "its test binary (default: <tools>/"+realcluster.ConformanceBinary+", from `hack/build-tools.sh npapi`)")
	conformanceSkip := fs.String("conformance-skip", realcluster.ConformanceSkip, "go test -skip pattern of conformance tests not run")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-sigs; cancel() }()
	var lines []string
	failed := false
	for _, cni := range strings.Split(*cnis, ",") {
		for _, dp := range strings.Split(*dataplanes, ",") {
			name := fmt.Sprintf("upstream NetworkPolicy e2e, azure-vnet %s, azure-npm %s, kube-proxy %s", cni, dp, *proxyMode)
			fmt.Fprintf(out, "=== %s\n", name)
			start := time.Now()
			conf := conformanceRun{enabled: *conformance, bin: *conformanceBin, skip: *conformanceSkip}
			res, drill, err := e2eOne(ctx, realcluster.Config{CNIMode: cni, Dataplane: dp, ProxyMode: *proxyMode,
				Logf: func(f string, a ...any) { fmt.Fprintf(out, f+"\n", a...) }}, *procs, *focus, *skip, *noDrill, &conf, out)
			line := fmt.Sprintf("%s: %d passed, %d failed (%.0fs)", name, res.Passed, res.Failed, time.Since(start).Seconds())
			if err != nil {
				line += ": " + err.Error()
			}
			if err != nil || res.Failed > 0 || drill.WronglyAllowed > 0 {
				failed = true
			}
			fmt.Fprintln(out, line)
			lines = append(lines, line)
			if conf.ran {
				cl := fmt.Sprintf("network-policy-api %s conformance (features %s, skipped %q), azure-vnet %s, azure-npm %s: %d passed, %d failed %v, %d failed only on SCTP probes (no SCTP sockets here)",
					realcluster.ConformanceVersion, realcluster.ConformanceFeatures, conf.skip, cni, dp, conf.res.Passed, conf.res.Failed, conf.res.FailedTests, conf.res.SCTPOnly)
				if conf.err != nil {
					cl += ": " + conf.err.Error()
				}
				if conf.err != nil || conf.res.Failed > 0 {
					failed = true
				}
				fmt.Fprintln(out, cl)
				lines = append(lines, cl)
			}
			if !*noDrill && err == nil {
				dl := fmt.Sprintf("failure drill (kill kubelet, kill containerd, delete the NPM pod), azure-vnet %s, azure-npm %s: %d wrongly allowed, %d blocked, control %d reached / %d failed",
					cni, dp, drill.WronglyAllowed, drill.Blocked, drill.Control, drill.ControlFailed)
				if drill.err != nil {
					dl += ": " + drill.err.Error()
					failed = true
				}
				fmt.Fprintln(out, dl)
				lines = append(lines, dl)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	fmt.Fprintln(out, "=== summary")
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	if failed {
		return errors.New("e2e-real: failures")
	}
	return nil
}

type drillOutcome struct {
	realcluster.DrillResult
	err error
}

// conformanceRun configures and records the network-policy-api
// conformance run of one cluster.
type conformanceRun struct {
	enabled   bool
	bin, skip string
	ran       bool
	res       realcluster.ConformanceResult
	err       error
}

// e2eOne runs the upstream suite, the network-policy-api conformance
// suite, then the failure drill, on a new cluster.
func e2eOne(ctx context.Context, cfg realcluster.Config, procs int, focus, skip string, noDrill bool, conf *conformanceRun, out io.Writer) (res realcluster.UpstreamResult, drill drillOutcome, err error) {
	c, err := realcluster.New(ctx, cfg)
	if err != nil {
		return res, drill, err
	}
	defer func() {
		c.Close()
		if left := c.Residue(); len(left) > 0 {
			fmt.Fprintf(out, "left behind: %s\n", strings.Join(left, ", "))
		}
	}()
	if focus != "" {
		if res, err = c.RunUpstream(ctx, procs, focus, skip, out); err != nil {
			return res, drill, err
		}
	}
	if conf.enabled {
		bin := conf.bin
		if bin == "" {
			bin = filepath.Join(c.ToolsDir(), realcluster.ConformanceBinary)
		}
		conf.ran = true
		conf.res, conf.err = c.RunConformance(ctx, bin, realcluster.ConformanceFeatures, conf.skip, out)
	}
	if noDrill {
		return res, drill, nil
	}
	drill.DrillResult, drill.err = c.FailureDrill(ctx, cfg.Logf)
	return res, drill, nil
}
