package daemon

import "time"

// batching decides how long the worker waits, once it has taken a key that
// changes the kernel, before it starts the transaction. A fixed wait would
// be the floor of every event->enforced latency; no wait at all would cost
// one kernel transaction per event when events come faster than
// transactions. So the wait follows the backlog, not the clock:
//
//   - no backlog (nothing else was queued when the key was taken): start
//     at once, and the window halves (down to min);
//   - backlog (other keys were already waiting: events arrive faster than
//     the worker finishes them): the window doubles (up to max), and the
//     transaction starts once window has passed since the previous one
//     ended; everything queued meanwhile shares it.
//
// An event that arrives while a transaction runs is batched with whatever
// else arrives in that time, without waiting any longer. A closed loop
// (each event waits for the previous one to be enforced, as a deployment
// tool or the bench does) never queues, so it never waits, however close
// its events follow each other. Under a sustained backlog there is at most
// one transaction per max (plus its own duration). The policy is pure
// (times are passed in), so it is tested without sleeping.
type batching struct {
	min, max time.Duration
	window   time.Duration
	lastEnd  time.Time // end of the previous transaction; zero before the first
}

// minBatchWindow is the smallest window the policy shrinks to (and the
// first step it grows from), whatever the configured maximum.
const minBatchWindow = time.Millisecond

func newBatching(max time.Duration) *batching {
	lo := min(minBatchWindow, max)
	return &batching{min: lo, max: max, window: lo}
}

// delay is how long to wait before a transaction whose first key was taken
// at now, with backlog telling whether other keys were queued then, and
// adapts the window.
func (b *batching) delay(now time.Time, backlog bool) time.Duration {
	if b.max <= 0 {
		return 0
	}
	if !backlog {
		b.window = max(b.window/2, b.min)
		return 0
	}
	b.window = min(b.window*2, b.max)
	since := now.Sub(b.lastEnd)
	if b.lastEnd.IsZero() || since >= b.window {
		return 0
	}
	return b.window - since
}

// done records the end of a transaction.
func (b *batching) done(end time.Time) { b.lastEnd = end }
