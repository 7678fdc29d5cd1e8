//go:build linux

package realcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-acn/acn/internal/kubetest"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/test/cluster"
)

// Require skips t when a real cluster cannot be built here because the
// test does not run as root. A binary or image that `make test` builds
// first being missing skips it too, saying which, except in CI (CI=true),
// where it fails: CI runs make test as root and must run it.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		netnstest.Skip(t, "needs root: network and mount namespaces, cgroups, containerd (CI runs as root)")
	}
	var missing string
	if err := cluster.BinariesBuilt(""); err != nil {
		missing = err.Error()
	} else if m := MissingTools(kubetest.ToolsDir()); len(m) > 0 {
		missing = fmt.Sprintf("%v not built in %s: run `hack/build-tools.sh control node`", m, kubetest.ToolsDir())
	} else if m := MissingHostTools(); len(m) > 0 {
		missing = fmt.Sprintf("%v not installed: run `make deps`", m)
	} else if files, _ := filepath.Glob(filepath.Join(kubetest.ModuleRoot(), "out", "images", "*.tar")); len(files) == 0 {
		missing = "no product images in out/images: run `make images`"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (make test builds them; CI must run this test)", missing)
	}
	t.Skipf("%s (make test builds them)", missing)
}
