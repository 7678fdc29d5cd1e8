//go:build windows

package hnsacl

import (
	"context"
	"os"
	"testing"
)

// TestHCNRoundTrip runs against a real HNS on a Windows node (skipped
// elsewhere): ACN_HNS_TEST_NETWORK names a network and ACN_HNS_TEST_ENDPOINT
// the ID of a disposable endpoint on it. It adds a SetPolicy and an ACL
// referencing it, reads both back as this package wrote them, and removes
// them, leaving the endpoint's other policies alone.
func TestHCNRoundTrip(t *testing.T) {
	network, endpoint := os.Getenv("ACN_HNS_TEST_NETWORK"), os.Getenv("ACN_HNS_TEST_ENDPOINT")
	if network == "" || endpoint == "" {
		t.Skip("ACN_HNS_TEST_NETWORK and ACN_HNS_TEST_ENDPOINT not set")
	}
	ctx := context.Background()
	h, err := NewHCN(HCNOptions{NetworkName: network})
	if err != nil {
		t.Fatal(err)
	}
	sp := SetPolicy{ID: Prefix + "roundtrip-4", Name: Prefix + "roundtrip-4", Type: IPSet, Values: "10.250.0.1,10.250.0.2"}
	if err := h.ModifySetPolicies(ctx, OpAdd, []SetPolicy{sp}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.ModifySetPolicies(ctx, OpRemove, []SetPolicy{sp}) }()
	sets, err := h.SetPolicies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range sets {
		found = found || s == sp
	}
	if !found {
		t.Fatalf("set policy not read back: %+v", sets)
	}
	acl := ACL{Action: Allow, Direction: In, Priority: PriorityAllow, Protocols: "6", RemoteAddresses: sp.ID, LocalPorts: "8000-8080"}.withID()
	if err := h.ModifyACLs(ctx, endpoint, OpAdd, []ACL{acl}); err != nil {
		t.Fatal(err)
	}
	eps, err := h.ListEndpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found = false
	for _, e := range eps {
		for _, a := range e.ACLs {
			found = found || (e.ID == endpoint && a == acl)
		}
	}
	if !found {
		t.Fatalf("acl %s not read back", acl)
	}
	if err := h.ModifyACLs(ctx, endpoint, OpRemove, []ACL{acl}); err != nil {
		t.Fatal(err)
	}
	eps, _ = h.ListEndpoints(ctx)
	for _, e := range eps {
		for _, a := range e.ACLs {
			if a.ID == acl.ID {
				t.Fatalf("acl %s still on %s", acl, e.ID)
			}
		}
	}
	if err := h.ModifySetPolicies(ctx, OpUpdate, []SetPolicy{{ID: sp.ID, Name: sp.Name, Type: IPSet, Values: "10.250.0.3"}}); err != nil {
		t.Fatal(err)
	}
}
