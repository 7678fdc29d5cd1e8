//go:build linux

package iptables

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/open-acn/acn/internal/netnstest"
)

// TestKernelRestoreReturnsAtCommit: a restore that rewrites a chain (its
// old rules deleted: the process's exit waits for their deferred
// destruction) returns at the kernel's commit notification, with the new
// rules in force when it returns; a restore that fails returns its error.
func TestKernelRestoreReturnsAtCommit(t *testing.T) {
	requireTools(t)
	node := netnstest.New(t, "commit")
	w := newCommitWatch(node.Path, 0, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	ctx := context.Background()
	const rewrites = 5
	var took time.Duration
	for i := 0; i < rewrites; i++ {
		rule := fmt.Sprintf("-A ACN-T -s 10.0.0.%d/32 -m comment --comment \"rewrite %d\" -j RETURN", i+1, i)
		script := "*mangle\n:ACN-T - [0:0]\n" + rule + "\n-A ACN-T -d 10.1.0.1/32 -j RETURN\nCOMMIT\n"
		start := time.Now()
		if err := w.run(ctx, []byte(script), "iptables-nft-restore", "-w", "5", "--noflush"); err != nil {
			t.Fatal(err)
		}
		took += time.Since(start)
		got := save(t, node, ModeNFT, "iptables")
		if !strings.Contains(got, fmt.Sprintf("rewrite %d", i)) || (i > 0 && strings.Contains(got, fmt.Sprintf("rewrite %d\"", i-1))) {
			t.Fatalf("after rewrite %d the chain is not the new one:\n%s", i, got)
		}
	}
	// The rewrites' processes wait milliseconds on exit: the commit's
	// notification comes first (unless the machine did not run the
	// reader in all that time, every time).
	if w.acks == 0 || w.off {
		t.Errorf("none of %d rewrites returned at its commit notification (off %v)", rewrites, w.off)
	}
	// For the record (not a check: timings belong to benchmarks): the
	// same rewrite waited for until the process exits.
	start := time.Now()
	for i := 0; i < rewrites; i++ {
		script := fmt.Sprintf("*mangle\n:ACN-T - [0:0]\n-A ACN-T -s 10.2.0.%d/32 -j RETURN\nCOMMIT\n", i+1)
		if _, err := runner(node).Run(ctx, []byte(script), "iptables-nft-restore", "-w", "5", "--noflush"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d of %d rewrites acknowledged at commit; mean %v each, %v waiting for the exit", w.acks, rewrites, took/rewrites, time.Since(start)/rewrites)
	// An agent in a pid namespace of its own sees other pids than the
	// kernel's notifications: the child's command name must do.
	byName := newCommitWatch(node.Path, 0, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	byName.ignorePID = true
	for i := 0; i < rewrites; i++ {
		script := fmt.Sprintf("*mangle\n:ACN-T - [0:0]\n-A ACN-T -s 10.3.0.%d/32 -j RETURN\nCOMMIT\n", i+1)
		if err := byName.run(ctx, []byte(script), "iptables-nft-restore", "-w", "5", "--noflush"); err != nil {
			t.Fatal(err)
		}
	}
	if byName.acks == 0 {
		t.Errorf("matching by command name only, none of %d rewrites returned at its commit notification", rewrites)
	}
	acks := w.acks
	err := w.run(ctx, []byte("*mangle\n-A ACN-MISSING -j RETURN\nCOMMIT\n"), "iptables-nft-restore", "-w", "5", "--noflush")
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("a restore appending to a missing chain returned %v, want its error", err)
	}
	if w.acks != acks {
		t.Error("a failed restore was acknowledged")
	}
}

// TestKernelCommitWatchDrainsStaleNotifications: a notification of an
// earlier child that exited before it was read (same command name) is
// gone before the next restore starts, so it cannot acknowledge a commit
// that has not happened.
func TestKernelCommitWatchDrainsStaleNotifications(t *testing.T) {
	requireTools(t)
	node := netnstest.New(t, "commit")
	w := newCommitWatch(node.Path, 0, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	if err := w.open(); err != nil {
		t.Fatal(err)
	}
	if err := w.openBin("iptables-nft-restore"); err != nil {
		t.Fatal(err)
	}
	if err := w.conn.JoinGroup(nfnlGroupNFTables); err != nil {
		t.Fatal(err)
	}
	// A commit whose notification nobody reads (its restore was waited for
	// until it exited).
	if err := w.wait(context.Background(), nil, []byte("*mangle\n:ACN-S - [0:0]\n-A ACN-S -j RETURN\nCOMMIT\n"), "iptables-nft-restore", "--noflush"); err != nil {
		t.Fatal(err)
	}
	if err := w.conn.LeaveGroup(nfnlGroupNFTables); err != nil {
		t.Fatal(err)
	}
	w.drain()
	_ = w.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if msgs, err := w.conn.Receive(); err == nil {
		t.Errorf("after drain, %d notifications were still queued", len(msgs))
	}
}

// TestKernelRestoreWhateverTheBinarysDescriptor: the restore runs whatever
// the agent's descriptor number for the binary. fork/exec moves its status
// pipe, in the child, to the first number above the child's descriptors
// when the pipe got a lower number (another goroutine freed low numbers
// while this one created its pipes). When the agent's number for the
// binary was that first number above, a child started as
// /proc/self/fd/<agent's number> found the pipe there and failed with
// "permission denied" (seen under the concurrent restores of both
// families). The test makes that happen: the binary right above six free
// numbers (the namespace handles and the child's stdin and output pipes take them), and two lower
// numbers freed while fork/exec waits for syscall.ForkLock, so its status
// pipe takes them. The child now gets the binary as a descriptor of its
// own (3), above which the pipe goes.
func TestKernelRestoreWhateverTheBinarysDescriptor(t *testing.T) {
	requireTools(t)
	node := netnstest.New(t, "commitfd")
	w := newCommitWatch(node.Path, 0, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	ctx := context.Background()
	if err := w.run(ctx, []byte("*mangle\n:ACN-FD - [0:0]\nCOMMIT\n"), "iptables-nft-restore", "-w", "5", "--noflush"); err != nil {
		t.Fatal(err) // the watch's socket is open from now on
	}
	w.bin.Close()
	w.bin = nil
	var fill []*os.File
	open := func() *os.File {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		fill = append(fill, f)
		return f
	}
	closeAll := func() {
		for _, f := range fill {
			f.Close()
		}
		fill = nil
	}
	defer closeAll()
	var low, pipes []*os.File
	// The layout needs contiguous numbers; the runtime and the logger may
	// free one meanwhile: try again.
	for try := 0; ; try++ {
		for i := 0; i < 16; i++ { // every free low number taken
			open()
		}
		low = []*os.File{open(), open()}
		// four for the child's pipes, two for withnetns' handles
		pipes = []*os.File{open(), open(), open(), open(), open(), open()}
		if err := w.openBin("iptables-nft-restore"); err != nil {
			t.Fatal(err)
		}
		if w.bin.Fd() == pipes[5].Fd()+1 {
			break
		}
		if try == 20 {
			t.Fatalf("descriptors not contiguous (%d after %d): the layout cannot be made", w.bin.Fd(), pipes[5].Fd())
		}
		w.bin.Close()
		w.bin = nil
		closeAll()
	}
	for _, f := range pipes {
		f.Close()
	}
	syscall.ForkLock.RLock()
	done := make(chan error, 1)
	go func() {
		done <- w.run(ctx, []byte("*mangle\n:ACN-FD - [0:0]\n-A ACN-FD -s 10.3.0.1/32 -j RETURN\nCOMMIT\n"), "iptables-nft-restore", "-w", "5", "--noflush")
	}()
	time.Sleep(200 * time.Millisecond) // its pipes made, fork/exec waiting for the lock
	for _, f := range low {
		f.Close()
	}
	syscall.ForkLock.RUnlock()
	if err := <-done; err != nil {
		t.Fatalf("binary at descriptor %d: %v", w.bin.Fd(), err)
	}
}
