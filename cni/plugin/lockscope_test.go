//go:build linux

package plugin_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/open-acn/acn/cni/failpoint"
	"github.com/open-acn/acn/cni/plugin"
	"github.com/open-acn/acn/cni/store"
)

// TestLockIsNotHeldDuringKernelWork stalls one ADD for 2 s in the middle
// of its netlink work (after the veth, before the pod side) and shows that
// meanwhile the node-wide lock is free and another pod's ADD and DEL go
// through: the lock covers allocation and commit only.
func TestLockIsNotHeldDuringKernelWork(t *testing.T) {
	n := newNode(t, 10)
	l := n.list("1.1.0", n.netConf("transparent", nil))
	slow, fast := n.newPod("stalled"), n.newPod("meanwhile")

	n.setEnv(failpoint.EnvStallAt + "=add:veth")
	done := make(chan error, 1)
	start := time.Now()
	go func() { _, err := n.add(l, slow); done <- err }()
	// Wait until the stalled ADD has its veth (it is then in the stall).
	deadline := time.Now().Add(5 * time.Second)
	for len(n.ownedVeths()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	n.setEnv()
	if len(n.ownedVeths()) == 0 {
		t.Fatal("the stalled ADD never created its veth")
	}

	lk, err := store.Acquire(filepath.Join(n.dir, plugin.LockFile), 500*time.Millisecond)
	if err != nil {
		t.Fatalf("node-wide lock held during kernel work: %v", err)
	}
	lk.Release()
	n.mustAdd(l, fast)
	n.mustDel(l, fast)
	if waited := time.Since(start); waited > 1900*time.Millisecond {
		t.Errorf("the other pod waited for the stalled ADD (%s)", waited)
	}
	if err := <-done; err != nil {
		t.Fatalf("stalled ADD: %v", err)
	}
	n.mustDel(l, slow)
}
