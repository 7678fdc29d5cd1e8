package translate

import "github.com/open-acn/acn/npm/policy"

// Live sets. Every azure-npm sees every policy of the cluster, but only
// the policies that apply to an Endpoint of its node are programmed or
// evaluated here (dataplane.Narrow, State.Evaluate). Computing the members
// of every other policy's sets cost an entry per selected pod and set, and
// a map entry per pod in each of their selectors: most of the translator's
// memory at 150,000 pods, for nothing this node can enforce.
//
// So a set is live — its members computed, kept current, and its
// selectors' maps of the pods they select kept — while at least one
// policy listed by an Endpoint references it (or always, with
// Options.AllSets). A policy counts the Endpoints listing it
// (compiled.active); when the count leaves 0 its sets become live, when it
// returns to 0 they are released. A set that becomes live or stops being
// live is a full change (the dataplane renders it whole), exactly as a
// new or deleted set: since no dataplane held it before, the narrowed
// state and its changes are the same as if every set were computed.
//
// Targets need no map of selected pods: the pods that can be Endpoints
// (cands) are matched against a policy's target directly.

// setCandidate records whether p can be an Endpoint (on this node, or an
// external service backend).
func (e *Engine) setCandidate(p *podInfo) {
	m := e.cands[p.ns]
	if p.local || e.isExtBackend(p.key) {
		if m == nil {
			m = map[string]*podInfo{}
			e.cands[p.ns] = m
		}
		m[p.key] = p
		return
	}
	if m != nil {
		e.dropCandidate(p.ns, p.key)
	}
}

func (e *Engine) dropCandidate(ns, key string) {
	if m := e.cands[ns]; m != nil {
		delete(m, key)
		if len(m) == 0 {
			delete(e.cands, ns)
		}
	}
}

// usePolicies counts, for each policy, the Endpoints listing it, after one
// Endpoint changed from old to ep: the policies it now lists gain one
// first, then those it no longer lists lose one, so a set both use stays
// live.
func (e *Engine) usePolicies(ep, old *policy.Endpoint) {
	now, before := listedPolicies(ep), listedPolicies(old)
	for k := range now {
		if _, ok := before[k]; !ok {
			e.policyUsed(k, 1)
		}
	}
	for k := range before {
		if _, ok := now[k]; !ok {
			e.policyUsed(k, -1)
		}
	}
}

func listedPolicies(ep *policy.Endpoint) map[string]struct{} {
	if ep == nil {
		return nil
	}
	m := make(map[string]struct{}, len(ep.Ingress)+len(ep.Egress))
	for _, k := range ep.Ingress {
		m[k] = struct{}{}
	}
	for _, k := range ep.Egress {
		m[k] = struct{}{}
	}
	return m
}

// policyUsed adds d (±1) to the Endpoints listing policy key. A policy
// being uninstalled is no longer in e.policies: uninstall releases its
// sets itself.
func (e *Engine) policyUsed(key string, d int) {
	c := e.policies[key]
	if c == nil {
		return
	}
	c.active += d
	switch {
	case d > 0 && c.active == 1:
		e.useSets(c.sets, 1)
	case d < 0 && c.active == 0:
		e.useSets(c.sets, -1)
	}
}

// useSets adds d (±1) to the uses of each set by active policies, making
// a set live at its first use and releasing it at its last.
func (e *Engine) useSets(specs []setSpec, d int) {
	for _, spec := range specs {
		se := e.sets[spec.id]
		if se == nil {
			continue
		}
		se.active += d
		if e.opts.AllSets {
			continue
		}
		switch {
		case d > 0 && se.active == 1:
			e.makeLive(se)
		case d < 0 && se.active == 0:
			e.unlive(se)
			e.fullChange(se.spec.id)
		}
	}
}

// makeLive computes a set's members and keeps them current from then on:
// its selectors select their pods (those that did not yet), and their
// selected pods contribute.
func (e *Engine) makeLive(se *setEntry) {
	se.live = true
	e.fullChange(se.spec.id)
	if se.spec.nodeSel != nil {
		e.refNodeSet(se)
	}
	for _, k := range se.spec.sels {
		s := e.selectors[k]
		if s == nil {
			continue
		}
		if s.pods == nil {
			e.selectPods(s)
		}
		s.deps[se.spec.id] = se
		for _, p := range s.pods {
			if _, done := se.contrib[p.key]; done {
				continue
			}
			if c := e.contribution(se, p); c != nil {
				e.setContrib(se, p.key, c)
			}
		}
	}
}

// selectPods fills a selector's map of the pods it selects.
func (e *Engine) selectPods(s *selector) {
	s.pods, s.deps = map[string]*podInfo{}, map[string]*setEntry{}
	if s.nsName != "" {
		if n := e.namespaces[s.nsName]; n != nil {
			for _, p := range n.pods {
				if s.matches(p, n) {
					s.pods[p.key] = p
				}
			}
		}
		return
	}
	for _, n := range e.namespaces {
		if !s.nsSel.Matches(n.labels) {
			continue
		}
		for _, p := range n.pods {
			if s.podSel.Matches(p.labels) {
				s.pods[p.key] = p
			}
		}
	}
}

// unlive forgets a set's computed members (its static ones stay) and
// lets its selectors forget their pods when no other live set needs them.
// The members map is replaced, not emptied: readers of earlier states may
// hold it.
func (e *Engine) unlive(se *setEntry) {
	se.live = false
	id := se.spec.id
	for _, k := range se.spec.sels {
		if s := e.selectors[k]; s != nil && s.deps != nil {
			delete(s.deps, id)
			if len(s.deps) == 0 {
				s.pods, s.deps = nil, nil
			}
		}
	}
	delete(e.nodeSets, id)
	se.contrib, se.nodeContrib, se.extra = map[string]*podInfo{}, nil, map[policy.Member]int{}
	se.set.Members = make(map[policy.Member]struct{}, len(se.spec.static))
	for _, m := range se.spec.static {
		se.hold(m)
	}
}
