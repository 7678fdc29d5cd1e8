//go:build linux

package realcluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
)

// UpstreamFocus selects the upstream NetworkPolicy specs; UpstreamSkip
// leaves out the SCTP ones (this kernel has no SCTP sockets).
const (
	UpstreamFocus = `\[Feature:NetworkPolicy\]`
	UpstreamSkip  = `SCTP`
)

// UpstreamResult is the outcome of one run of the upstream suite.
type UpstreamResult struct {
	Passed, Failed int
}

// RunUpstream runs the upstream e2e.test (built from the pinned
// k8s.io/kubernetes) against the cluster through the ginkgo CLI with procs
// parallel processes (the suite runs in parallel only that way), inside the
// control-plane namespace. Output goes to out; the JUnit report to
// <Dir>/e2e. focus and skip are ginkgo regular expressions.
func (c *Cluster) RunUpstream(ctx context.Context, procs int, focus, skip string, out io.Writer) (UpstreamResult, error) {
	report := filepath.Join(c.cfg.Dir, "e2e")
	if err := os.MkdirAll(report, 0o755); err != nil {
		return UpstreamResult{}, err
	}
	args := []string{"--net=" + c.CP.Path, "--", filepath.Join(c.cfg.ToolsDir, "ginkgo"),
		"--procs=" + strconv.Itoa(procs), "--timeout=2h", "--no-color", "--focus=" + focus}
	if skip != "" {
		args = append(args, "--skip="+skip)
	}
	args = append(args, filepath.Join(c.cfg.ToolsDir, "e2e.test"), "--",
		"--kubeconfig="+c.Kubeconfig, "--provider=local", "--kubectl-path="+filepath.Join(c.cfg.ToolsDir, "kubectl"),
		"--report-dir="+report, "--minStartupPods=0")
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Dir = report
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	res := make(chan UpstreamResult, 1)
	go func() { res <- ParseGinkgo(io.TeeReader(pr, out)) }()
	err := cmd.Run()
	pw.Close()
	r := <-res
	if r.Passed+r.Failed == 0 {
		return r, fmt.Errorf("e2e.test ran no spec (%v)", err)
	}
	return r, nil
}

var ginkgoSummary = regexp.MustCompile(`(\d+) Passed \| (\d+) Failed`)

// ParseGinkgo reads ginkgo's output to the end and returns the counts of
// its last summary line ("... N Passed | M Failed | ...").
func ParseGinkgo(r io.Reader) UpstreamResult {
	data, _ := io.ReadAll(r)
	var res UpstreamResult
	for _, m := range ginkgoSummary.FindAllSubmatch(data, -1) {
		res.Passed, _ = strconv.Atoi(string(m[1]))
		res.Failed, _ = strconv.Atoi(string(m[2]))
	}
	return res
}
