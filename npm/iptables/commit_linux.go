//go:build linux

package iptables

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/open-acn/acn/npm/dataplane"
)

// commitWatch runs iptables-nft-restore and returns as soon as the kernel
// has committed its transaction, not when the process exits.
//
// Why: a transaction that deletes anything (a rewritten chain's old rules,
// a removed chain) leaves that to nf_tables' deferred destruction, and
// closing a netfilter netlink socket waits for it (an RCU grace period:
// 6–15 ms on a small VM, measured with strace -T on close()). The restore
// process closes its socket on the way out, so a restore that rewrites a
// chain took ~15 ms where one that only adds took ~2 ms. The rules are in
// force once the commit is done, so the wait is nobody's business but the
// process's own.
//
// How: the kernel announces every committed transaction to the
// NFNLGRP_NFTABLES multicast group with a NEWGEN message naming the
// committing process (pid and command name). The watch joins the group (on
// its own socket, kept open: closing it would wait as well) only while one
// of its restores runs, and a NEWGEN naming the child is the
// acknowledgement; the process is reaped in the background. The pid is the
// kernel's (the initial pid namespace's), which is not the one the agent
// sees when its container has a pid namespace of its own (the DaemonSet's
// default), so the child also gets a command name of its own: it is
// started through /proc/self/fd/N, an open descriptor of the tool's binary
// (argv[0] stays iptables-nft-restore, which is what the multi-call binary
// dispatches on), and the kernel names it "N". Without a NEWGEN (lost in a
// full socket buffer) the exit status decides, as it always did. An error
// always comes from the exit status: a failed commit sends no NEWGEN.
type commitWatch struct {
	netns string
	log   *zap.Logger
	conn  *netlink.Conn
	// off: the commits cannot be watched; every restore waits for its
	// exit.
	off bool
	// bin: the tool's binary, open; the child gets it as its descriptor
	// N = 3 + slot (cmd.ExtraFiles), is started as /proc/self/fd/N and
	// named comm ("N") in the kernel's notifications. The descriptor is
	// the child's own, not the agent's number for bin: fork/exec moves its
	// status pipe to the first number above the child's descriptors in the
	// child, which can be the agent's number for bin (exec then failed with
	// "permission denied": it found the pipe). Each family's watch has its
	// own slot, so their concurrent restores have different names.
	binName string
	bin     *os.File
	slot    int
	comm    string
	// ignorePID: match by command name only (tests: the kernel's pids as
	// a pid namespace of the agent's own would show them)
	ignorePID bool
	// acks counts the restores that returned at their commit's
	// notification, before their exit.
	acks int
}

// nfnetlink constants (linux/netfilter/nfnetlink.h, nf_tables.h).
const (
	nfnlGroupNFTables  = 7 // NFNLGRP_NFTABLES
	nfnlSubsysNFTables = 10
	nftMsgNewGen       = 15
	nftaGenProcPID     = 2
	nftaGenProcName    = 3
)

func newCommitWatch(netnsPath string, slot int, log *zap.Logger) *commitWatch {
	return &commitWatch{netns: netnsPath, slot: slot, comm: strconv.Itoa(3 + slot), log: log}
}

func (w *commitWatch) open() error {
	if w.conn != nil {
		return nil
	}
	cfg := &netlink.Config{}
	if w.netns != "" {
		f, err := os.Open(w.netns)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return err
	}
	// A big restore (the first sync) announces every rule; the buffer
	// keeps the NEWGEN at its end from being dropped in most cases.
	_ = c.SetReadBuffer(4 << 20)
	w.conn = c
	return nil
}

// openBin opens the binary of name (once) for the /proc/self/fd start.
func (w *commitWatch) openBin(name string) error {
	if w.bin != nil && w.binName == name {
		return nil
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if w.bin != nil {
		w.bin.Close()
	}
	w.bin, w.binName = f, name
	return nil
}

// run runs name args with stdin and returns once the transaction is
// committed (or the process failed).
func (w *commitWatch) run(ctx context.Context, stdin []byte, name string, args ...string) error {
	if w.off || w.open() != nil {
		return w.wait(ctx, nil, stdin, name, args...)
	}
	if err := w.openBin(name); err != nil {
		return w.wait(ctx, nil, stdin, name, args...)
	}
	// Whatever an earlier restore left unread (it was acknowledged
	// before its notifications were all read) goes first.
	w.drain()
	if err := w.conn.JoinGroup(nfnlGroupNFTables); err != nil {
		w.log.Info("cannot watch nf_tables commits; each iptables-restore is waited for until it exits", zap.Error(err))
		w.off = true
		return w.wait(ctx, nil, stdin, name, args...)
	}
	defer func() {
		_ = w.conn.LeaveGroup(nfnlGroupNFTables)
	}()
	return w.wait(ctx, w.conn, stdin, name, args...)
}

// drain discards queued notifications: a NEWGEN of an earlier child
// that exited before its notification was read must not pass for the next
// one's (they share the command name). Non-blocking reads until the queue
// is empty: a read deadline would not do, an expired one fails before
// reading.
func (w *commitWatch) drain() {
	raw, err := w.conn.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	_ = raw.Read(func(fd uintptr) bool {
		for {
			_, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if err != nil && err != unix.ENOBUFS && err != unix.EINTR {
				return true // EAGAIN: empty
			}
		}
	})
}

// wait starts the process and waits for its commit's NEWGEN on conn (nil:
// for its exit).
func (w *commitWatch) wait(ctx context.Context, conn *netlink.Conn, stdin []byte, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if conn != nil {
		// argv[0] stays name; the kernel names the process w.comm
		cmd.ExtraFiles = make([]*os.File, w.slot+1)
		cmd.ExtraFiles[w.slot] = w.bin
		cmd.Path = "/proc/self/fd/" + w.comm
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &errb, &errb
	if err := dataplane.StartIn(w.netns, cmd); err != nil {
		return fmt.Errorf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	failed := func(err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	if conn == nil {
		return failed(<-exited)
	}
	acked := make(chan bool, 1)
	pid := cmd.Process.Pid
	if w.ignorePID {
		pid = -1
	}
	go func() { acked <- readAck(conn, pid, w.comm) }()
	stopReading := func() bool {
		_ = conn.SetReadDeadline(time.Now())
		a := <-acked
		_ = conn.SetReadDeadline(time.Time{})
		return a
	}
	select {
	case ours := <-acked:
		_ = conn.SetReadDeadline(time.Time{})
		if ours {
			w.acks++
			// Committed; the process may still be closing its socket.
			go func() {
				if err := <-exited; err != nil {
					w.log.Warn("iptables-restore committed its transaction, then failed", zap.Error(failed(err)))
				}
			}()
			return nil
		}
		return failed(<-exited)
	case err := <-exited:
		stopReading()
		return failed(err)
	}
}

// readAck reads notifications until a NEWGEN of the child (its pid or its
// command name comm: true) or an error (the read deadline: false).
func readAck(conn *netlink.Conn, pid int, comm string) bool {
	for {
		msgs, err := conn.Receive()
		if err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) && errno == unix.ENOBUFS {
				continue // notifications were lost; later ones still come
			}
			return false
		}
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(nfnlSubsysNFTables<<8|nftMsgNewGen) || len(m.Data) < 4 {
				continue
			}
			ad, err := netlink.NewAttributeDecoder(m.Data[4:]) // after struct nfgenmsg
			if err != nil {
				continue
			}
			ad.ByteOrder = binary.BigEndian
			var gotPID uint32
			var gotName string
			for ad.Next() {
				switch ad.Type() {
				case nftaGenProcPID:
					gotPID = ad.Uint32()
				case nftaGenProcName:
					gotName = ad.String()
				}
			}
			if int(gotPID) == pid || gotName == comm {
				return true
			}
		}
	}
}
