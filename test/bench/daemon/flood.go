//go:build linux

package main

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/open-acn/acn/internal/scaleworld"
	"github.com/open-acn/acn/npm/daemon"
	"github.com/open-acn/acn/npm/explain"
	"github.com/open-acn/acn/npm/localsock"
	"github.com/open-acn/acn/test/cluster"
)

// flood sends qps queries per second to a node's agent through its local
// socket, for at least min: a third each of /status, /status?object= and
// /explain between two pods of the world (one on the node).
type flood struct {
	qps int
	min time.Duration
}

type floodStats struct {
	served, failed, skipped int
	firstErr                error
	latencies               []float64 // ms
	elapsed                 time.Duration
}

// senders bounds the queries in flight; a tick finding every sender busy
// is counted as skipped, not queued, so the offered rate stays honest.
const senders = 32

func (f flood) start(node *cluster.Node, w *scaleworld.World) (stop func() floodStats) {
	var local, remote string
	for _, p := range w.Pods {
		if p.Spec.NodeName == node.Name && local == "" {
			local = p.Namespace + "/" + p.Name
		}
		if p.Spec.NodeName != node.Name && remote == "" {
			remote = p.Namespace + "/" + p.Name
		}
	}
	targets := []string{
		daemon.StatusPath,
		daemon.StatusPath + "?" + url.Values{"object": {"pod/" + local}}.Encode(),
		explain.Path + "?" + explain.Request{From: remote, To: local, Port: 8080, Protocol: "TCP"}.Values().Encode(),
	}
	socket := node.NPMSocket()
	client := localsock.Client(socket, 5*time.Second)
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = senders

	var mu sync.Mutex
	var st floodStats
	work := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < senders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for target := range work {
				t := time.Now()
				_, err := localsock.Get(context.Background(), client, socket, target)
				ms := float64(time.Since(t).Microseconds()) / 1000
				mu.Lock()
				if err != nil {
					st.failed++
					if st.firstErr == nil {
						st.firstErr = err
					}
				} else {
					st.served++
					st.latencies = append(st.latencies, ms)
				}
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	begin := time.Now()
	go func() {
		defer close(finished)
		// Every millisecond, send what the rate owes by now: a late tick
		// (the machine is busy) sends more, so the offered rate holds.
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		sent := 0
		for {
			select {
			case <-done:
				if time.Since(begin) >= f.min {
					return
				}
			default:
			}
			<-tick.C
			for owed := int(time.Since(begin).Seconds()*float64(f.qps)) - sent; owed > 0; owed-- {
				select {
				case work <- targets[sent%len(targets)]:
				default:
					mu.Lock()
					st.skipped++
					mu.Unlock()
				}
				sent++
			}
		}
	}()
	return func() floodStats {
		close(done)
		<-finished
		close(work)
		wg.Wait()
		st.elapsed = time.Since(begin)
		return st
	}
}
