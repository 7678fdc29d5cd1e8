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
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/open-acn/acn/internal/withnetns"
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
// committing process's pid. The watch joins the group (on its own socket,
// kept open: closing it would wait as well) only while one of its restores
// runs, and a NEWGEN naming the child's pid is the acknowledgement; the
// process is reaped in the background. Without one (the notification lost
// in a full socket buffer, a pid namespace of the agent's own, where the
// kernel's pid is not the child's) the exit status decides, as it always
// did. An error always comes from the exit status: a failed commit sends no
// NEWGEN.
type commitWatch struct {
	netns string
	log   *zap.Logger
	conn  *netlink.Conn
	// off: acknowledgements never match (the agent's pids are not the
	// kernel's); every restore waits for its exit.
	off bool
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

func newCommitWatch(netnsPath string, log *zap.Logger) *commitWatch {
	return &commitWatch{netns: netnsPath, log: log}
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

// run runs name args with stdin and returns once the transaction is
// committed (or the process failed).
func (w *commitWatch) run(ctx context.Context, stdin []byte, name string, args ...string) error {
	if w.off || w.open() != nil {
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

// drain discards queued notifications.
func (w *commitWatch) drain() {
	_ = w.conn.SetReadDeadline(time.Now())
	for {
		if _, err := w.conn.Receive(); err != nil {
			break
		}
	}
	_ = w.conn.SetReadDeadline(time.Time{})
}

// wait starts the process and waits for its commit's NEWGEN on conn (nil:
// for its exit).
func (w *commitWatch) wait(ctx context.Context, conn *netlink.Conn, stdin []byte, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &errb, &errb
	var err error
	if w.netns == "" {
		err = cmd.Start()
	} else {
		err = withnetns.Do(w.netns, cmd.Start)
	}
	if err != nil {
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
	acked := make(chan commitAck, 1)
	go func() { acked <- readAck(conn, cmd.Process.Pid, name) }()
	stopReading := func() commitAck {
		_ = conn.SetReadDeadline(time.Now())
		a := <-acked
		_ = conn.SetReadDeadline(time.Time{})
		return a
	}
	select {
	case a := <-acked:
		_ = conn.SetReadDeadline(time.Time{})
		if a.ours {
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
		a := stopReading()
		if err == nil && !a.ours && a.others {
			// It committed (exit 0), a NEWGEN of a restore came, but not
			// with its pid: the kernel's pids are not ours.
			w.log.Info("nf_tables commit notifications do not name this process's children (a pid namespace of its own?); each iptables-restore is waited for until it exits")
			w.off = true
		}
		return failed(err)
	}
}

// commitAck is what readAck saw: a NEWGEN of the child (ours), of another
// process of the same command name (others).
type commitAck struct{ ours, others bool }

// readAck reads notifications until a NEWGEN of pid or an error (the read
// deadline).
func readAck(conn *netlink.Conn, pid int, name string) (a commitAck) {
	comm := name
	if len(comm) > 15 {
		comm = comm[:15] // TASK_COMM_LEN - 1
	}
	for {
		msgs, err := conn.Receive()
		if err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) && errno == unix.ENOBUFS {
				continue // notifications were lost; later ones still come
			}
			return a
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
			if int(gotPID) == pid {
				a.ours = true
				return a
			}
			if gotName == comm {
				a.others = true
			}
		}
	}
}
