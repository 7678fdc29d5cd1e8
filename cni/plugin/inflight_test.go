//go:build linux

package plugin_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/open-acn/acn/cni/plugin"
	"github.com/open-acn/acn/cni/store"
	"github.com/open-acn/acn/internal/netnstest"
)

// TestInFlightADDIsRespected: an endpoint marked pending by a plugin
// process that still runs is an ADD in flight. A second ADD of the same
// container answers 11 (try again) instead of tearing it down, and GC
// leaves it alone; once that process is gone, both repair it.
func TestInFlightADDIsRespected(t *testing.T) {
	n := newNode(t, 4)
	l := n.list("1.1.0", n.netConf("transparent", nil))
	p := n.newPod("inflight")

	// A live process whose name says azure-vnet stands for the running ADD.
	sleeper := filepath.Join(t.TempDir(), "azure-vnet-sleeper")
	data, err := os.ReadFile("/bin/sleep")
	if err != nil {
		netnstest.Skip(t, "no /bin/sleep (coreutils)")
	}
	if err := os.WriteFile(sleeper, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sleeper, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	vs := &plugin.VnetState{Version: 1, Endpoints: map[string]*plugin.Endpoint{
		p.id + "/eth0": {ContainerID: p.id, IfName: "eth0", Network: "azure", Netns: p.ns.Path, Mode: "transparent",
			IP: "10.240.1.1/32", Status: plugin.StatusPending, PID: cmd.Process.Pid, Updated: time.Now()},
	}}
	if err := store.Save(filepath.Join(n.dir, plugin.VnetStateFile), vs); err != nil {
		t.Fatal(err)
	}

	if _, err := n.add(l, p); cniCode(err) != types.ErrTryAgainLater {
		t.Fatalf("ADD during an ADD in flight: %v, want code %d", err, types.ErrTryAgainLater)
	}
	if err := n.cni.GCNetworkList(context.Background(), l, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}}); err != nil {
		t.Fatal(err)
	}
	if vs, _ := n.state(); vs.Endpoints[p.id+"/eth0"] == nil {
		t.Fatal("GC removed an ADD in flight")
	}

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	r := n.mustAdd(l, p)
	if err := ping(p.ns, gatewayIP); err != nil {
		t.Error(err)
	}
	n.mustDel(l, p)
	n.assertGone(p, r.IPs[0].Address.IP)
}
