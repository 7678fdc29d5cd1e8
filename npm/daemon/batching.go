package daemon

import "time"

// batching decides how long the worker waits, once a key is queued, before
// it starts a transaction. A fixed wait would be the floor of every
// event->enforced latency; no wait at all would cost one kernel transaction
// per event under churn. So the wait adapts:
//
//   - idle (the first key arrives at least window after the previous
//     transaction ended): start at once;
//   - otherwise wait until window has passed since the previous transaction
//     ended, and everything queued meanwhile shares the transaction;
//   - each time keys arrive inside the window, the window doubles (up to
//     max); each time one arrives after it, the window halves (down to min).
//
// Under sustained load there is at most one transaction per max (plus its
// own duration); a quiet node applies every event as soon as it arrives.
// The policy is pure (times are passed in), so it is tested without sleeping.
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
// at now, and adapts the window: a key inside the window means events are
// queueing up.
func (b *batching) delay(now time.Time) time.Duration {
	if b.max <= 0 {
		return 0
	}
	since := now.Sub(b.lastEnd)
	if b.lastEnd.IsZero() || since >= b.window {
		b.window = max(b.window/2, b.min)
		return 0
	}
	wait := b.window - since
	b.window = min(b.window*2, b.max)
	return wait
}

// done records the end of a batch (whether or not it needed a transaction).
func (b *batching) done(end time.Time) { b.lastEnd = end }
