package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/tools/cache"

	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/policy"
)

// Flow logs in the daemon: the dataplane puts NFLOG on the verdict rules
// of opted-in namespaces (dataplane.FlowLog from the config); a
// flowlog.Recorder, started before the first transaction, reads the group,
// attributes each message with the published view's policies (an
// flowlog.Index updated at every publish) and the pod informer's IP index,
// and writes the flow log.

// podsByIP names the pods behind addresses in flow-log lines: one map
// entry per pod address of the cluster, kept by a pod informer handler
// registered at the first lookup.
// Not a client-go index: that keeps a string set (a map) per indexed value,
// ~330 bytes per pod of the cluster, a tenth of the agent's memory.
type podsByIP struct {
	mu sync.RWMutex
	m  map[netip.Addr]*cachedPod
}

func newPodsByIP() *podsByIP { return &podsByIP{m: map[netip.Addr]*cachedPod{}} }

// addrs are the pod's addresses (none for host-network pods: their
// address is the node's).
func (p *cachedPod) addrs() []netip.Addr {
	if p.hostNetwork {
		return nil
	}
	var out []netip.Addr
	all := []string{p.podIP}
	if p.podIPs != nil {
		all = append(all, *p.podIPs...)
	}
	for _, s := range all {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// handler keeps the map current; the latest pod to claim an address
// holds it, and a pod's delete releases only what it still holds.
func (x *podsByIP) handler() cache.ResourceEventHandlerFuncs {
	release := func(p *cachedPod) {
		for _, a := range p.addrs() {
			if cur := x.m[a]; cur != nil && cur.namespace == p.namespace && cur.name == p.name {
				delete(x.m, a)
			}
		}
	}
	set := func(old, cur interface{}) {
		x.mu.Lock()
		defer x.mu.Unlock()
		if o, ok := old.(*cachedPod); ok {
			release(o)
		}
		if p, ok := cur.(*cachedPod); ok {
			for _, a := range p.addrs() {
				x.m[a] = p
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { set(nil, obj) },
		UpdateFunc: set,
		DeleteFunc: func(obj interface{}) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*cachedPod); ok {
				x.mu.Lock()
				release(p)
				x.mu.Unlock()
			}
		},
	}
}

// lookup names the pod holding an address (namespace/name).
func (x *podsByIP) lookup(a netip.Addr) (string, bool) {
	x.mu.RLock()
	p := x.m[a.Unmap()]
	x.mu.RUnlock()
	if p == nil {
		return "", false
	}
	return p.namespace + "/" + p.name, true
}

// kernelFlowLog is the dataplanes' flow-log configuration.
func kernelFlowLog(cfg config.Config) dataplane.FlowLog {
	return dataplane.FlowLog{Group: uint16(cfg.FlowLog.NFLOGGroup), Rate: cfg.FlowLog.RatePerSecond, Burst: cfg.FlowLog.Burst}
}

// flowLogDefault is the configured default mode (validated by config).
func flowLogDefault(cfg config.Config) policy.FlowLog {
	m, _ := flowlog.ParseDefault(cfg.FlowLog.Default)
	return m
}

// podByIP names the pod holding an address (namespace/name). The first
// call builds the map: its handler receives every cached pod, which this
// call waits for (bounded), and keeps it current from then on.
func (d *Daemon) podByIP(a netip.Addr) (string, bool) {
	d.podIPsOnce.Do(func() {
		x := newPodsByIP()
		reg, err := d.podInf.AddEventHandler(x.handler())
		if err != nil {
			d.log.Warn("flow logs: cannot watch pod addresses; lines will not name pods", zap.Error(err))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), podsByIPSyncTimeout)
		defer cancel()
		cache.WaitForCacheSync(ctx.Done(), reg.HasSynced)
		d.podIPs.Store(x)
	})
	x := d.podIPs.Load()
	if x == nil {
		return "", false
	}
	return x.lookup(a)
}

// podsByIPSyncTimeout bounds how long the first flow-log line waits for
// the pod address map (a pod informer replays 150,000 pods in about a
// second).
const podsByIPSyncTimeout = 10 * time.Second

// startFlowLog binds the NFLOG group and starts the recorder.
func (d *Daemon) startFlowLog() (*flowlog.Recorder, error) {
	fc, ok := d.dp.(dataplane.FlowLogCounter)
	if !ok {
		return nil, fmt.Errorf("flow logs: dataplane %s does not program them", d.cfg.Dataplane)
	}
	f := d.cfg.FlowLog
	return flowlog.Start(flowlog.Options{
		Node: d.cfg.NodeName, Group: uint16(f.NFLOGGroup), NetNSPath: d.flowLogNetNS,
		File: f.File, MaxSizeMB: f.MaxSizeMB, MaxBackups: f.MaxBackups, Dedup: f.DedupWindow.D(),
		Index: d.flowIndex, Pod: d.podByIP, Dropped: fc.FlowLogDropped, Logger: d.log, Registerer: d.metrics.registry,
	})
}

// checkFlowLogAnnotation logs and counts a malformed flow-log annotation
// of a namespace or ClusterNetworkPolicy (the engine leaves such an object
// at the default).
func (d *Daemon) checkFlowLogAnnotation(kind, name string, annotations map[string]string) {
	if _, err := flowlog.Mode(annotations, flowLogDefault(d.cfg)); err != nil {
		d.metrics.invalidAnnotations.Inc()
		d.log.Warn("flow-log annotation ignored; the object keeps flowLog.default",
			zap.String("kind", kind), zap.String("name", name), zap.String("default", d.cfg.FlowLog.Default), zap.Error(err))
	}
}
