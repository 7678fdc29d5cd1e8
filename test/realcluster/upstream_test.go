//go:build linux

package realcluster

import (
	"strings"
	"testing"
)

func TestParseGinkgo(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      UpstreamResult
	}{
		{"success", "Ran 43 of 7142 Specs in 312.4 seconds\nSUCCESS! -- 43 Passed | 0 Failed | 0 Pending | 7099 Skipped\nPASS\n", UpstreamResult{43, 0}},
		{"failures", "Ran 43 of 7142 Specs\nFAIL! -- 40 Passed | 3 Failed | 0 Pending | 7099 Skipped\n", UpstreamResult{40, 3}},
		// ginkgo -p prints each process's summary, then the aggregate last.
		{"parallel, last line wins", "2 Passed | 1 Failed\n...\nFAIL! -- 41 Passed | 2 Failed | 0 Pending\n", UpstreamResult{41, 2}},
		{"no summary", "panic: cannot reach the API server\n", UpstreamResult{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseGinkgo(strings.NewReader(tc.out)); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNPMPatchSetsOnlyTheDataplane(t *testing.T) {
	c := &Cluster{cfg: Config{Root: "../..", Dataplane: "nftables"}}
	patches, err := c.npmPatches()
	if err != nil {
		t.Fatal(err)
	}
	file := patches[0]["data"].(map[string]string)["azure-npm.yaml"]
	if !strings.Contains(file, "\ndataplane: nftables\n") || strings.Contains(file, "dataplane: iptables") {
		t.Fatalf("dataplane not set to nftables:\n%s", file)
	}
	if !strings.Contains(file, "iptablesBackend: auto") || !strings.Contains(file, "metricsAddr: \":10091\"") {
		t.Fatalf("the rest of the shipped config file is not kept:\n%s", file)
	}
}

func TestCNIPatchPicksTheConflist(t *testing.T) {
	if p := (&Cluster{cfg: Config{CNIMode: "transparent"}}).cniPatches(); p != nil {
		t.Fatalf("transparent is the shipped default, no patch expected: %v", p)
	}
	p := (&Cluster{cfg: Config{CNIMode: "bridge"}}).cniPatches()
	ic := p[0]["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["initContainers"].([]any)[0].(map[string]any)
	env := ic["env"].([]any)[0].(map[string]any)
	if ic["name"] != "install" || env["name"] != "CNI_CONFLIST" || env["value"] != "10-azure-bridge.conflist" {
		t.Fatalf("bridge patch: %v", ic)
	}
}
