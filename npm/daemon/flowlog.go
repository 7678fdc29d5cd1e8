package daemon

import (
	"fmt"
	"net/netip"

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

// podIPIndex is the pod informer's index by IP (only with flow logs).
const podIPIndex = "ip"

// kernelFlowLog is the dataplanes' flow-log configuration.
func kernelFlowLog(cfg config.Config) dataplane.FlowLog {
	return dataplane.FlowLog{Group: uint16(cfg.FlowLog.NFLOGGroup), Rate: cfg.FlowLog.RatePerSecond, Burst: cfg.FlowLog.Burst}
}

// flowLogDefault is the configured default mode (validated by config).
func flowLogDefault(cfg config.Config) policy.FlowLog {
	m, _ := flowlog.ParseDefault(cfg.FlowLog.Default)
	return m
}

func podIPs(obj interface{}) ([]string, error) {
	p, ok := obj.(*cachedPod)
	if !ok || p.hostNetwork {
		return nil, nil
	}
	var out []string
	if p.podIP != "" {
		out = append(out, p.podIP)
	}
	return append(out, p.podIPs...), nil
}

// podByIP names the pod holding an address (namespace/name).
func (d *Daemon) podByIP(a netip.Addr) (string, bool) {
	objs, err := d.podInf.GetIndexer().ByIndex(podIPIndex, a.String())
	if err != nil || len(objs) == 0 {
		return "", false
	}
	p := objs[0].(*cachedPod)
	return p.Namespace + "/" + p.Name, true
}

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

var _ cache.IndexFunc = podIPs
