//go:build linux

// Package store keeps the plugins' state files crash-safe.
//
// A write goes to a temporary file in the same directory, is fsynced,
// renamed over the old file and the directory is fsynced: a reader (or a
// process killed with -9 in the middle) sees either the old or the new
// file, never a torn one. Because of that, readers need no lock; only
// read-modify-write sequences take the node-wide Lock.
//
// A file that does not parse is not an error that sticks: Load moves it
// aside (name.corrupt-<time>, kept for inspection) and reports ErrCorrupt
// so the caller rebuilds the content from the kernel.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrCorrupt is returned (wrapped) by Load when the file existed but did
// not parse; it has been moved aside.
var ErrCorrupt = errors.New("state file corrupt")

// ErrLockTimeout is returned by Lock when another process held the lock
// for longer than the timeout.
var ErrLockTimeout = errors.New("timed out waiting for the node-wide state lock")

// Read reads path into v without side effects: a file that does not parse
// returns an error wrapping ErrCorrupt and stays where it is. Used by
// lock-free readers; the repair happens under the lock with Load.
func Read(path string, v interface{}) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return true, nil
}

// Load reads path into v. A missing file leaves v untouched and returns
// (false, nil). A file that does not parse is renamed aside and the error
// wraps ErrCorrupt (the returned string is where it went).
func Load(path string, v interface{}) (bool, string, error) {
	ok, err := Read(path, v)
	if !errors.Is(err, ErrCorrupt) {
		return ok, "", err
	}
	aside := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405.000000000"))
	if rerr := os.Rename(path, aside); rerr != nil {
		return false, "", fmt.Errorf("%w (and moving it aside failed: %v)", err, rerr)
	}
	return false, aside, fmt.Errorf("%w (moved to %s)", err, aside)
}

// Save writes v to path atomically and durably: temp file, fsync, rename,
// fsync of the directory.
func Save(path string, v interface{}) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmpName, path); err != nil {
		return err
	}
	ok = true
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so a rename in it survives a power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Lock is a held node-wide lock (flock on a file). Closing the process
// releases it too, so a kill -9 never leaves it held.
type Lock struct {
	f *os.File
}

// Acquire takes an exclusive flock on path, waiting at most timeout.
//
// The wait is a blocking flock, so waiters sleep in the kernel's queue
// instead of polling: 300 polling processes on two cores would steal the
// CPU the lock holder needs. The blocking call runs in a goroutine so the
// timeout can fire; if it does, that goroutine releases the lock as soon
// as it gets it (and a plugin process exits anyway, which releases it).
func Acquire(path string, timeout time.Duration) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	// Uncontended: no goroutine, no timer.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return &Lock{f: f}, nil
	}
	var mu sync.Mutex
	abandoned := false
	done := make(chan error, 1)
	go func() {
		var err error
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
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
			return nil, fmt.Errorf("flock %s: %w", path, err)
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
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}
