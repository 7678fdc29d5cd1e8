package policyassistant

import (
	v1 "k8s.io/api/core/v1"
)

type Traffic struct {
	Source      *TrafficPeer
	Destination *TrafficPeer

	ResolvedPort     int
	ResolvedPortName string
	Protocol         v1.Protocol
}

type TrafficPeer struct {
	Internal *InternalPeer
	// IP external to cluster
	IP string
}

func (p *TrafficPeer) Namespace() string {
	if p.Internal == nil {
		return ""
	}
	return p.Internal.Namespace
}

func (p *TrafficPeer) IsExternal() bool {
	return p.Internal == nil
}

// Internal to cluster
type InternalPeer struct {
	// optional: if set, will override remaining values with information from cluster
	Workload        string
	PodLabels       map[string]string
	NamespaceLabels map[string]string
	Namespace       string
	// optional
	Pods []*PodNetworking
}

type PodNetworking struct {
	IP string
	// don't worry about populating below fields right now
	IsHostNetworking bool
	NodeLabels       []string
}
