//go:build linux

package plugin_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-acn/acn/internal/netnstest"
)

// TestBinariesFlags: both binaries print the version banner for --version
// (exit 0) and a one-line error for an unknown flag (exit 2).
func TestBinariesFlags(t *testing.T) {
	if binDir == "" {
		netnstest.RequireRoot(t)
	}
	for _, bin := range []string{"azure-vnet", "azure-vnet-ipam"} {
		out, err := exec.Command(filepath.Join(binDir, bin), "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), bin+" v") {
			t.Errorf("%s --version: %q %v", bin, out, err)
		}
		out, err = exec.Command(filepath.Join(binDir, bin), "--frobnicate").CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 || strings.Count(string(out), "\n") != 1 {
			t.Errorf("%s --frobnicate: exit %v, output %q", bin, err, out)
		}
	}
}
