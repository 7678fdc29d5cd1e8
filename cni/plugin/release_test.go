//go:build linux

package plugin_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/open-acn/acn/cni/cnitest"
	"github.com/open-acn/acn/cni/failpoint"
	"github.com/open-acn/acn/cni/plugin"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
)

var (
	releaseOnce sync.Once
	releaseDir  string
	releaseErr  error
)

// releaseBins builds both plugins once per test binary the way a release
// is built (`make azure-vnet azure-vnet-ipam`).
func releaseBins(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		netnstest.Skip(t, "needs make to build the plugins the release way (make deps installs it)")
	}
	releaseOnce.Do(func() {
		if releaseDir, releaseErr = owned.MkdirTemp("", "acn-cni-release-"); releaseErr != nil {
			return
		}
		releaseErr = cnitest.BuildRelease(releaseDir)
	})
	if releaseErr != nil {
		t.Fatalf("build the release plugins: %v", releaseErr)
	}
	return releaseDir
}

func removeRelease() {
	if releaseDir != "" {
		_ = owned.RemoveDir(releaseDir)
	}
}

// failpointMarks are strings only the fault-injection code puts into a
// binary: the variables' names, its error message and the names of its
// functions (a release build keeps only the no-op failpoint.FromEnv).
var failpointMarks = []string{failpoint.EnvCrashAt, failpoint.EnvFailAt, failpoint.EnvStallAt,
	"injected failure at step", "cni/failpoint.inject", "cni/failpoint.FromEnv.func1"}

// TestReleaseBinariesContainNoFailpoints: the release build of both
// plugins contains none of the fault-injection names, while the tests'
// build (failpoints tag) contains them all (so the check can fail).
func TestReleaseBinariesContainNoFailpoints(t *testing.T) {
	rel := releaseBins(t)
	test := binDir
	if test == "" { // not root: TestMain did not build the test plugins
		test = t.TempDir()
		if err := cnitest.BuildPlugins(test); err != nil {
			t.Fatal(err)
		}
	}
	for _, bin := range []string{"azure-vnet", "azure-vnet-ipam"} {
		relData, err := os.ReadFile(filepath.Join(rel, bin))
		if err != nil {
			t.Fatal(err)
		}
		testData, err := os.ReadFile(filepath.Join(test, bin))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range failpointMarks {
			if bytes.Contains(relData, []byte(m)) {
				t.Errorf("release %s contains %q", bin, m)
			}
			if !bytes.Contains(testData, []byte(m)) {
				t.Errorf("test build of %s lacks %q: the check above proves nothing", bin, m)
			}
		}
	}
}

// TestReleaseBinaryIgnoresFailpointVariables: ADD and DEL of the release
// plugins succeed with every fault-injection variable set to a step they
// pass (the tests' build would be killed at the first one).
func TestReleaseBinaryIgnoresFailpointVariables(t *testing.T) {
	rel := releaseBins(t)
	n := newNode(t, 10)
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{rel, refPluginDir}, filepath.Join(n.dir, "cache-release"), n.exec())
	l := n.list("1.1.0", n.netConf("transparent", nil))
	for _, step := range plugin.AddSteps {
		t.Run(step, func(t *testing.T) {
			n.t = t
			p := n.newPod("release-" + step)
			n.setEnv(failpoint.EnvCrashAt+"="+step, failpoint.EnvFailAt+"="+step)
			res, err := n.add(l, p)
			if err != nil {
				n.setEnv()
				t.Fatalf("ADD with %s=%s: %v", failpoint.EnvCrashAt, step, err)
			}
			if err := ping(p.ns, gatewayIP); err != nil {
				t.Errorf("pod plumbed by the release ADD cannot reach the gateway: %v", err)
			}
			ip := podIP(t, res)
			for _, ds := range plugin.DelSteps {
				n.setEnv(failpoint.EnvCrashAt+"="+ds, failpoint.EnvFailAt+"="+ds)
				if err := n.del(l, p); err != nil {
					t.Fatalf("DEL with %s=%s: %v", failpoint.EnvCrashAt, ds, err)
				}
			}
			n.setEnv()
			n.assertGone(p, ip)
		})
	}
}
