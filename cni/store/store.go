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
	"time"
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
