//go:build linux

package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterNetworkPolicyCRDFromModule: the CRDs shipped under
// deploy/network-policy-api are the files of the sigs.k8s.io/network-policy-api
// module go.mod pins, byte for byte (copied, never retyped).
func TestClusterNetworkPolicyCRDFromModule(t *testing.T) {
	for _, ch := range []string{"standard", "experimental"} {
		want, err := crdFromModule(ch)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(deployDir(t), "network-policy-api", ch, crdFile))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("deploy/network-policy-api/%s/%s differs from the module's config/crd/%s file: copy it again", ch, crdFile, ch)
		}
	}
}

const crdFile = "policy.networking.k8s.io_clusternetworkpolicies.yaml"

// crdFromModule reads the CRD of one channel from the module cache.
func crdFromModule(channel string) ([]byte, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/network-policy-api").Output()
	if err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "config", "crd", channel, crdFile))
}
