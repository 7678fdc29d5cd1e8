package daemon

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/policy"
)

// view is what queries (/status, /explain) read: published by the worker
// at the end of every batch through an atomic pointer and never changed
// afterwards, so a query never takes the lock every batch needs, and a
// flood of queries cannot delay enforcement.
type view struct {
	status Status // QueueDepth is filled in at read time
	// state is the desired state as the last successful transaction
	// programmed it: a copy-on-write of the previous view's (only the
	// objects a batch changed are copied, and a set whose changed members
	// the batch names only as far as they changed: policy.Set overlays).
	state *policy.State
	// objects memoizes dataplane.Objects per policy key for this
	// generation (see (*Daemon).objects).
	objects sync.Map
}

// publish makes the current status, and the state when changes were just
// programmed (changes non-nil), visible to queries. Called by the worker
// with mu held.
func (d *Daemon) publish(programmed *policy.Changes) { d.publishView(nil, programmed, true) }

// sizesEvery is how often refreshSizes recounts Status.Sizes after
// batches left them stale: the count walks every map the engine keeps,
// O(cluster); it was a quarter of the agent's CPU when every remote pod
// event did it, and held up the next event when every transaction did.
const sizesEvery = time.Second

// publishView is publish of the programmed state (nil: the engine's);
// without recount, Status.Sizes is reused (refreshSizes recounts them
// within sizesEvery).
func (d *Daemon) publishView(programmedState *policy.State, programmed *policy.Changes, recount bool) {
	prev := d.view.Load()
	sizes := prev.status.Sizes
	if recount || sizes == nil {
		sizes = d.sizes()
		d.sizesStale.Store(false)
	} else {
		d.sizesStale.Store(true)
	}
	v := &view{
		status: Status{Node: d.cfg.NodeName, Ready: d.ready.Load(), Generation: d.generation,
			AppliedResourceVersions: maps.Clone(d.appliedRV), LastError: d.lastErr, Sizes: sizes},
		state: prev.state,
	}
	if programmed != nil {
		base := prev.state
		if prev.status.Generation == 0 {
			base = nil // the first transaction: copy the whole state once
		}
		if programmedState == nil {
			programmedState = d.engine.State()
		}
		v.state = base.CopyOnWrite(programmedState, programmed)
		d.flowIndex.Update(v.state) // indexed only when a flow-log message needs it
	}
	d.view.Store(v)
}

// objects names the kernel objects of one policy for explain. The
// dataplanes keep those names in their own maps, which only the worker may
// read while it holds mu, so this takes mu for the few lookups of one
// policy, at most once per policy and generation: the answer is memoized
// in the view. When the worker has moved past v's generation meanwhile,
// the names come from the newer programmed state and are not memoized.
func (d *Daemon) objects(v *view, key string) []dataplane.Object {
	if o, ok := v.objects.Load(key); ok {
		return o.([]dataplane.Object)
	}
	d.mu.Lock()
	objs := d.dp.Objects(key)
	current := d.generation == v.status.Generation
	d.mu.Unlock()
	if current {
		v.objects.Store(key, objs)
	}
	return objs
}

// refreshSizes recounts Status.Sizes and the gauges every sizesEvery
// while a batch left them stale, so they are never older than that once
// the node is quiet.
func (d *Daemon) refreshSizes(ctx context.Context) {
	t := time.NewTicker(sizesEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d.sizesStale.Load() || d.gaugesStale.Load() {
			d.mu.Lock()
			if d.gaugesStale.Swap(false) {
				d.updateGauges()
			}
			if d.sizesStale.Load() {
				d.publish(nil)
			}
			d.mu.Unlock()
		}
	}
}
