package hnsacl

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/open-acn/acn/npm/policy"
)

// Fake is an in-memory HNS: endpoints with ACLs and network SetPolicies. It
// validates requests like HNS would (references to existing SetPolicies,
// no empty sets, no removal of a set still referenced, at most
// MaxACLsPerCall ACLs per call), counts calls, and Evaluate decides a
// packet by walking the ACLs by priority. Safe for concurrent use.
type Fake struct {
	mu        sync.Mutex
	endpoints map[string]*Endpoint
	sets      map[string]SetPolicy
	// MaxACLsPerCall rejects bigger ModifyACLs calls (0: unlimited).
	MaxACLsPerCall int
	// MaxSetsPerCall rejects bigger ModifySetPolicies calls (0: unlimited).
	MaxSetsPerCall int
	calls          map[string]int
	// FailNext, when set, is returned (once) by the next modify call.
	FailNext error
	// AfterModify, when set, runs after every successful modify call
	// (without the fake's lock: it may call Evaluate).
	AfterModify func()
}

var _ HNS = (*Fake)(nil)

// NewFake returns an empty fake HNS.
func NewFake() *Fake {
	return &Fake{endpoints: map[string]*Endpoint{}, sets: map[string]SetPolicy{}, calls: map[string]int{}}
}

// AddEndpoint creates an endpoint (as the CNI would for a new pod).
func (f *Fake) AddEndpoint(id string, ips ...netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.endpoints[id] = &Endpoint{ID: id, IPs: append([]netip.Addr(nil), ips...)}
}

// RemoveEndpoint deletes an endpoint (pod gone).
func (f *Fake) RemoveEndpoint(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.endpoints, id)
}

// Calls returns the number of calls per method since the last ResetCalls.
func (f *Fake) Calls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.calls)
}

// TotalCalls is the sum of Calls.
func (f *Fake) TotalCalls() int {
	n := 0
	for _, v := range f.Calls() {
		n += v
	}
	return n
}

// ResetCalls zeroes the call counters.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = map[string]int{}
}

// ACLs returns a copy of an endpoint's ACLs sorted by ID.
func (f *Fake) ACLs(endpointID string) []ACL {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.endpoints[endpointID]
	if e == nil {
		return nil
	}
	out := append([]ACL(nil), e.ACLs...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Sets returns a copy of the SetPolicies by ID.
func (f *Fake) Sets() map[string]SetPolicy {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.sets)
}

// EndpointIDs returns the endpoint IDs, sorted.
func (f *Fake) EndpointIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.endpoints {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// DeleteACL removes an ACL behind the dataplane's back (drift tests).
func (f *Fake) DeleteACL(endpointID, aclID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.endpoints[endpointID]
	if e == nil {
		return false
	}
	for i, a := range e.ACLs {
		if a.ID == aclID {
			e.ACLs = append(e.ACLs[:i], e.ACLs[i+1:]...)
			return true
		}
	}
	return false
}

// InjectACL adds an ACL behind the dataplane's back (drift tests).
func (f *Fake) InjectACL(endpointID string, a ACL) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.endpoints[endpointID]; e != nil {
		e.ACLs = append(e.ACLs, a)
	}
}

// InjectSet sets or (Values "") deletes a SetPolicy behind the dataplane's back.
func (f *Fake) InjectSet(sp SetPolicy) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if sp.Values == "" {
		delete(f.sets, sp.ID)
		return
	}
	f.sets[sp.ID] = sp
}

// ListEndpoints implements HNS.
func (f *Fake) ListEndpoints(context.Context) ([]Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ListEndpoints"]++
	var out []Endpoint
	for _, e := range f.endpoints {
		c := Endpoint{ID: e.ID, IPs: append([]netip.Addr(nil), e.IPs...)}
		for _, a := range e.ACLs {
			if strings.HasPrefix(a.ID, Prefix) {
				c.ACLs = append(c.ACLs, a)
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// SetPolicies implements HNS.
func (f *Fake) SetPolicies(context.Context) ([]SetPolicy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["SetPolicies"]++
	var out []SetPolicy
	for _, s := range f.sets {
		if strings.HasPrefix(s.ID, Prefix) {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *Fake) takeFail() error {
	err := f.FailNext
	f.FailNext = nil
	return err
}

// ModifySetPolicies implements HNS; the call is all-or-nothing.
func (f *Fake) ModifySetPolicies(ctx context.Context, op Op, sets []SetPolicy) error {
	err := f.modifySetPolicies(ctx, op, sets)
	if err == nil && f.AfterModify != nil {
		f.AfterModify()
	}
	return err
}

func (f *Fake) modifySetPolicies(_ context.Context, op Op, sets []SetPolicy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ModifySetPolicies"]++
	if err := f.takeFail(); err != nil {
		return err
	}
	if f.MaxSetsPerCall > 0 && len(sets) > f.MaxSetsPerCall {
		return fmt.Errorf("fake hns: %d set policies in one call, max %d", len(sets), f.MaxSetsPerCall)
	}
	next := maps.Clone(f.sets)
	for _, s := range sets {
		_, exists := next[s.ID]
		switch op {
		case OpAdd, OpUpdate:
			if op == OpAdd && exists {
				return fmt.Errorf("fake hns: set policy %s exists", s.ID)
			}
			if op == OpUpdate && !exists {
				return fmt.Errorf("fake hns: set policy %s: %w", s.ID, ErrNotFound)
			}
			if s.Values == "" {
				return fmt.Errorf("fake hns: set policy %s: empty", s.ID)
			}
			next[s.ID] = s
		case OpRemove:
			if !exists {
				return fmt.Errorf("fake hns: set policy %s: %w", s.ID, ErrNotFound)
			}
			delete(next, s.ID)
		default:
			return fmt.Errorf("fake hns: op %q", op)
		}
	}
	// validate members and references of the result
	for _, s := range next {
		for _, v := range strings.Split(s.Values, ",") {
			if s.Type == NestedIPSet {
				if c, ok := next[v]; !ok || c.Type != IPSet {
					return fmt.Errorf("fake hns: nested set %s: member %q is not an IPSET", s.ID, v)
				}
			} else if _, err := parseAddr(v); err != nil {
				return fmt.Errorf("fake hns: set %s: %w", s.ID, err)
			}
		}
	}
	for _, e := range f.endpoints {
		for _, a := range e.ACLs {
			if err := checkRefs(a, next); err != nil {
				return fmt.Errorf("fake hns: endpoint %s: %w", e.ID, err)
			}
		}
	}
	f.sets = next
	return nil
}

func parseAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func checkRefs(a ACL, sets map[string]SetPolicy) error {
	for _, field := range []string{a.LocalAddresses, a.RemoteAddresses} {
		if field == "" {
			continue
		}
		for _, tok := range strings.Split(field, ",") {
			if _, err := parseAddr(tok); err == nil {
				continue
			}
			if _, ok := sets[tok]; !ok {
				return fmt.Errorf("acl %s references missing set policy %q", a.ID, tok)
			}
		}
	}
	for _, p := range []string{a.LocalPorts, a.RemotePorts} {
		if _, err := parsePorts(p); err != nil {
			return fmt.Errorf("acl %s: %w", a.ID, err)
		}
	}
	if a.Protocols != "" {
		if _, err := strconv.ParseUint(a.Protocols, 10, 8); err != nil {
			return fmt.Errorf("acl %s: protocols %q", a.ID, a.Protocols)
		}
	}
	return nil
}

// ModifyACLs implements HNS; the call is all-or-nothing.
func (f *Fake) ModifyACLs(ctx context.Context, endpointID string, op Op, acls []ACL) error {
	err := f.modifyACLs(ctx, endpointID, op, acls)
	if err == nil && f.AfterModify != nil {
		f.AfterModify()
	}
	return err
}

func (f *Fake) modifyACLs(_ context.Context, endpointID string, op Op, acls []ACL) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ModifyACLs"]++
	if err := f.takeFail(); err != nil {
		return err
	}
	e := f.endpoints[endpointID]
	if e == nil {
		return fmt.Errorf("fake hns: endpoint %s: %w", endpointID, ErrNotFound)
	}
	if f.MaxACLsPerCall > 0 && len(acls) > f.MaxACLsPerCall {
		return fmt.Errorf("fake hns: %d ACLs in one call, max %d", len(acls), f.MaxACLsPerCall)
	}
	cur := append([]ACL(nil), e.ACLs...)
	for _, a := range acls {
		idx := -1
		for i, c := range cur {
			if c.ID == a.ID {
				idx = i
				break
			}
		}
		switch op {
		case OpAdd:
			if idx >= 0 {
				return fmt.Errorf("fake hns: endpoint %s: acl %s exists", endpointID, a.ID)
			}
			if err := checkRefs(a, f.sets); err != nil {
				return fmt.Errorf("fake hns: endpoint %s: %w", endpointID, err)
			}
			cur = append(cur, a)
		case OpRemove:
			if idx < 0 {
				return fmt.Errorf("fake hns: endpoint %s: acl %s: %w", endpointID, a.ID, ErrNotFound)
			}
			cur = append(cur[:idx], cur[idx+1:]...)
		default:
			return fmt.Errorf("fake hns: op %q", op)
		}
	}
	e.ACLs = cur
	return nil
}

// ---- evaluator ----

// portRng is an inclusive port range.
type portRng struct{ lo, hi uint16 }

func parsePorts(s string) ([]portRng, error) {
	if s == "" {
		return nil, nil
	}
	var out []portRng
	for _, tok := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(tok, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("port %q", tok)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
				return nil, fmt.Errorf("port range %q", tok)
			}
		}
		out = append(out, portRng{uint16(a), uint16(b)})
	}
	return out, nil
}

// addrMatch reports whether a matches a comma list of addresses, prefixes
// and SetPolicy IDs (nested sets resolved); "" matches everything.
func (f *Fake) addrMatch(list string, a netip.Addr) bool {
	if list == "" {
		return true
	}
	for _, tok := range strings.Split(list, ",") {
		if f.tokenMatch(tok, a, 0) {
			return true
		}
	}
	return false
}

func (f *Fake) tokenMatch(tok string, a netip.Addr, depth int) bool {
	if p, err := parseAddr(tok); err == nil {
		return p.Contains(a)
	}
	s, ok := f.sets[tok]
	if !ok || depth > 4 {
		return false
	}
	for _, v := range strings.Split(s.Values, ",") {
		if f.tokenMatch(v, a, depth+1) {
			return true
		}
	}
	return false
}

func portMatch(list string, port uint16) bool {
	rs, err := parsePorts(list)
	if err != nil {
		return false
	}
	if len(rs) == 0 {
		return true
	}
	for _, r := range rs {
		if port >= r.lo && port <= r.hi {
			return true
		}
	}
	return false
}

// matches reports whether ACL a of an endpoint matches packet p in its direction.
func (f *Fake) matches(a ACL, p policy.Packet) bool {
	if a.Protocols != "" && a.Protocols != "256" && a.Protocols != ProtocolNumber(p.Protocol) {
		return false
	}
	local, remote := p.Dst, p.Src
	lport, rport := p.Port, uint16(0)
	if a.Direction == Out {
		local, remote = p.Src, p.Dst
		lport, rport = 0, p.Port
	}
	if !f.addrMatch(a.LocalAddresses, local) || !f.addrMatch(a.RemoteAddresses, remote) {
		return false
	}
	// the source port of a connection is unknown (any): a port filter on
	// it never matches a new connection in this model
	if a.LocalPorts != "" && (a.Direction == Out || !portMatch(a.LocalPorts, lport)) {
		return false
	}
	if a.RemotePorts != "" && (a.Direction == In || !portMatch(a.RemotePorts, rport)) {
		return false
	}
	return true
}

// DirDecision is the decision of one endpoint for one direction.
type DirDecision struct {
	Endpoint string // endpoint ID ("" when the address is no endpoint of this node)
	Allowed  bool
	ACL      *ACL // the deciding ACL (nil: no ACL matched, open)
}

// Decision is the fake HNS's decision for a packet.
type Decision struct {
	Allowed bool
	Out, In DirDecision // egress at the source endpoint, ingress at the destination
}

// Evaluate decides the first packet of a connection like VFP: at the
// source endpoint the Out ACLs, at the destination endpoint the In ACLs,
// each walked by ascending priority (Block before Allow on equal
// priority); the first match decides and no match allows.
func (f *Fake) Evaluate(p policy.Packet) Decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	p.Src, p.Dst = p.Src.Unmap(), p.Dst.Unmap()
	d := Decision{Out: f.evalDir(p.Src, Out, p), In: f.evalDir(p.Dst, In, p)}
	d.Allowed = d.Out.Allowed && d.In.Allowed
	return d
}

func (f *Fake) evalDir(a netip.Addr, dir Direction, p policy.Packet) DirDecision {
	dd := DirDecision{Allowed: true}
	var ep *Endpoint
	for _, e := range f.endpoints {
		for _, ip := range e.IPs {
			if ip == a {
				ep = e
			}
		}
	}
	if ep == nil {
		return dd
	}
	dd.Endpoint = ep.ID
	var acls []ACL
	for _, x := range ep.ACLs {
		if x.Direction == dir {
			acls = append(acls, x)
		}
	}
	sort.SliceStable(acls, func(i, j int) bool {
		if acls[i].Priority != acls[j].Priority {
			return acls[i].Priority < acls[j].Priority
		}
		return acls[i].Action == Block && acls[j].Action != Block
	})
	for i := range acls {
		if f.matches(acls[i], p) {
			dd.Allowed = acls[i].Action == Allow
			dd.ACL = &acls[i]
			return dd
		}
	}
	return dd
}
