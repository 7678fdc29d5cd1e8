// Package daemon is azure-npm's node agent: client-go informers feed the
// incremental translator (npm/translate), and batches of changes are
// programmed into the node's dataplane in one transaction each.
//
// Data flow:
//
//	informers (pods, namespaces, policies; services and endpoint slices
//	for the backends of externally reachable services, services.go)
//	   └─ event handlers: enqueue "kind/ns/name", remember when it was seen
//	work queue (deduplicating, rate-limited retries)
//	   └─ one worker: start at once unless other events are already
//	      queued, then wait out an adaptive window (up to BatchWindow)
//	      while the backlog lasts (batching.go),
//	      drain the queue, apply every key to the translate.Engine, then
//	      dataplane.Apply(state, changes) once
//	kernel (ipset+iptables / nftables / HNS)
//
// The worker starts only after every informer has synced, so the first
// transaction carries the whole desired state and replaces the previous
// run's rules without a gap. Nothing is flushed on shutdown or when the API
// server is away: the kernel keeps enforcing the last state.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	cnpinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"

	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/policy"
	"github.com/open-acn/acn/npm/translate"
)

// Kinds of queued objects; also the "kind" label of the latency metric.
const (
	kindPod       = "pod"
	kindNamespace = "namespace"
	kindPolicy    = "policy"
)

// Control keys force a transaction even when no object changed:
// initialSyncKey after the informers synced (an empty cluster must still
// replace the previous run's rules and become ready), applyRetryKey
// (rate-limited) after a failed transaction, so the retry happens with
// backoff even when no new event arrives.
const (
	initialSyncKey = "sync/initial"
	applyRetryKey  = "retry/apply"
)

func isControlKey(k string) bool { return k == initialSyncKey || k == applyRetryKey }

// Options assemble a Daemon. Run builds them from the configuration; tests
// pass a fake or real clientset and dataplane.
type Options struct {
	Config    config.Config
	Logger    *zap.Logger
	Client    kubernetes.Interface
	Dataplane dataplane.Dataplane
	// ClusterPolicyClient serves ClusterNetworkPolicies; nil: not enforced.
	ClusterPolicyClient cnpclient.Interface
	// Previous are the other dataplanes of this platform: once the first
	// full sync is programmed, their leftovers are removed (a node switched
	// from iptables to nftables keeps no iptables rules). Never before:
	// removing them first would open every pod until the new rules land.
	Previous []dataplane.Dataplane
	// Clock times the batching; nil is the real clock (tests pass a fake).
	Clock clock.Clock
	// FlowLogs starts the flow-log recorder (flowlog.go): Run sets it for
	// the Linux dataplanes; FlowLogNetNS is the network namespace whose
	// NFLOG group it reads ("" = the daemon's own).
	FlowLogs     bool
	FlowLogNetNS string
	// GCPercentAfterStart, when not 0, is the GOGC set once the first full
	// sync is programmed (Run: gcPercent, unless GOGC is set).
	GCPercentAfterStart int
}

// Daemon is one running node agent.
type Daemon struct {
	cfg     config.Config
	log     *zap.Logger
	client  kubernetes.Interface
	dp      dataplane.Dataplane
	prev    []dataplane.Dataplane
	metrics *metrics
	clock   clock.Clock

	factory   informers.SharedInformerFactory
	podInf    cache.SharedIndexInformer
	nsInf     cache.SharedIndexInformer
	policyInf cache.SharedIndexInformer
	// ClusterNetworkPolicies (clusterpolicy.go); nil when not served
	cnpFactory cnpinformers.SharedInformerFactory
	cnpInf     cache.SharedIndexInformer
	nodeInf    cache.SharedIndexInformer // with cnpInf (nodes peers)
	svcInf     cache.SharedIndexInformer // services.go
	sliceInf   cache.SharedIndexInformer
	queue      workqueue.TypedRateLimitingInterface[string]

	// mu guards the engine, the dataplane and everything below: the
	// worker and reconcile never run concurrently. Queries never wait for
	// it: they read view.
	mu          sync.Mutex
	engine      *translate.Engine
	batching    *batching             // the worker's only
	pending     *policy.Changes       // changes not yet applied (a failed transaction)
	enforced    dataplane.Enforced    // what of the engine's state the kernel holds (policies applying to local pods)
	force       bool                  // a control key asks for a transaction even without changes
	sizesStale  atomic.Bool           // the view's Status.Sizes predate a batch
	gaugesStale atomic.Bool           // the gauges predate a transaction
	unapplied   map[string]translated // keys fed to the engine since the last successful transaction
	appliedRV   map[string]uint64     // kind -> highest resourceVersion enforced
	generation  uint64                // successful transactions
	dpCalls     uint64                // Apply and Reconcile calls (a kernel reading older than one is stale)
	lastErr     string
	// backendsDirty: a Service or EndpointSlice changed in this batch;
	// the external backends are recomputed before the transaction.
	backendsDirty bool

	// view is what /status and /explain read (see publish).
	view atomic.Pointer[view]

	// evMu guards what the event handlers record. It is not mu: a handler
	// must never wait for a transaction (seconds on a cold start), or the
	// informers stall and the event times come out late.
	evMu sync.Mutex
	// events: keys with an event not yet enforced (one map, not one per
	// field: at the start it holds every object of the cluster)
	events map[string]eventRecord
	// eventsPeak is the largest len(events) since the map was made: Go
	// maps never shrink, so once it is mostly empty it is made again.
	eventsPeak int
	// appliedObj is the enforcement record behind /status?object=: key ->
	// resourceVersion enforced; absent = not present (or deleted). One
	// entry per object of the cluster, ~110 bytes each (15.5 MiB at 150,000
	// pods, measured by TestEnforcementRecordCost), read by queries under
	// evMu for one map lookup. It is not replaced by a per-kind watermark:
	// after a relist the informer delivers objects in key order, not
	// resourceVersion order, so "no event pending and the watermark passed
	// N" could claim an object enforced before its event was delivered.
	appliedObj map[string]uint64

	registrations []cache.ResourceEventHandlerRegistration

	ready  atomic.Bool
	synced atomic.Bool
	addr   chan string

	flowLogs     bool
	flowLogNetNS string
	gcAfterStart int
	flowIndex    *flowlog.Index
	// podIPs names the pods behind flow-log addresses; made by the first
	// lookup (podByIP), so a node that logs nothing never pays for it
	podIPs     atomic.Pointer[podsByIP]
	podIPsOnce sync.Once
}

// eventRecord is what the handlers recorded for a key whose latest event
// is not enforced yet.
type eventRecord struct {
	first time.Time // the first unapplied event
	rv    uint64    // resourceVersion of the latest event
	seq   uint64    // events received (tells whether one came after translation)
}

// translated is what the engine was given for a key: the object's
// resourceVersion (present) or its absence, and how many events for the key
// had arrived when it was read.
type translated struct {
	rv      uint64
	present bool
	seq     uint64
	eventRV uint64
}

// Status is served at /status on the local socket: what the daemon has
// enforced, as of the end of the last batch.
type Status struct {
	Node                    string            `json:"node"`
	Ready                   bool              `json:"ready"`
	Generation              uint64            `json:"generation"`
	QueueDepth              int               `json:"queueDepth"`
	AppliedResourceVersions map[string]uint64 `json:"appliedResourceVersions"`
	LastError               string            `json:"lastError,omitempty"`
	// Sizes counts the entries of every map the daemon, its engine and
	// (when it reports them) its dataplane keep: flat while the cluster
	// churns back to the same state (the soak test checks).
	Sizes map[string]int `json:"sizes"`
}

// New builds a daemon; Run starts it.
func New(opts Options) (*Daemon, error) {
	if opts.Client == nil || opts.Dataplane == nil {
		return nil, errors.New("daemon: Client and Dataplane are required")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Config.NodeName == "" {
		return nil, errors.New("daemon: node name is empty: set --node-name, NODE_NAME or HOSTNAME")
	}
	d := &Daemon{
		cfg:          opts.Config,
		log:          opts.Logger,
		client:       opts.Client,
		dp:           opts.Dataplane,
		prev:         opts.Previous,
		metrics:      newMetrics(),
		clock:        opts.Clock,
		batching:     newBatching(opts.Config.BatchWindow.D()),
		engine:       translate.NewEngine(translate.Options{NodeName: opts.Config.NodeName, Logger: opts.Logger, FlowLog: flowLogDefault(opts.Config)}),
		flowLogs:     opts.FlowLogs,
		gcAfterStart: opts.GCPercentAfterStart,
		flowLogNetNS: opts.FlowLogNetNS,
		flowIndex:    &flowlog.Index{},
		pending:      policy.NewChanges(),
		events:       map[string]eventRecord{},
		unapplied:    map[string]translated{},
		appliedRV:    map[string]uint64{kindPod: 0, kindNamespace: 0, kindPolicy: 0, kindClusterPolicy: 0, kindNode: 0},
		appliedObj:   map[string]uint64{},
		addr:         make(chan string, 1),
	}
	d.view.Store(&view{status: Status{Node: opts.Config.NodeName, AppliedResourceVersions: maps.Clone(d.appliedRV)}, state: policy.NewState()})
	d.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "azure-npm"})
	d.factory = informers.NewSharedInformerFactory(opts.Client, d.cfg.ResyncPeriod.D())
	// Without the factory's namespace index: nothing looks pods up by
	// namespace in the informer (the engine indexes them itself), and the
	// index is one more entry per pod of the cluster.
	d.podInf = d.factory.InformerFor(&corev1.Pod{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return coreinformers.NewPodInformer(c, metav1.NamespaceAll, resync, cache.Indexers{})
	})
	d.nsInf = d.factory.Core().V1().Namespaces().Informer()
	d.policyInf = d.factory.Networking().V1().NetworkPolicies().Informer()
	d.svcInf = d.factory.Core().V1().Services().Informer()
	d.sliceInf = d.factory.Discovery().V1().EndpointSlices().Informer()
	// Keep only what translation needs (slim.go, services.go): every agent
	// caches every object of the cluster, so full objects would dominate
	// its memory.
	for inf, transform := range map[cache.SharedIndexInformer]cache.TransformFunc{d.podInf: slimPodFor(opts.Config.NodeName), d.nsInf: slimNamespace, d.policyInf: slimPolicy,
		d.svcInf: slimService, d.sliceInf: slimEndpointSlice} {
		if err := inf.SetTransform(transform); err != nil {
			return nil, err
		}
	}
	for kind, inf := range map[string]cache.SharedIndexInformer{kindPod: d.podInf, kindNamespace: d.nsInf, kindPolicy: d.policyInf,
		kindService: d.svcInf, kindEndpointSlice: d.sliceInf} {
		reg, err := inf.AddEventHandler(d.handler(kind))
		if err != nil {
			return nil, err
		}
		d.registrations = append(d.registrations, reg)
		kind := kind
		if err := inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			d.log.Warn("watch failed; keeping the last programmed state and reconnecting with backoff", zap.String("kind", kind), zap.Error(err))
		}); err != nil {
			return nil, err
		}
	}
	if err := d.setupClusterPolicies(opts.ClusterPolicyClient); err != nil {
		return nil, err
	}
	return d, nil
}

// gcPercent is the agent's GOGC once started, unless the environment sets
// one. Almost all of its heap is long-lived (the caches and the desired
// state, about a KiB per pod of the cluster) and it allocates little
// between events, so Go's default of 100 would keep as much garbage
// headroom as live data, doubling the RSS for nothing; 50 costs one more GC
// cycle now and then. The start allocates mostly garbage (every listed
// object as decoded) and runs with startGCPercent: fewer collections while
// the heap grows, and what they leave is returned to the OS once the first
// full sync is programmed.
const (
	gcPercent      = 50
	startGCPercent = 100
)

// Run starts the daemon from configuration: it builds the API client and
// the dataplane, then runs until ctx is cancelled.
func Run(ctx context.Context, cfg config.Config, logger *zap.Logger) error {
	gcAfterStart := 0
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(startGCPercent)
		gcAfterStart = gcPercent
	}
	client, restCfg, err := newClient(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	cnpClient, err := newClusterPolicyClient(restCfg, logger)
	if err != nil {
		return err
	}
	dp, err := NewDataplane(cfg, logger)
	if err != nil {
		return fmt.Errorf("dataplane %s: %w", cfg.Dataplane, err)
	}
	var previous []dataplane.Dataplane
	for name := range dataplaneFactories {
		if name == cfg.Dataplane {
			continue
		}
		if other, err := dataplaneFactories[name](cfg, logger); err == nil {
			previous = append(previous, other)
		}
	}
	_, flowLogs := dp.(dataplane.FlowLogCounter)
	d, err := New(Options{Config: cfg, Logger: logger, Client: client, ClusterPolicyClient: cnpClient, Dataplane: dp, Previous: previous, FlowLogs: flowLogs, GCPercentAfterStart: gcAfterStart})
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// Cleanup removes everything the configured dataplane created.
func Cleanup(ctx context.Context, cfg config.Config, logger *zap.Logger) error {
	dp, err := NewDataplane(cfg, logger)
	if err != nil {
		return fmt.Errorf("dataplane %s: %w", cfg.Dataplane, err)
	}
	if err := dp.Cleanup(ctx); err != nil {
		return err
	}
	logger.Info("removed every kernel object azure-npm created", zap.String("dataplane", cfg.Dataplane))
	return nil
}

func newClient(kubeconfig string) (kubernetes.Interface, *rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	restCfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	restCfg.UserAgent = "azure-npm"
	restCfg.QPS, restCfg.Burst = 50, 100
	// Protobuf, not JSON: listing 150,000 pods decodes several times faster
	// and leaves a fraction of the garbage behind.
	restCfg.ContentType = "application/vnd.kubernetes.protobuf"
	restCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	c, err := kubernetes.NewForConfig(restCfg)
	return c, restCfg, err
}

// Addr returns the HTTP listen address once Run has bound it.
func (d *Daemon) Addr(ctx context.Context) (string, error) {
	select {
	case a := <-d.addr:
		d.addr <- a
		return a, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Ready reports whether the first full sync is programmed.
func (d *Daemon) Ready() bool { return d.ready.Load() }

// Run blocks until ctx is cancelled. The kernel state is left in place.
func (d *Daemon) Run(ctx context.Context) error {
	d.log.Info("azure-npm starting", zap.String("node", d.cfg.NodeName), zap.String("dataplane", d.cfg.Dataplane),
		zap.Duration("reconcileInterval", d.cfg.ReconcileInterval.D()), zap.Duration("batchWindow", d.cfg.BatchWindow.D()))
	servers, err := d.serve()
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, srv := range servers {
			_ = srv.Shutdown(sctx)
		}
	}()

	if d.flowLogs {
		// Bound before the first transaction: every message of a rule it
		// programs has a reader.
		rec, err := d.startFlowLog()
		if err != nil {
			return err
		}
		defer rec.Close()
		d.log.Info("flow logs", zap.String("default", d.cfg.FlowLog.Default), zap.Int("nflogGroup", d.cfg.FlowLog.NFLOGGroup),
			zap.Int("ratePerSecond", d.cfg.FlowLog.RatePerSecond), zap.Int("burst", d.cfg.FlowLog.Burst), zap.String("file", d.cfg.FlowLog.File))
	}
	d.factory.Start(ctx.Done())
	defer d.factory.Shutdown()
	if d.cnpFactory != nil {
		d.cnpFactory.Start(ctx.Done())
		defer d.cnpFactory.Shutdown()
	}
	defer d.queue.ShutDown()
	d.log.Info("waiting for informers to sync")
	// The worker translates while the informers list (at 150,000 pods
	// the list and the translation each take seconds, and need not take
	// them one after the other); it programs nothing before they synced.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.worker(ctx) }()
	defer func() { d.queue.ShutDown(); wg.Wait() }()
	// The handlers' registrations, not just the informers: the first
	// transaction must carry every listed object, so every initial add must
	// have reached the queue before initialSyncKey.
	synced := []cache.InformerSynced{d.podInf.HasSynced, d.nsInf.HasSynced, d.policyInf.HasSynced, d.svcInf.HasSynced, d.sliceInf.HasSynced}
	if d.cnpInf != nil {
		synced = append(synced, d.cnpInf.HasSynced, d.nodeInf.HasSynced)
	}
	for _, r := range d.registrations {
		synced = append(synced, r.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		d.log.Info("stopped before informers synced; kernel state left as it was")
		return nil
	}
	d.synced.Store(true)
	d.log.Info("informers synced", zap.Int("queued", d.queue.Len()))
	d.queue.Add(initialSyncKey)

	wg.Add(2)
	go func() { defer wg.Done(); d.reconcileLoop(ctx) }()
	go func() { defer wg.Done(); d.refreshSizes(ctx) }()
	<-ctx.Done()
	d.queue.ShutDown()
	wg.Wait()
	d.log.Info("azure-npm stopped; kernel rules left in place (use `azure-npm cleanup` to remove them)")
	return nil
}

func (d *Daemon) handler(kind string) cache.ResourceEventHandler {
	enqueue := func(op string, obj interface{}) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			d.metrics.invalidResources.WithLabelValues(kind).Inc()
			d.log.Error("informer delivered an object without metadata", zap.String("kind", kind), zap.Error(err))
			return
		}
		key := kind + "/" + m.GetNamespace() + "/" + m.GetName()
		rv, _ := strconv.ParseUint(m.GetResourceVersion(), 10, 64)
		d.metrics.events.WithLabelValues(kind, op).Inc()
		d.evMu.Lock()
		ev, ok := d.events[key]
		if !ok {
			ev.first = time.Now()
		}
		ev.rv = max(ev.rv, rv)
		ev.seq++
		d.events[key] = ev
		d.eventsPeak = max(d.eventsPeak, len(d.events))
		d.evMu.Unlock()
		d.queue.Add(key)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { enqueue("add", obj) },
		UpdateFunc: func(_, obj interface{}) { enqueue("update", obj) },
		DeleteFunc: func(obj interface{}) { enqueue("delete", obj) },
	}
}

// worker turns queued keys into batches: one translation pass and one
// dataplane transaction per batch.
func (d *Daemon) worker(ctx context.Context) {
	for {
		key, shutdown := d.queue.Get()
		if shutdown {
			return
		}
		batch := []string{key}
		if !d.synced.Load() {
			// Informers still listing: translate what is queued, program
			// nothing. The keys stay unapplied (and pending) until the
			// first transaction, after initialSyncKey.
			for d.queue.Len() > 0 {
				k, shutdown := d.queue.Get()
				if shutdown {
					break
				}
				batch = append(batch, k)
			}
			d.translateBatch(batch)
			for _, k := range batch {
				d.queue.Done(k)
			}
			continue
		}
		// Translate first: a key that changes nothing the kernel holds
		// (most events of other nodes' pods) is finished at once, and
		// neither waits for nor widens the batching window, which only
		// paces kernel transactions.
		t0 := time.Now()
		if d.translateBatch(batch) {
			t1 := time.Now()
			if w := d.batching.delay(d.clock.Now(), d.queue.Len() > 0); w > 0 {
				select {
				case <-d.clock.After(w):
				case <-ctx.Done():
				}
			}
			t2 := time.Now()
			first := len(batch)
			for d.queue.Len() > 0 {
				k, shutdown := d.queue.Get()
				if shutdown {
					break
				}
				batch = append(batch, k)
			}
			d.translateBatch(batch[first:])
			t3 := time.Now()
			d.metrics.batchPhase.WithLabelValues("wait").Observe(t2.Sub(t1).Seconds())
			d.metrics.batchPhase.WithLabelValues("translate").Observe((t1.Sub(t0) + t3.Sub(t2)).Seconds())
			apply := d.applyBatch(ctx, len(batch))
			d.batching.done(d.clock.Now())
			if ce := d.log.Check(zapcore.DebugLevel, "batch programmed"); ce != nil {
				ce.Write(zap.Strings("keys", batch[:min(len(batch), 4)]), zap.Int("objects", len(batch)),
					zap.Duration("wait", t2.Sub(t1)), zap.Duration("translate", t1.Sub(t0)+t3.Sub(t2)),
					zap.Duration("apply", apply), zap.Duration("total", time.Since(t0)))
			}
		}
		for _, k := range batch {
			d.queue.Done(k)
		}
		d.metrics.queueDepth.Set(float64(d.queue.Len()))
	}
}

// processBatch translates keys and programs the result in one transaction.
func (d *Daemon) processBatch(ctx context.Context, batch []string) {
	if d.translateBatch(batch) {
		d.applyBatch(ctx, len(batch))
	}
}

// translateBatch feeds keys to the engine and says whether a transaction
// is needed. When none is (the changes touch nothing the kernel holds), the
// keys are enforced as they are: they are marked applied, and the view
// (what the kernel holds) stays as it is.
func (d *Daemon) translateBatch(keys []string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, key := range keys {
		if isControlKey(key) {
			d.force = true
			continue
		}
		d.unapplied[key] = d.translateKey(key)
	}
	if d.backendsDirty {
		d.engine.SetExternalBackends(d.externalBackends())
		d.backendsDirty = false
	}
	d.pending.Merge(d.engine.TakeChanges())
	// The kernel gets only what applies to this node's pods: an event that
	// changes only policies and sets no local pod uses costs no transaction
	// and leaves the view (the programmed state, which explain reads) as it
	// is.
	if !d.force && d.ready.Load() && (d.enforced.Unchanged(d.pending) || d.noChanges()) {
		d.markApplied(time.Now())
		d.publishView(nil, nil, false)
		d.pending = policy.NewChanges()
		return false
	}
	return true
}

// noChanges projects the pending changes: true when they leave the
// kernel as it is.
func (d *Daemon) noChanges() bool {
	_, changes := d.enforced.Project(d.engine.State(), d.pending)
	return changes.Empty()
}

// applyBatch programs what translateBatch left pending in one transaction
// and returns how long the dataplane took (0: no transaction was needed).
func (d *Daemon) applyBatch(ctx context.Context, objects int) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	state, changes := d.enforced.Project(d.engine.State(), d.pending)
	if changes.Empty() && !d.force && d.ready.Load() {
		// Changed back while the batch waited.
		d.markApplied(time.Now())
		d.publish(nil)
		d.pending = policy.NewChanges()
		return 0
	}
	d.force = false
	d.dpCalls++
	start := time.Now()
	err := d.dp.Apply(ctx, state, changes)
	elapsed := time.Since(start)
	d.metrics.applyLatency.Observe(elapsed.Seconds())
	d.metrics.batchPhase.WithLabelValues("apply").Observe(elapsed.Seconds())
	defer func() {
		d.metrics.batchPhase.WithLabelValues("publish").Observe(time.Since(start.Add(elapsed)).Seconds())
	}()
	if err != nil {
		d.metrics.applyFailures.Inc()
		d.lastErr = err.Error()
		d.log.Error("dataplane transaction failed; keeping the changes and retrying with backoff",
			zap.Error(err), zap.Int("objects", objects), zap.Duration("took", elapsed))
		d.queue.AddRateLimited(applyRetryKey)
		d.publish(nil)
		return elapsed
	}
	d.queue.Forget(applyRetryKey)
	d.enforced.Commit()
	d.pending = policy.NewChanges()
	d.lastErr = ""
	d.generation++
	d.metrics.applies.Inc()
	d.markApplied(time.Now())
	// The gauges and Status.Sizes walk the engine's maps (O(cluster)):
	// counted once a second by refreshSizes, not in every transaction,
	// where they held up the next event.
	first := !d.ready.Load()
	if first {
		d.updateGauges()
	} else {
		d.gaugesStale.Store(true)
	}
	if first {
		st := d.engine.Stats()
		d.log.Info("first full sync programmed; ready", zap.Duration("took", elapsed), zap.Int("policies", st.Policies),
			zap.Int("pods", st.Pods), zap.Int("endpoints", st.Endpoints), zap.Int("sets", st.Sets), zap.Int("members", st.Members))
		for _, other := range d.prev {
			if err := other.Cleanup(ctx); err != nil {
				d.log.Warn("could not remove another dataplane's leftovers", zap.Error(err))
			}
		}
		d.prev = nil // what they read of the kernel to clean it up is garbage now
		// Ready once the other dataplanes' leftovers are gone too: their
		// removal (tens of milliseconds after a switch) holds the worker,
		// and the first events after "ready" must not wait for it.
		d.ready.Store(true)
		d.metrics.ready.Set(1)
		// The start's garbage (the listed objects as decoded, the first
		// batch's bookkeeping, the cleanup's reads) is gone now: give its
		// pages back to the OS at once rather than over minutes, so the
		// RSS is what the agent keeps. One full GC, once, off the worker's
		// path.
		if d.gcAfterStart != 0 {
			debug.SetGCPercent(d.gcAfterStart)
		}
		go debug.FreeOSMemory()
	}
	// The view is what the kernel now holds: the projection, not the
	// engine's every policy and set.
	d.publishView(state, changes, first)
	return elapsed
}

// markApplied records, for every key translated since the last successful
// transaction (a failed one included), the version now enforced and the
// event->enforced latency. A key whose object changed again after it was
// read stays pending: the next batch carries it.
func (d *Daemon) markApplied(now time.Time) {
	d.evMu.Lock()
	defer d.evMu.Unlock()
	for key, tr := range d.unapplied {
		kind := kindOf(key)
		if tr.present {
			d.appliedObj[key] = tr.rv
		} else {
			delete(d.appliedObj, key)
		}
		if tr.eventRV > d.appliedRV[kind] {
			d.appliedRV[kind] = tr.eventRV
		}
		ev, ok := d.events[key]
		if ev.seq != tr.seq {
			continue // a newer event arrived after the read
		}
		if ok {
			d.metrics.enforceLatency.WithLabelValues(kind).Observe(now.Sub(ev.first).Seconds())
		}
		delete(d.events, key)
	}
	if len(d.events) <= d.eventsPeak/8 && d.eventsPeak > 64 {
		// Go maps never shrink: after the initial sync this held an entry
		// per object of the cluster (~100 bytes each), and would keep the
		// buckets for good, though a few keys stay pending under churn.
		// (Not maps.Clone: it keeps the old map's size.)
		fresh := make(map[string]eventRecord, len(d.events))
		for k, v := range d.events {
			fresh[k] = v
		}
		d.events, d.eventsPeak = fresh, len(fresh)
	}
	d.unapplied = map[string]translated{}
}

func kindOf(key string) string {
	kind, _, _ := strings.Cut(key, "/")
	return kind
}

// splitKey parses "kind/namespace/name" (namespace empty for namespaces)
// into the kind and the informer store key.
func splitKey(key string) (kind, ns, name, storeKey string) {
	kind, rest, _ := strings.Cut(key, "/")
	ns, name, _ = strings.Cut(rest, "/")
	storeKey = name
	if ns != "" {
		storeKey = ns + "/" + name
	}
	return kind, ns, name, storeKey
}

func (d *Daemon) store(kind string) cache.Store {
	switch kind {
	case kindPod:
		return d.podInf.GetStore()
	case kindNamespace:
		return d.nsInf.GetStore()
	case kindClusterPolicy, kindNode:
		inf := map[string]cache.SharedIndexInformer{kindClusterPolicy: d.cnpInf, kindNode: d.nodeInf}[kind]
		if inf != nil {
			return inf.GetStore()
		}
		return cache.NewStore(cache.MetaNamespaceKeyFunc)
	case kindService:
		return d.svcInf.GetStore()
	case kindEndpointSlice:
		return d.sliceInf.GetStore()
	default:
		return d.policyInf.GetStore()
	}
}

// ObjectStatus says whether the kernel enforces an object ("pod/ns/name",
// "namespace//name", "policy/ns/name") and at which resourceVersion.
type ObjectStatus struct {
	Key             string `json:"key"`
	Present         bool   `json:"present"`
	ResourceVersion uint64 `json:"resourceVersion,omitempty"`
	Pending         bool   `json:"pending"` // an event for it is not applied yet
}

// Object reports the enforced state of one object: two map lookups under
// evMu, never the main lock.
func (d *Daemon) Object(key string) ObjectStatus {
	d.evMu.Lock()
	defer d.evMu.Unlock()
	rv, ok := d.appliedObj[key]
	_, pending := d.events[key]
	return ObjectStatus{Key: key, Present: ok, ResourceVersion: rv, Pending: pending}
}

// translateKey reads the object's latest state from the informer cache and
// feeds it to the engine. A missing object is a delete.
func (d *Daemon) translateKey(key string) translated {
	kind, ns, name, storeKey := splitKey(key)
	// Count the events first: one arriving after this point is newer than
	// what the store gives us below, and keeps the key pending.
	d.evMu.Lock()
	ev := d.events[key]
	tr := translated{seq: ev.seq, eventRV: ev.rv}
	d.evMu.Unlock()
	obj, exists, _ := d.store(kind).GetByKey(storeKey)
	if exists {
		if m, err := meta.Accessor(obj); err == nil {
			tr.present = true
			tr.rv, _ = strconv.ParseUint(m.GetResourceVersion(), 10, 64)
		}
	}
	switch kind {
	case kindPod:
		if pod, ok := obj.(*cachedPod); tr.present && ok {
			d.engine.UpsertPodLabels(pod.podWithoutLabels(d.cfg.NodeName), pod.labels)
		} else {
			d.engine.DeletePod(ns, name)
		}
	case kindNamespace:
		if n, ok := obj.(*corev1.Namespace); tr.present && ok {
			d.checkFlowLogAnnotation(kindNamespace, n.Name, n.Annotations)
			d.engine.UpsertNamespace(n)
		} else {
			d.engine.DeleteNamespace(name)
		}
	case kindPolicy:
		if np, ok := obj.(*networkingv1.NetworkPolicy); tr.present && ok {
			d.engine.UpsertPolicy(np)
		} else {
			d.engine.DeletePolicy(ns, name)
		}
	case kindClusterPolicy, kindNode:
		if !tr.present {
			obj = nil
		}
		if kind == kindNode {
			d.translateNode(name, obj)
		} else {
			d.translateClusterPolicy(name, obj)
		}
	case kindService, kindEndpointSlice:
		d.backendsDirty = true
	}
	return tr
}

func (d *Daemon) updateGauges() {
	st := d.engine.Stats()
	d.metrics.policies.Set(float64(st.Policies))
	d.metrics.pods.Set(float64(st.Pods))
	d.metrics.endpoints.Set(float64(st.Endpoints))
	d.metrics.sets.Set(float64(st.Sets))
	d.metrics.setMembers.Set(float64(st.Members))
	failed := 0
	for _, p := range d.engine.State().Policies {
		if p.Error != "" {
			failed++
		}
	}
	d.metrics.failClosedPolicies.Set(float64(failed))
	d.metrics.rules.Set(float64(d.dp.RuleCount()))
}

// reconcileLoop reads the kernel back every ReconcileInterval and repairs
// drift (a chain or set removed by someone else).
func (d *Daemon) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.ReconcileInterval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !d.ready.Load() {
			continue
		}
		d.reconcileOnce(ctx)
	}
}

func (d *Daemon) reconcileOnce(ctx context.Context) int {
	// The kernel read-back (tens of milliseconds) runs without the lock
	// when the dataplane can, so events are not held up by it; it is used
	// only if no transaction ran meanwhile.
	var reading dataplane.KernelReading
	kr, canRead := d.dp.(dataplane.KernelReader)
	if canRead {
		d.mu.Lock()
		calls := d.dpCalls
		d.mu.Unlock()
		r, err := kr.ReadKernel(ctx)
		d.mu.Lock()
		if err == nil && d.dpCalls == calls {
			reading = r
		}
	} else {
		d.mu.Lock()
	}
	defer d.mu.Unlock()
	d.dpCalls++
	start := time.Now()
	var repairs int
	var err error
	if reading != nil {
		repairs, err = kr.ReconcileRead(ctx, reading)
	} else {
		repairs, err = d.dp.Reconcile(ctx)
	}
	d.metrics.reconcileLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		d.metrics.reconcileErrors.Inc()
		d.log.Error("reconcile failed", zap.Error(err))
		return 0
	}
	if repairs > 0 {
		d.updateGauges()
		d.metrics.driftRepairs.Add(float64(repairs))
		d.log.Warn("repaired kernel drift", zap.Int("repairs", repairs))
	}
	return repairs
}

// Status returns what the daemon has enforced, as of the last batch.
func (d *Daemon) Status() Status {
	st := d.view.Load().status
	st.AppliedResourceVersions = maps.Clone(st.AppliedResourceVersions)
	st.Sizes = maps.Clone(st.Sizes)
	st.QueueDepth = d.queue.Len()
	return st
}

// sizes is Status.Sizes; d.mu is held (publish).
func (d *Daemon) sizes() map[string]int {
	sz := d.engine.Sizes()
	for k, v := range d.enforced.Sizes() {
		sz["daemon."+k] = v
	}
	sz["daemon.unapplied"] = len(d.unapplied)
	sz["daemon.appliedObjects"] = len(d.appliedObj)
	sz["daemon.pending.sets"] = len(d.pending.Sets)
	sz["daemon.pending.policies"] = len(d.pending.Policies)
	sz["daemon.pending.endpoints"] = len(d.pending.Endpoints)
	d.evMu.Lock()
	sz["daemon.events"] = len(d.events)
	d.evMu.Unlock()
	if ds, ok := d.dp.(interface{ Sizes() map[string]int }); ok {
		for k, v := range ds.Sizes() {
			sz["dataplane."+k] = v
		}
	}
	return sz
}
