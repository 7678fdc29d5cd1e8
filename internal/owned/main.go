//go:build linux

package owned

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Grace is how long Main lets the harness clean up by itself after the
// first interruption before it removes what the process owns and exits.
// A second signal cuts it short.
var Grace = 30 * time.Second

var mainActive bool

// Main runs a harness: it sweeps what dead runs left, then calls run with
// a context that is cancelled when the run is interrupted — SIGINT,
// SIGTERM, SIGHUP, or stdout/stderr closed (a write to them then fails
// instead of killing the process, so cleanup can still log). When run
// returns, or Grace after the interruption, or at a second signal,
// everything the process still owns is removed and the process exits:
// 128+signal when interrupted, 1 if run failed, else 0.
func Main(run func(ctx context.Context) error) {
	mainActive = true
	if removed, err := Sweep(); len(removed) > 0 || err != nil {
		logf("removed %d leftovers of dead runs (%v)", len(removed), err)
	}
	sweep.Do(func() {})
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	var once sync.Once
	var got syscall.Signal
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var force <-chan time.Time
	for {
		select {
		case err := <-done:
			exit(got, err)
		case s := <-sigs:
			sig := s.(syscall.Signal)
			if sig == syscall.SIGPIPE && (got != 0 || !stdioClosed()) {
				// A socket's peer went away (not ours to handle), or the
				// cleanup's own log lines hit the closed stdout.
				continue
			}
			if got != 0 {
				logf("second signal (%v): removing what this run created now", sig)
				exit(got, nil)
			}
			once.Do(func() {
				got = sig
				logf("interrupted (%v): stopping and cleaning up", sig)
				cancel()
				force = time.After(Grace)
			})
		case <-force:
			logf("still running %s after the interruption: removing what this run created now", Grace)
			exit(got, nil)
		}
	}
}

// Exit removes what the process owns and exits with code (for a
// harness's fatal error outside Main's run function's return).
func Exit(code int) {
	mu.Lock()
	closing = true
	_, _ = RemoveOwn()
	mu.Unlock()
	os.Exit(code)
}

// exit removes what the process owns and exits.
func exit(sig syscall.Signal, err error) {
	mu.Lock()
	closing = true
	removed, rerr := RemoveOwn()
	mu.Unlock()
	if len(removed) > 0 || rerr != nil {
		logf("removed %d resources the run left (%v)", len(removed), rerr)
	}
	switch {
	case sig != 0:
		os.Exit(128 + int(sig))
	case err != nil:
		_, _ = fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// CleanupOnSignal makes a test binary remove what it owns when SIGINT,
// SIGTERM or SIGHUP arrives or its stdout/stderr is closed (go test runs
// no cleanup then), and exit with 128+signal. A no-op under Main, which handles signals itself.
func CleanupOnSignal() {
	testSignals.Do(func() {
		if mainActive {
			return
		}
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
		go func() {
			for s := range sigs {
				if s == syscall.SIGPIPE && !stdioClosed() {
					continue // a socket's peer went away
				}
				exit(s.(syscall.Signal), nil)
			}
		}()
	})
}

var testSignals sync.Once

// stdioClosed reports whether the reader of stdout or stderr is gone (a
// pipe whose read end is closed polls as an error).
func stdioClosed() bool {
	fds := []unix.PollFd{{Fd: 1, Events: unix.POLLOUT}, {Fd: 2, Events: unix.POLLOUT}}
	if _, err := unix.Poll(fds, 0); err != nil {
		return false
	}
	for _, f := range fds {
		if f.Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			return true
		}
	}
	return false
}

// logf writes to stderr, ignoring errors (stderr may be closed).
func logf(format string, args ...any) {
	_, _ = fmt.Fprintf(os.Stderr, "owned: "+format+"\n", args...)
}
