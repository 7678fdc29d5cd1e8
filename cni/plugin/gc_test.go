//go:build linux

package plugin_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
)

// runCommand runs azure-vnet with a raw config for commands libcni builds
// its own input for (GC with only the legacy key, CHECK of an unknown pod).
func (n *node) runCommand(cmd string, p *pod, conf map[string]interface{}) error {
	stdin, _ := json.Marshal(conf)
	args := &invoke.Args{Command: cmd, Path: binDir}
	if p != nil {
		args.ContainerID, args.NetNS, args.IfName = p.id, p.ns.Path, "eth0"
	}
	return invoke.ExecPluginWithoutResult(context.Background(), filepath.Join(binDir, "azure-vnet"), stdin, args, n.exec())
}

// TestGCAcceptsTheLegacyAttachmentsKey: a runtime that sends only
// cni.dev/attachments (the first CNI 1.1 draft) gets the same GC; a GC
// without any list deletes nothing.
func TestGCAcceptsTheLegacyAttachmentsKey(t *testing.T) {
	n := newNode(t, 10)
	l := n.list("1.1.0", n.netConf("transparent", nil))
	keep, drop := n.newPod("gc-keep"), n.newPod("gc-drop")
	rk, rd := n.mustAdd(l, keep), n.mustAdd(l, drop)

	conf := n.netConf("transparent", nil)
	conf["cniVersion"], conf["name"] = "1.1.0", "azure"
	if err := n.runCommand("GC", nil, conf); err != nil {
		t.Fatalf("GC without a list: %v", err)
	}
	if _, is := n.state(); len(is.Allocations) != 2 {
		t.Fatalf("GC without a list released addresses: %+v", is.Allocations)
	}

	conf["cni.dev/attachments"] = []types.GCAttachment{{ContainerID: keep.id, IfName: "eth0"}}
	if err := n.runCommand("GC", nil, conf); err != nil {
		t.Fatalf("GC: %v", err)
	}
	n.assertGone(drop, rd.IPs[0].Address.IP)
	if err := n.cni.CheckNetworkList(context.Background(), l, keep.rt()); err != nil {
		t.Errorf("the valid pod was harmed: %v", err)
	}
	n.mustDel(l, keep)
	n.assertGone(keep, rk.IPs[0].Address.IP)
}

// TestCheckOfUnknownContainer answers code 3.
func TestCheckOfUnknownContainer(t *testing.T) {
	n := newNode(t, 2)
	conf := n.netConf("transparent", nil)
	conf["cniVersion"], conf["name"] = "1.1.0", "azure"
	conf["prevResult"] = map[string]interface{}{"cniVersion": "1.1.0", "ips": []map[string]string{{"address": "10.240.1.1/32"}}}
	err := n.runCommand("CHECK", n.newPod("unknown"), conf)
	if cniCode(err) != types.ErrUnknownContainer {
		t.Fatalf("want code %d, got %v", types.ErrUnknownContainer, err)
	}
}
