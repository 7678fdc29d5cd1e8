// Package hnsacl is the Windows dataplane of NPM: it programs the shared
// policy model (npm/policy) as Host Network Service objects, network
// SetPolicies (IPSET / NESTEDIPSET) and ACL endpoint policies on each local
// pod's endpoint.
//
// Everything here is plain Go with no Windows dependency: the model is
// rendered into per-endpoint ACL sets and network SetPolicies, diffed per
// endpoint against what was programmed, and applied in batches through the
// small HNS interface below. The real implementation over
// github.com/Microsoft/hcsshim/hcn lives in hcn_windows.go; Fake implements
// the same interface in memory on every platform, and Fake.Evaluate walks
// its ACLs by priority for a packet, so the whole Windows logic is tested
// on Linux. See README.md for the mapping.
package hnsacl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/open-acn/acn/npm/policy"
)

// Prefix starts the ID of every ACL and SetPolicy this package creates; objects
// with another ID (other components' ACLs) are never touched.
const Prefix = "acn-"

// Priorities of the ACLs (HNS evaluates lower values first; the first
// matching ACL decides, and an endpoint without a matching ACL is open).
const (
	// PriorityHost: allow ingress from the node's own addresses (kubelet
	// health probes) on every ingress-isolated endpoint.
	PriorityHost uint16 = 100
	// PriorityAllow: the allow rules of every policy (all allows share one
	// priority: policies are additive, their order does not matter).
	PriorityAllow uint16 = 200
	// PriorityBlock: the default deny of an isolated direction.
	PriorityBlock uint16 = 4000
)

// Action of an ACL.
type Action string

const (
	Allow Action = "Allow"
	Block Action = "Block"
)

// Direction of an ACL, relative to the endpoint it is applied to.
type Direction string

const (
	In  Direction = "In"  // traffic to the endpoint
	Out Direction = "Out" // traffic from the endpoint
)

// ACL is one ACL endpoint policy (AclPolicySetting with RuleType Switch).
//
// The fields follow one convention throughout this package, the fake and
// the evaluator: RemoteAddresses is the peer (source of an In ACL,
// destination of an Out ACL), LocalAddresses restricts the endpoint's own
// addresses, and the destination port of the connection is LocalPorts for
// In and RemotePorts for Out. Addresses are comma-separated IPs, prefixes or
// SetPolicy IDs; ports are comma-separated numbers or "lo-hi" ranges; an
// empty field matches everything. Protocols is one IP protocol number ("6",
// "17", "132") or empty for any protocol. The Windows implementation maps
// this convention onto HNS's fields in one place (hcn_windows.go).
type ACL struct {
	ID              string
	Action          Action
	Direction       Direction
	Priority        uint16
	Protocols       string
	LocalAddresses  string
	RemoteAddresses string
	LocalPorts      string
	RemotePorts     string
}

// contentKey is the canonical form of everything but the ID.
func (a ACL) contentKey() string {
	return fmt.Sprintf("%s|%s|%d|%s|%s|%s|%s|%s", a.Direction, a.Action, a.Priority, a.Protocols,
		a.LocalAddresses, a.RemoteAddresses, a.LocalPorts, a.RemotePorts)
}

// withID sets the ID to the stable hash of the content: two ACLs with the
// same ID are identical, so removal by ID removes exactly that rule.
func (a ACL) withID() ACL {
	a.ID = Prefix + policy.Hash(a.contentKey(), 16)
	return a
}

func (a ACL) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s prio=%d", a.Action, a.Direction, a.Priority)
	if a.Protocols != "" {
		fmt.Fprintf(&b, " proto=%s", a.Protocols)
	}
	if a.LocalAddresses != "" {
		fmt.Fprintf(&b, " local=%s", a.LocalAddresses)
	}
	if a.RemoteAddresses != "" {
		fmt.Fprintf(&b, " remote=%s", a.RemoteAddresses)
	}
	if a.LocalPorts != "" {
		fmt.Fprintf(&b, " lport=%s", a.LocalPorts)
	}
	if a.RemotePorts != "" {
		fmt.Fprintf(&b, " rport=%s", a.RemotePorts)
	}
	return b.String() + " id=" + a.ID
}

// SetPolicyType is the type of a network SetPolicy.
type SetPolicyType string

const (
	IPSet       SetPolicyType = "IPSET"       // Values: IPs and prefixes
	NestedIPSet SetPolicyType = "NESTEDIPSET" // Values: IDs of other SetPolicies
)

// SetPolicy is one network SetPolicy (hcn.SetPolicySetting). Values is the
// comma-separated, sorted member list; it is never empty (an empty set is
// not created and the ACLs that would reference it are omitted, since they
// could match nothing).
type SetPolicy struct {
	ID     string
	Name   string
	Type   SetPolicyType
	Values string
}

// Endpoint is an HNS endpoint of this node as listed: its ID, addresses,
// and the ACLs with an ID starting with Prefix currently applied to it.
type Endpoint struct {
	ID   string
	IPs  []netip.Addr
	ACLs []ACL
}

// Op is the kind of a modify request.
type Op string

const (
	OpAdd    Op = "Add"
	OpUpdate Op = "Update" // SetPolicies only: replace the Values
	OpRemove Op = "Remove"
)

// ErrNotFound is returned (wrapped) when an endpoint no longer exists.
var ErrNotFound = errors.New("hns: not found")

// HNS is the part of the Host Network Service the dataplane uses.
// Implementations: hcn_windows.go (real) and Fake.
type HNS interface {
	// ListEndpoints returns the local endpoints (not remote ones) with
	// their IPs and the ACLs of this package (ID prefix Prefix).
	ListEndpoints(ctx context.Context) ([]Endpoint, error)
	// SetPolicies returns the network SetPolicies of this package.
	SetPolicies(ctx context.Context) ([]SetPolicy, error)
	// ModifySetPolicies adds, updates (replaces Values) or removes
	// SetPolicies in one call.
	ModifySetPolicies(ctx context.Context, op Op, sets []SetPolicy) error
	// ModifyACLs adds or removes (by ID) ACLs of one endpoint in one call;
	// a missing endpoint gives an error wrapping ErrNotFound.
	ModifyACLs(ctx context.Context, endpointID string, op Op, acls []ACL) error
}

// ProtocolNumber is the HNS protocol string of a model protocol.
func ProtocolNumber(p policy.Protocol) string { return fmt.Sprint(p.Number()) }
