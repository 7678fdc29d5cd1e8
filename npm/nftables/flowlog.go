//go:build linux

package nftables

import (
	"context"
	"fmt"

	gnft "github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/policy"
)

// Flow logs (dataplane.FlowLog). The table holds two stateful objects:
//
//	limit flowlog-limit     { rate over R/second burst B packets }
//	counter flowlog-dropped { }
//
// and a logged verdict rule becomes two rules with the same match:
//
//	<match> limit name "flowlog-limit" counter name "flowlog-dropped" accept   (over the limit: counted, same verdict)
//	<match> log prefix "<flowlog ID>" group G accept                           (within it: the first rule took a token)
//
// (drop for a default deny). Every rule references the one limit object,
// so the limit is per node (one table serves both families), not per
// rule; the counter object is npm_flow_log_dropped_total. Neither changes
// with the rules, so rewriting chains keeps their state; they start anew
// only when the table is replaced (a restart).
const (
	ObjFlowLimit   = "flowlog-limit"
	ObjFlowDropped = "flowlog-dropped"
)

func (d *Dataplane) flowLogging() bool { return d.flowLog.Enabled() }

// flowObjs are the two objects, added (idempotently: no NLM_F_EXCL) with
// every transaction that may create the table or rules referencing them.
func (d *Dataplane) flowObjs() []gnft.Obj {
	if !d.flowLogging() {
		return nil
	}
	return []gnft.Obj{
		&gnft.NamedObj{Table: table, Name: ObjFlowLimit, Type: gnft.ObjTypeLimit,
			Obj: &expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(d.flowLog.Rate), Unit: expr.LimitTimeSecond, Burst: uint32(d.flowLog.Burst), Over: true}},
		&gnft.NamedObj{Table: table, Name: ObjFlowDropped, Type: gnft.ObjTypeCounter, Obj: &expr.Counter{}},
	}
}

// flowRules expands a verdict rule (match expressions and text, without
// the verdict) into the logged pair.
func (d *Dataplane) flowRules(match []expr.Any, text, cm, id string, v expr.VerdictKind) []krule {
	vt := "accept"
	if v == expr.VerdictDrop {
		vt = "drop"
	}
	sp := func(s string) string {
		if s == "" {
			return ""
		}
		return s + " "
	}
	over := append(append([]expr.Any(nil), match...),
		&expr.Objref{Type: unix.NFT_OBJECT_LIMIT, Name: ObjFlowLimit},
		&expr.Objref{Type: unix.NFT_OBJECT_COUNTER, Name: ObjFlowDropped},
		&expr.Verdict{Kind: v})
	logged := append(append([]expr.Any(nil), match...),
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: d.flowLog.Group, Data: []byte(id)},
		&expr.Verdict{Kind: v})
	return []krule{
		newRule(fmt.Sprintf("%slimit name %q counter name %q %s", sp(text), ObjFlowLimit, ObjFlowDropped, vt), cm, over...),
		newRule(fmt.Sprintf("%slog prefix %q group %d %s", sp(text), id, d.flowLog.Group, vt), cm, logged...),
	}
}

// groupLogsDeny reports whether a group's default deny is logged: some of
// its NetworkPolicies' namespaces log denies (the default deny is theirs).
func groupLogsDeny(g *policy.Group, pols map[string]*policy.Policy) bool {
	for _, k := range g.Policies {
		if p := pols[k]; p != nil && !p.Tier.Cluster() && p.FlowLog.Deny() {
			return true
		}
	}
	return false
}

// FlowLogDropped implements dataplane.FlowLogCounter: the packets of the
// counter object.
func (d *Dataplane) FlowLogDropped(ctx context.Context) (uint64, error) {
	if !d.flowLogging() {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c, done, err := d.open()
	if err != nil {
		return 0, err
	}
	defer done()
	o, err := c.GetObject(&gnft.NamedObj{Table: table, Name: ObjFlowDropped, Type: gnft.ObjTypeCounter})
	if err != nil {
		return 0, fmt.Errorf("nftables: read counter %s: %w", ObjFlowDropped, err)
	}
	if no, ok := o.(*gnft.NamedObj); ok {
		if ctr, ok := no.Obj.(*expr.Counter); ok {
			return ctr.Packets, nil
		}
	}
	return 0, fmt.Errorf("nftables: counter %s: unexpected object %T", ObjFlowDropped, o)
}

// logDeny renders the logged default deny of the groups whose policies
// log denies (nil when flow logs are off).
func (d *Dataplane) logDeny() func(g *policy.Group, cm string) []krule {
	if !d.flowLogging() {
		return nil
	}
	pols := d.model.Last.Policies
	return func(g *policy.Group, cm string) []krule {
		if !groupLogsDeny(g, pols) {
			return nil
		}
		return d.flowRules(nil, "", cm, flowlog.DenyID(g), expr.VerdictDrop)
	}
}
