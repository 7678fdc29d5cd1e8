//go:build linux

package realcluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// The network-policy-api conformance suite (sigs.k8s.io/network-policy-api
// v0.3.0, conformance/): its test binary is built by `hack/build-tools.sh
// npapi` (hack/tools/npapi) into the tools directory. It creates its pods
// (agnhost, ConformanceAgnhostImage) and ClusterNetworkPolicies through
// the API server and probes with `kubectl exec`-style pod exec.
const (
	// ConformanceVersion is the network-policy-api release of the suite.
	ConformanceVersion = "v0.3.0"
	// ConformanceBinary is the test binary's name in the tools directory.
	ConformanceBinary = "npapi-conformance.test"
	// ConformanceFeatures: the standard channel (ClusterNetworkPolicy)
	// and the experimental features azure-npm implements (named ports,
	// egress to node peers).
	ConformanceFeatures = "ClusterNetworkPolicy,ClusterNetworkPolicyNamedPorts,ClusterNetworkPolicyEgressNodePeers"
	// ConformanceSkip leaves out the SCTP tests: this kernel has no SCTP
	// sockets, so their servers cannot listen. Other tests probe SCTP too;
	// ParseGoTest counts those failing only on SCTP probes apart.
	ConformanceSkip = `TestConformance/.*SCTP`
)

// RunConformance runs the conformance suite against the cluster, after
// putting the experimental channel of the CRD in place (named ports are
// experimental fields). bin is the test binary; skip a `go test -skip`
// pattern ("" for none). The passed and failed counts are its tests
// (TestConformance/<name>).
func (c *Cluster) RunConformance(ctx context.Context, bin, features, skip string, out io.Writer) (ConformanceResult, error) {
	crd := filepath.Join(c.cfg.Root, "deploy", "network-policy-api", "experimental")
	if o, err := c.Kubectl(ctx, "apply", "--server-side", "--force-conflicts", "-k", crd); err != nil {
		return ConformanceResult{}, fmt.Errorf("experimental CRD: %w\n%s", err, o)
	}
	dir := filepath.Join(c.cfg.Dir, "conformance")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ConformanceResult{}, err
	}
	args := []string{"--net=" + c.CP.Path, "--", bin, "-test.v", "-test.run", "^TestConformance$", "-test.timeout", "90m",
		"-supported-features=" + features, "-report-output=" + filepath.Join(dir, "report.yaml"),
		"-organization=open-acn", "-project=azure-npm", "-url=https://github.com/open-acn/acn", "-version=" + c.cfg.Dataplane}
	if skip != "" {
		args = append(args, "-test.skip", skip)
	}
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	res := make(chan ConformanceResult, 1)
	go func() { res <- ParseGoTest(io.TeeReader(pr, out)) }()
	err := cmd.Run()
	pw.Close()
	r := <-res
	if r.Passed+r.Failed+r.SCTPOnly == 0 {
		return r, fmt.Errorf("the conformance suite ran no test (%v)", err)
	}
	return r, nil
}

// ConformanceResult counts the tests of one conformance run. A test whose
// only failed probes are SCTP ones (this kernel has no SCTP sockets: agnhost
// connect answers "protocol not supported") is counted in SCTPOnly, not in
// Failed.
type ConformanceResult struct {
	Passed, Failed, SCTPOnly int
	// FailedTests names the tests in Failed.
	FailedTests []string
}

var (
	goTestResult  = regexp.MustCompile(`^\s*--- (PASS|FAIL): TestConformance/([^/\s]+) `)
	goTestRun     = regexp.MustCompile(`^=== RUN\s+TestConformance/([^/\s]+)`)
	failedCommand = regexp.MustCompile(`FAILED Command was \[(.*)\]`)
)

// ParseGoTest reads `go test -v` output of the suite to the end and
// counts its tests (TestConformance/<name>; their subtests are part of
// them).
func ParseGoTest(r io.Reader) ConformanceResult {
	var res ConformanceResult
	cur := ""
	sctpFail, otherFail := map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := goTestRun.FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		if m := failedCommand.FindStringSubmatch(line); m != nil && cur != "" {
			if strings.Contains(m[1], "--protocol=sctp") {
				sctpFail[cur] = true
			} else {
				otherFail[cur] = true
			}
			continue
		}
		m := goTestResult.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch {
		case m[1] == "PASS":
			res.Passed++
		case sctpFail[m[2]] && !otherFail[m[2]]:
			res.SCTPOnly++
		default:
			res.Failed++
			res.FailedTests = append(res.FailedTests, m[2])
		}
	}
	_, _ = io.Copy(io.Discard, r)
	return res
}

// ToolsDir is where the cluster's binaries and test tools are.
func (c *Cluster) ToolsDir() string { return c.cfg.ToolsDir }
