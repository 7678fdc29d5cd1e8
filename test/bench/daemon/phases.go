//go:build linux

package main

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"

	"github.com/open-acn/acn/test/cluster"
)

// phaseTotals are the sums and counts of the agent's latency histograms:
// npm_batch_phase_seconds by phase (wait, translate, apply, publish) and
// npm_event_to_enforced_seconds by kind ("enforced/pod", ...), as read
// from its /metrics. Two readings around a round give the mean time per
// transaction of each phase: where an event's latency goes.
type phaseTotals map[string]struct{ sum, count float64 }

func readPhases(node *cluster.Node) (phaseTotals, error) {
	b, err := node.NPMMetrics()
	if err != nil {
		return nil, err
	}
	t := phaseTotals{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		var key, rest string
		switch {
		case strings.HasPrefix(line, `npm_batch_phase_seconds_`):
			rest = strings.TrimPrefix(line, `npm_batch_phase_seconds_`)
			key = label(rest, "phase")
		case strings.HasPrefix(line, `npm_event_to_enforced_seconds_`):
			rest = strings.TrimPrefix(line, `npm_event_to_enforced_seconds_`)
			key = "enforced/" + label(rest, "kind")
		default:
			continue
		}
		f := strings.Fields(rest)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil || key == "" || key == "enforced/" {
			continue
		}
		e := t[key]
		switch {
		case strings.HasPrefix(rest, "sum{"):
			e.sum = v
		case strings.HasPrefix(rest, "count{"):
			e.count = v
		default:
			continue
		}
		t[key] = e
	}
	return t, sc.Err()
}

// label is the value of label name in a metric line's {...}.
func label(line, name string) string {
	_, v, ok := strings.Cut(line, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ = strings.Cut(v, `"`)
	return v
}

// meanMs is the mean of key between two readings, in milliseconds, and the
// number of observations.
func (t phaseTotals) meanMs(before phaseTotals, key string) (float64, float64) {
	n := t[key].count - before[key].count
	if n <= 0 {
		return 0, 0
	}
	return (t[key].sum - before[key].sum) / n * 1000, n
}
