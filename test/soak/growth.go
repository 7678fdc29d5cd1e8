//go:build linux

package main

import (
	"fmt"
	"sort"
)

// sample is what one cycle leaves behind once the cluster is back where
// it started: the agent's process figures, the kernel objects in the
// node's namespace and the size of every map the agent keeps.
type sample struct {
	RSSBytes   float64
	Goroutines float64
	OpenFDs    float64
	Rules      int
	Sets       int
	Members    int
	Maps       map[string]int
}

// Tolerances of the growth check. Kernel objects and internal maps must
// come back exactly (the cluster is in the same state after every cycle);
// goroutines and open files may differ by a few (keep-alive connections,
// informer watches being re-established); RSS, which the Go heap and the
// allocator make noisy, may not rise by more than rssFactor and rssSlack
// over the first measured cycles.
const (
	goroutineSlack = 5
	fdSlack        = 5
	rssFactor      = 1.25
	rssSlack       = 4 << 20
)

// growth compares the cycles after the warm-up: the baseline is the
// first `window` cycles after it, the verdict comes from the last
// `window` cycles (a sustained rise, not one noisy sample). It returns one
// line per figure that grew.
func growth(s []sample, warmup, window int) []string {
	if len(s) < warmup+2*window {
		return []string{fmt.Sprintf("too few cycles (%d) to judge: need warm-up %d + 2×%d", len(s), warmup, window)}
	}
	base, last := s[warmup:warmup+window], s[len(s)-window:]
	var out []string
	minOf := func(xs []sample, f func(sample) float64) float64 {
		m := f(xs[0])
		for _, x := range xs[1:] {
			m = min(m, f(x))
		}
		return m
	}
	maxOf := func(xs []sample, f func(sample) float64) float64 {
		m := f(xs[0])
		for _, x := range xs[1:] {
			m = max(m, f(x))
		}
		return m
	}
	check := func(name string, f func(sample) float64, slack float64, factor float64) {
		b, l := maxOf(base, f), minOf(last, f)
		if l > b*factor+slack {
			out = append(out, fmt.Sprintf("%s grew: at most %.0f in cycles %d-%d, at least %.0f in the last %d cycles (tolerance ×%.2f + %.0f)",
				name, b, warmup+1, warmup+window, l, window, factor, slack))
		}
	}
	check("RSS bytes", func(x sample) float64 { return x.RSSBytes }, rssSlack, rssFactor)
	check("goroutines", func(x sample) float64 { return x.Goroutines }, goroutineSlack, 1)
	check("open fds", func(x sample) float64 { return x.OpenFDs }, fdSlack, 1)
	check("kernel rules", func(x sample) float64 { return float64(x.Rules) }, 0, 1)
	check("kernel sets", func(x sample) float64 { return float64(x.Sets) }, 0, 1)
	check("kernel set members", func(x sample) float64 { return float64(x.Members) }, 0, 1)
	names := map[string]bool{}
	for _, x := range s[warmup:] {
		for k := range x.Maps {
			names[k] = true
		}
	}
	var sorted []string
	for k := range names {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		check("map "+k, func(x sample) float64 { return float64(x.Maps[k]) }, 0, 1)
	}
	return out
}
