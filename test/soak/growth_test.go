//go:build linux

package main

import (
	"strings"
	"testing"
)

func flat(n int) []sample {
	var s []sample
	for i := 0; i < n; i++ {
		s = append(s, sample{RSSBytes: 50 << 20, Goroutines: 40, OpenFDs: 20, Rules: 10, Sets: 4, Members: 8, Maps: map[string]int{"engine.pods": 2}})
	}
	return s
}

// TestGrowth: flat figures and noise within the tolerances pass; a map, a
// kernel object count or RSS that keeps rising is named.
func TestGrowth(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func([]sample)
		want   string // "" = no growth reported
	}{
		{"flat", func([]sample) {}, ""},
		{"warm-up may grow", func(s []sample) { s[0].Maps["engine.pods"] = 0; s[1].RSSBytes = 10 << 20 }, ""},
		{"goroutine noise", func(s []sample) { s[len(s)-1].Goroutines += goroutineSlack }, ""},
		{"one noisy rss sample", func(s []sample) { s[len(s)-2].RSSBytes *= 3 }, ""},
		{"map leaks one entry per cycle", func(s []sample) {
			for i := range s {
				s[i].Maps = map[string]int{"engine.pods": 2, "daemon.eventCounts": 5 * i}
			}
		}, "map daemon.eventCounts grew"},
		{"kernel members left behind", func(s []sample) {
			for i := range s {
				s[i].Members = 8 + i
			}
		}, "kernel set members grew"},
		{"rss climbs", func(s []sample) {
			for i := range s {
				s[i].RSSBytes = float64(50<<20 + i*(6<<20))
			}
		}, "RSS bytes grew"},
		{"new map appears late", func(s []sample) {
			for i := len(s) - 3; i < len(s); i++ {
				s[i].Maps["dataplane.names"] = 3
			}
		}, "map dataplane.names grew"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := flat(12)
			c.mutate(s)
			got := strings.Join(growth(s, 2, 3), "\n")
			if c.want == "" && got != "" {
				t.Fatalf("reported growth: %s", got)
			}
			if c.want != "" && !strings.Contains(got, c.want) {
				t.Fatalf("got %q, want a line with %q", got, c.want)
			}
		})
	}
	if got := growth(flat(5), 2, 3); len(got) != 1 || !strings.Contains(got[0], "too few cycles") {
		t.Fatalf("too few cycles: %v", got)
	}
}
