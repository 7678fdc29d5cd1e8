//go:build linux

package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type doc struct {
	N     int               `json:"n"`
	Items map[string]string `json:"items"`
}

func TestSaveThenLoadRoundTrips(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "state.json")
	if err := Save(p, &doc{N: 3, Items: map[string]string{"a": "b"}}); err != nil {
		t.Fatal(err)
	}
	var d doc
	ok, aside, err := Load(p, &d)
	if !ok || aside != "" || err != nil || d.N != 3 || d.Items["a"] != "b" {
		t.Fatalf("ok=%v aside=%q err=%v doc=%+v", ok, aside, err, d)
	}
	// No temp files are left next to the state.
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("directory has %d entries, want only the state file", len(entries))
	}
}

func TestLoadMissingIsEmptyNotAnError(t *testing.T) {
	var d doc
	ok, _, err := Load(filepath.Join(t.TempDir(), "none.json"), &d)
	if ok || err != nil {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
}

func TestCorruptFileIsMovedAsideByLoadButNotByRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := os.WriteFile(p, []byte(`{"n": 1, "items": {`), 0o644); err != nil {
		t.Fatal(err)
	}
	var d doc
	if _, err := Read(p, &d); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read: %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal("Read moved the file; only the locked Load may")
	}
	_, aside, err := Load(p, &d)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(aside, ".corrupt-") {
		t.Fatalf("Load: aside=%q err=%v", aside, err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Error("corrupt file still in place")
	}
	if data, err := os.ReadFile(aside); err != nil || string(data) != `{"n": 1, "items": {` {
		t.Errorf("the corrupt content must be kept for inspection: %q %v", data, err)
	}
}

func TestLockIsExclusiveAndTimesOut(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock")
	l, err := Acquire(p, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := Acquire(p, 100*time.Millisecond); !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("second Acquire: %v, want a timeout", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Errorf("timeout took %s", d)
	}
	l.Release()
	l2, err := Acquire(p, time.Second)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}

// TestLockSerializesReadModifyWrite: 50 goroutines increment a counter in
// a file under the lock; none is lost.
func TestLockSerializesReadModifyWrite(t *testing.T) {
	dir := t.TempDir()
	lock, state := filepath.Join(dir, "l"), filepath.Join(dir, "s.json")
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Acquire(lock, 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			defer l.Release()
			var d doc
			if _, _, err := Load(state, &d); err != nil {
				t.Error(err)
				return
			}
			d.N++
			if err := Save(state, &d); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var d doc
	_, _ = Read(state, &d)
	if d.N != 50 {
		t.Fatalf("counter %d, want 50", d.N)
	}
}
