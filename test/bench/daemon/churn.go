//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"time"

	"k8s.io/client-go/util/retry"

	"github.com/open-acn/acn/internal/scaleworld"
	"github.com/open-acn/acn/test/cluster"
)

// churn changes the app label of random pods of the world (most on other
// nodes, like a real cluster's churn) at rate events/s for dur, and counts
// the node's kernel transactions meanwhile: the batching must keep them
// bounded however fast events come.
type churn struct {
	rate int
	dur  time.Duration
}

type churnStats struct {
	events, failed int
	transactions   uint64
	elapsed        time.Duration
}

func (ch churn) run(ctx context.Context, c *cluster.Cluster, node *cluster.Node, w *scaleworld.World, seed int64) (churnStats, error) {
	var st churnStats
	g0, err := node.NPMGeneration()
	if err != nil {
		return st, err
	}
	rng := rand.New(rand.NewSource(seed))
	tick := time.NewTicker(time.Second / time.Duration(ch.rate))
	defer tick.Stop()
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	start := time.Now()
	for time.Since(start) < ch.dur {
		<-tick.C
		p := w.Pods[rng.Intn(len(w.Pods))]
		labels := map[string]string{"app": fmt.Sprintf("app-%d", rng.Intn(20)), "tier": p.Labels["tier"]}
		select {
		case sem <- struct{}{}:
		default:
			continue // every writer busy: the API server sets the pace
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// Two writers may pick the same pod: retry the conflict.
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				_, err := c.SetPodLabels(ctx, p.Namespace, p.Name, labels)
				return err
			})
			mu.Lock()
			if err != nil {
				st.failed++
			} else {
				st.events++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	st.elapsed = time.Since(start)
	time.Sleep(200 * time.Millisecond) // the last batch
	g1, err := node.NPMGeneration()
	if err != nil {
		return st, err
	}
	st.transactions = g1 - g0
	return st, nil
}
