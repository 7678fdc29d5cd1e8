//go:build linux

// Package owned records which process owns each network namespace, temp
// dir and process that the tests and harnesses (e2e, demo, benchmarks, the
// simulated cluster) create, so that nothing outlives its run:
//
//   - every resource gets a marker file under Dir, written before the
//     resource exists and removed after it is gone, naming the owner's PID
//     and start time;
//   - Sweep removes the resources of owners that are dead (or whose PID now
//     belongs to another process): what an interrupted or killed run left
//     behind. A live run's resources are never touched, so runs on the same
//     machine do not disturb each other. The first resource a process
//     creates sweeps once;
//   - Main runs a harness with a context cancelled on SIGINT, SIGTERM,
//     SIGHUP or a closed stdout/stderr, and removes whatever the process
//     still owns before it exits; CleanupOnSignal does the same for a test
//     binary.
package owned

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Dir holds one marker file per owned resource (tmpfs: markers vanish at
// reboot together with the namespaces and processes they describe).
// $ACN_OWNERS_DIR overrides it (tests of this package).
var Dir = "/run/acn/owners"

func init() {
	if d := os.Getenv("ACN_OWNERS_DIR"); d != "" {
		Dir = d
	}
}

// Kinds of owned resources.
const (
	Netns = "netns" // a named network namespace (/run/netns/<name>)
	Path  = "dir"   // a directory tree
	Proc  = "proc"  // a process (Name is its PID)
)

// Owner identifies a process: PID and start time (clock ticks since boot),
// so a reused PID is not mistaken for the owner.
type Owner struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// Marker is one owned resource.
type Marker struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Owner Owner  `json:"owner"`
	// ProcStart is the start time of a Proc resource (a reused PID is not
	// killed).
	ProcStart uint64 `json:"procStart,omitempty"`
}

// ErrInterrupted is returned by Track once the process is removing what
// it owns: no new resource may appear behind the cleanup's back.
var ErrInterrupted = errors.New("interrupted: removing what this run created")

var (
	// mu is held shared while a resource is being created (marker written,
	// resource made) and exclusively while this process removes all it owns.
	mu      sync.RWMutex
	closing bool
	sweep   sync.Once
	selfMu  sync.Mutex
	self    Owner
)

// Self is the calling process as an Owner.
func Self() Owner {
	selfMu.Lock()
	defer selfMu.Unlock()
	if self.PID == 0 {
		self = Owner{PID: os.Getpid(), Start: startTime(os.Getpid())}
	}
	return self
}

// Alive reports whether the owner's process still runs (a zombie counts
// as dead).
func (o Owner) Alive() bool {
	st, ok := procStat(o.PID)
	return ok && st.state != "Z" && st.start == o.Start
}

type stat struct {
	state string
	pgid  int
	start uint64
}

// procStat reads /proc/PID/stat: state, process group and start time.
func procStat(pid int) (stat, bool) {
	if pid <= 0 {
		return stat{}, false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, false
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return stat{}, false
	}
	pgid, _ := strconv.Atoi(f[2])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return stat{state: f[0], pgid: pgid, start: start}, true
}

func startTime(pid int) uint64 {
	st, _ := procStat(pid)
	return st.start
}

// ProcessGroup is the process group of pid (0 when it is gone).
func ProcessGroup(pid int) int {
	st, ok := procStat(pid)
	if !ok {
		return 0
	}
	return st.pgid
}

func markerPath(kind, name string) string {
	return filepath.Join(Dir, kind+"-"+url.PathEscape(name))
}

func writeMarker(m Marker) error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("owner markers: %w", err)
	}
	data, _ := json.Marshal(m)
	tmp := markerPath(m.Kind, m.Name) + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("owner marker: %w", err)
	}
	return os.Rename(tmp, markerPath(m.Kind, m.Name))
}

// Track records the calling process as the owner of (kind, name), then
// runs create, which makes the resource. If create fails the record is
// dropped. The first Track of a process sweeps dead owners' leftovers.
func Track(kind, name string, create func() error) error {
	sweep.Do(func() { _, _ = Sweep() })
	mu.RLock()
	defer mu.RUnlock()
	if closing {
		return ErrInterrupted
	}
	if err := writeMarker(Marker{Kind: kind, Name: name, Owner: Self()}); err != nil {
		return err
	}
	if err := create(); err != nil {
		Untrack(kind, name)
		return err
	}
	return nil
}

// Untrack drops the record of a resource its owner has removed.
func Untrack(kind, name string) { _ = os.Remove(markerPath(kind, name)) }

// MkdirTemp is os.MkdirTemp for an owned directory (pattern as there,
// with "*" or a random suffix); RemoveDir removes it.
func MkdirTemp(dir, pattern string) (string, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	for try := 0; ; try++ {
		var b [6]byte
		f, err := os.Open("/dev/urandom")
		if err != nil {
			return "", err
		}
		_, err = f.Read(b[:])
		f.Close()
		if err != nil {
			return "", err
		}
		suffix := fmt.Sprintf("%x", b)
		name := pattern + suffix
		if i := strings.LastIndexByte(pattern, '*'); i >= 0 {
			name = pattern[:i] + suffix + pattern[i+1:]
		}
		path := filepath.Join(dir, name)
		err = Track(Path, path, func() error { return os.Mkdir(path, 0o700) })
		if errors.Is(err, os.ErrExist) && try < 100 {
			continue
		}
		if err != nil {
			return "", err
		}
		return path, nil
	}
}

// RemoveDir removes an owned directory tree and its record.
func RemoveDir(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		Untrack(Path, path)
	}
	return err
}

// Start starts cmd as an owned process; Wait for it with Exited.
func Start(cmd *exec.Cmd) error {
	sweep.Do(func() { _, _ = Sweep() })
	mu.RLock()
	defer mu.RUnlock()
	if closing {
		return ErrInterrupted
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	// Written after the start (the PID is not known before): a crash in
	// between leaves the child to its parent-death signal.
	if err := writeMarker(Marker{Kind: Proc, Name: strconv.Itoa(pid), Owner: Self(), ProcStart: startTime(pid)}); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	return nil
}

// Exited drops the record of an owned process that has been waited for.
func Exited(pid int) { Untrack(Proc, strconv.Itoa(pid)) }

// Markers lists every recorded resource (of every owner).
func Markers() ([]Marker, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Marker
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(Dir, e.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		var m Marker
		if json.Unmarshal(data, &m) != nil || m.Kind == "" {
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// Sweep removes every resource whose owner is dead and returns what it
// removed. Resources of live owners are left alone.
func Sweep() ([]Marker, error) {
	return removeWhere(func(m Marker) bool { return !m.Owner.Alive() })
}

// RemoveOwn removes everything the calling process still owns.
func RemoveOwn() ([]Marker, error) {
	me := Self()
	return removeWhere(func(m Marker) bool { return m.Owner == me })
}

// removeWhere removes the selected resources: processes first, then
// namespaces (with any process still inside), then directories.
func removeWhere(sel func(Marker) bool) ([]Marker, error) {
	ms, err := Markers()
	if err != nil {
		return nil, err
	}
	var done []Marker
	var errs []error
	for _, kind := range []string{Proc, Netns, Path} {
		for _, m := range ms {
			if m.Kind != kind || !sel(m) {
				continue
			}
			if err := remove(m); err != nil {
				errs = append(errs, err)
				continue
			}
			Untrack(m.Kind, m.Name)
			done = append(done, m)
		}
	}
	return done, errors.Join(errs...)
}

func remove(m Marker) error {
	switch m.Kind {
	case Proc:
		pid, err := strconv.Atoi(m.Name)
		if err != nil {
			return nil
		}
		if st, ok := procStat(pid); ok && st.start == m.ProcStart && st.state != "Z" {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGone(pid, m.ProcStart)
		}
		return nil
	case Netns:
		return RemoveNetns(m.Name)
	case Path:
		if err := os.RemoveAll(m.Name); err != nil {
			return fmt.Errorf("remove %s: %w", m.Name, err)
		}
		return nil
	}
	return nil
}

// waitGone waits up to 5 s for a killed process to exit (reaped or zombie).
func waitGone(pid int, start uint64) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		st, ok := procStat(pid)
		if !ok || st.start != start || st.state == "Z" {
			return
		}
	}
}

// RemoveNetns kills every process inside the named namespace, deletes it
// (`ip netns del`: the bind mount under /run/netns and the file) and drops
// its record. A namespace that does not exist is not an error.
func RemoveNetns(name string) error {
	for _, pid := range PIDsInNetns(name) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, startTime(pid))
	}
	cmd := exec.Command("ip", "netns", "del", name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // immune to signals to the run's group
	out, err := cmd.CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	Untrack(Netns, name)
	return nil
}

// PIDsInNetns lists the processes whose network namespace is the named one.
func PIDsInNetns(name string) []int {
	var target syscall.Stat_t
	if syscall.Stat("/run/netns/"+name, &target) != nil {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
			continue
		}
		if st.Dev == target.Dev && st.Ino == target.Ino {
			out = append(out, pid)
		}
	}
	return out
}
