package store

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Lock is a held node-wide lock: an exclusive lock on a file (flock on
// Linux, LockFileEx on Windows). Both are tied to the open file, so the
// end of the process releases it and a kill -9 never leaves it held.
type Lock struct {
	f *os.File
}

// Acquire takes the exclusive lock on path, waiting at most timeout.
//
// The wait is a blocking lock call, so waiters sleep in the kernel's queue
// instead of polling: 300 polling processes on two cores would steal the
// CPU the lock holder needs. The blocking call runs in a goroutine so the
// timeout can fire; if it does, that goroutine releases the lock as soon
// as it gets it (and a plugin process exits anyway, which releases it).
func Acquire(path string, timeout time.Duration) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	// Uncontended: no goroutine, no timer.
	if tryLock(f) == nil {
		return &Lock{f: f}, nil
	}
	var mu sync.Mutex
	abandoned := false
	done := make(chan error, 1)
	go func() {
		err := waitLock(f)
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			_ = f.Close() // releases the lock if we got it
			return
		}
		done <- err
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return &Lock{f: f}, nil
	case <-timer.C:
		mu.Lock()
		defer mu.Unlock()
		select {
		case err := <-done: // got it just now after all
			if err == nil {
				return &Lock{f: f}, nil
			}
			_ = f.Close()
		default:
			abandoned = true
		}
		return nil, fmt.Errorf("%w (%s after %s)", ErrLockTimeout, path, timeout)
	}
}

// Release drops the lock.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	unlock(l.f)
	_ = l.f.Close()
	l.f = nil
}
