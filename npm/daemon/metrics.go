package daemon

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are azure-npm's Prometheus series. They live in a registry of the
// daemon's own, so tests can run several daemons in one process.
type metrics struct {
	registry *prometheus.Registry

	policies, pods, endpoints, sets, setMembers, rules, queueDepth prometheus.Gauge
	ready                                                          prometheus.Gauge
	failClosedPolicies                                             prometheus.Gauge

	applyLatency     prometheus.Histogram
	reconcileLatency prometheus.Histogram
	batchPhase       *prometheus.HistogramVec
	enforceLatency   *prometheus.HistogramVec
	applyFailures    prometheus.Counter
	applies          prometheus.Counter
	driftRepairs     prometheus.Counter
	reconcileErrors  prometheus.Counter
	events           *prometheus.CounterVec
	explainQueries   prometheus.Counter
	invalidResources *prometheus.CounterVec
	// invalidAnnotations counts malformed flow-log annotations.
	invalidAnnotations prometheus.Counter
}

func newMetrics() *metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g := func(name, help string) prometheus.Gauge {
		m := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "npm", Name: name, Help: help})
		r.MustRegister(m)
		return m
	}
	c := func(name, help string) prometheus.Counter {
		m := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "npm", Name: name, Help: help})
		r.MustRegister(m)
		return m
	}
	// Buckets from 1 ms to ~16 s: the targets are tens of milliseconds,
	// a cold start at scale is seconds.
	buckets := prometheus.ExponentialBuckets(0.001, 2, 15)
	m := &metrics{
		registry:           r,
		policies:           g("policies", "NetworkPolicies known to the daemon."),
		pods:               g("pods", "Pods with an IP known to the daemon (all nodes; peers need them)."),
		endpoints:          g("endpoints", "Pods of this node selected by at least one policy."),
		sets:               g("sets", "Sets (ipsets / nftables sets / HNS SetPolicies) in the desired state."),
		setMembers:         g("set_members", "Members of all sets in the desired state."),
		rules:              g("rules", "Rules programmed by the dataplane (iptables rules, nftables rules, HNS ACLs)."),
		queueDepth:         g("queue_depth", "Objects waiting to be translated and applied."),
		ready:              g("ready", "1 once the first full sync is programmed in the kernel."),
		failClosedPolicies: g("fail_closed_policies", "Policies that could not be translated and deny for the pods they select."),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "npm", Name: "apply_duration_seconds",
			Help: "Time of one dataplane transaction (Apply).", Buckets: buckets}),
		// Where an event's time goes, per batch: waiting in the batching
		// window, translation (engine update and projection), the
		// dataplane transaction, and publishing the view and status.
		batchPhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "npm", Name: "batch_phase_seconds",
			Help:    "Time of each phase of a batch that programmed the kernel: wait (batching window), translate, apply (the dataplane transaction), publish.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"phase"}),
		reconcileLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "npm", Name: "reconcile_duration_seconds",
			Help: "Time the worker was held up by a reconcile (the kernel read-back runs before, without holding it, when the dataplane can).", Buckets: buckets}),
		enforceLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "npm", Name: "event_to_enforced_seconds",
			Help: "Time from an informer event to the kernel enforcing it.", Buckets: buckets}, []string{"kind"}),
		applyFailures:   c("apply_failures_total", "Dataplane transactions that failed (and were retried)."),
		applies:         c("applies_total", "Dataplane transactions that succeeded."),
		driftRepairs:    c("drift_repairs_total", "Kernel objects repaired by reconcile after drift."),
		reconcileErrors: c("reconcile_failures_total", "Reconcile passes that failed."),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "npm", Name: "events_total",
			Help: "Informer events received."}, []string{"kind", "op"}),
		explainQueries: c("explain_queries_total", "explain requests served."),
		invalidResources: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "npm", Name: "invalid_objects_total",
			Help: "Objects the informers delivered that could not be decoded."}, []string{"kind"}),
	}
	m.invalidAnnotations = c("flow_log_invalid_annotations_total", "Flow-log annotations of namespaces and ClusterNetworkPolicies that could not be parsed (the object keeps flowLog.default).")
	r.MustRegister(m.applyLatency, m.reconcileLatency, m.batchPhase, m.enforceLatency, m.events, m.invalidResources)
	return m
}
