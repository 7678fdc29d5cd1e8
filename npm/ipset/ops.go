package ipset

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/open-acn/acn/npm/dataplane"
)

// Op is one ipset command: a line of `ipset restore`, or one netlink
// request. A Sync is a list of Ops, written one way or the other.
type Op struct {
	Cmd    string // OpCreate, OpAdd, OpDel, OpFlush, OpSwap, OpDestroy
	Set    string
	Type   string // OpCreate
	Family string // OpCreate: "inet" or "inet6"
	Member string // OpAdd, OpDel: as `ipset save` prints it
	Other  string // OpSwap: the set swapped with Set
}

// Commands of an Op.
const (
	OpCreate  = "create"
	OpAdd     = "add"
	OpDel     = "del"
	OpFlush   = "flush"
	OpSwap    = "swap"
	OpDestroy = "destroy"
)

// Line is the op as a line of `ipset restore` (creations, additions and
// deletions with -exist, as the netlink writer does them).
func (o Op) Line() string {
	switch o.Cmd {
	case OpCreate:
		return fmt.Sprintf("create %s %s family %s maxelem %d -exist", o.Set, o.Type, o.Family, MaxElem)
	case OpAdd, OpDel:
		return fmt.Sprintf("%s %s %s -exist", o.Cmd, o.Set, o.Member)
	case OpSwap:
		return fmt.Sprintf("swap %s %s", o.Set, o.Other)
	default:
		return o.Cmd + " " + o.Set
	}
}

// Writer applies ipset commands without starting a process (netlink,
// ipset's own protocol), in order, stopping at the first error, as
// `ipset restore` does. A Runner that stands for a kernel may implement it
// (the test fakes do); for dataplane.Exec the manager uses netlink.
type Writer interface {
	WriteIPSet(ctx context.Context, ops []Op) error
}

// ErrUnsupported: the writer cannot express an op (nothing was written);
// the manager writes the batch with `ipset restore` instead.
var ErrUnsupported = errors.New("not expressible over netlink")

// Errors of a destroy, as the kernel reports them.
var (
	ErrNotExist = errors.New("the set does not exist")
	ErrInUse    = errors.New("the set is in use by a kernel component")
)

// netlinkMaxOps is the largest batch written over netlink. A request is
// acknowledged before the next is sent (~10-30 µs each), while `ipset
// restore` costs a process start (milliseconds) and then batches: a pod
// event's handful of member changes is far cheaper over netlink, a full
// sync of thousands of members is cheaper as one restore.
const netlinkMaxOps = 256

// writerFor is the netlink writer for a Runner: the Runner itself when it
// models one, netlink in the Runner's namespace for the real kernel
// (dataplane.Exec), none otherwise.
func writerFor(run dataplane.Runner) Writer {
	switch r := run.(type) {
	case Writer:
		return r
	case dataplane.Exec:
		return newNetlinkWriter(r.Netns)
	}
	return nil
}

// write applies ops: over netlink when a writer is available and the
// batch is small, else as one `ipset restore`. what names the step in
// errors.
func (m *Manager) write(ctx context.Context, ops []Op) error {
	if len(ops) == 0 {
		return nil
	}
	if m.w != nil && len(ops) <= netlinkMaxOps {
		err := m.w.WriteIPSet(ctx, ops)
		if !errors.Is(err, ErrUnsupported) {
			return err
		}
	}
	var b strings.Builder
	for _, o := range ops {
		b.WriteString(o.Line())
		b.WriteByte('\n')
	}
	_, err := m.run.Run(ctx, []byte(b.String()), "ipset", "restore")
	return err
}

func isNotExist(err error) bool {
	return errors.Is(err, ErrNotExist) || strings.Contains(err.Error(), "does not exist")
}

func isInUse(err error) bool {
	return errors.Is(err, ErrInUse) || strings.Contains(err.Error(), "in use")
}
