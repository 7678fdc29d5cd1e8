//go:build linux

package kubetest

import (
	"context"
	"os"
	"testing"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
)

// StartForTest starts a control plane for one test in the root namespace
// (127.0.0.1 only) and stops it at cleanup. It skips, saying why, when the
// binaries are not built (`make test` builds them first, so CI runs it).
func StartForTest(t testing.TB) *Server {
	t.Helper()
	return startForTest(t, Options{})
}

// StartInNetNS starts a control plane inside ns bound to address (an IP of
// that namespace); clients from Server.Client dial through the namespace.
func StartInNetNS(t testing.TB, ns *netnstest.NS, address string) *Server {
	t.Helper()
	return startForTest(t, Options{NetNS: ns, Address: address})
}

func startForTest(t testing.TB, opts Options) *Server {
	t.Helper()
	if m := MissingTools(ToolsDir()); len(m) > 0 {
		netnstest.Skip(t, "control-plane binaries %v not built in %s: run `make tools` (make test does)", m, ToolsDir())
	}
	if opts.NetNS != nil && os.Geteuid() != 0 {
		netnstest.Skip(t, "needs root to run the API server in a network namespace")
	}
	// An owned dir (internal/owned), not t.TempDir: an interrupted test
	// run's leftovers are removed by the next run.
	dir, err := owned.MkdirTemp("", "acn-apiserver-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = owned.RemoveDir(dir) })
	opts.Dir = dir
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}
