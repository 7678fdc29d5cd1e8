// Package ipset manages the kernel ipsets of NPM: every batch of
// creations and member changes is one list of commands (ops.go), written
// over netlink when it is small (a pod event's few members: no process at
// all) and as one `ipset restore` when it is large (a full sync); sets
// whose members change wholesale are filled under a temporary name and
// swapped in (`swap`), never flushed and refilled; sets no longer
// referenced are destroyed in a separate, later step (after the iptables
// rules that referenced them are gone).
//
// The manager remembers what it programmed; Load reads the kernel's state
// back (`ipset save`) so the next Sync repairs any drift and replaces a
// previous run's sets without a flush.
package ipset

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/dataplane"
)

// Set types.
const (
	HashIP     = "hash:ip"
	HashNet    = "hash:net"
	HashIPPort = "hash:ip,port"
)

// MaxElem is the maxelem of every set (pods or prefixes per selector).
const MaxElem = 1 << 20

// swapThreshold: a set whose diff touches more than this fraction of its
// new size (and at least swapMin members) is rebuilt and swapped.
const (
	swapMin      = 64
	swapFraction = 0.5
)

// Set is the desired (or programmed) content of one kernel set.
type Set struct {
	Name    string
	Type    string
	Family  string // "inet" or "inet6"
	Comment string // readable origin, logged with every change
	Members map[string]struct{}
	// Rank orders member changes across the sets of one Sync: additions go
	// to higher ranks first, deletions to lower ranks first (a dispatch
	// structure is filled leaves-first and emptied root-first, so no
	// intermediate state skips a pod). Sets with Rank > 0 are never
	// swapped. 0 for ordinary sets.
	Rank int
}

// Manager owns every kernel set whose name starts with Prefix.
type Manager struct {
	Prefix string
	run    dataplane.Runner
	w      Writer // nil: every batch is an `ipset restore`
	log    *zap.Logger
	cur    map[string]*Set
}

// New returns a manager of the sets named Prefix*.
func New(run dataplane.Runner, log *zap.Logger, prefix string) *Manager {
	if log == nil {
		log = zap.NewNop()
	}
	return &Manager{Prefix: prefix, run: run, w: writerFor(run), log: log, cur: map[string]*Set{}}
}

// Current returns the programmed set (nil if none); do not modify it.
func (m *Manager) Current(name string) *Set { return m.cur[name] }

// Names returns the names of the programmed sets, sorted.
func (m *Manager) Names() []string { return slices.Sorted(maps.Keys(m.cur)) }

// Load replaces the manager's idea of the kernel with `ipset save` output.
func (m *Manager) Load(ctx context.Context) error {
	cur, err := m.Read(ctx)
	if cur != nil {
		m.Install(cur) // what could be parsed, even on an error
	}
	return err
}

// Read reads the managed sets from the kernel (`ipset save`) without
// changing the manager: it may run while another goroutine syncs.
func (m *Manager) Read(ctx context.Context) (map[string]*Set, error) {
	out, err := m.run.Run(ctx, nil, "ipset", "save")
	if err != nil {
		return nil, err
	}
	return ParseSave(out, m.Prefix)
}

// Install makes a Read the manager's idea of the kernel (Load is Read and
// Install). The sets are the manager's afterwards.
func (m *Manager) Install(cur map[string]*Set) {
	for n, s := range cur {
		if old := m.cur[n]; old != nil {
			s.Comment = old.Comment
		}
	}
	m.cur = cur
}

// ParseSave reads `ipset save` output: the sets named prefix* with their
// type, family and members.
func ParseSave(out []byte, prefix string) (map[string]*Set, error) {
	cur := map[string]*Set{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || !strings.HasPrefix(f[1], prefix) {
			continue
		}
		switch f[0] {
		case "create":
			s := &Set{Name: f[1], Type: f[2], Family: "inet", Members: map[string]struct{}{}}
			for i := 3; i+1 < len(f); i++ {
				if f[i] == "family" {
					s.Family = f[i+1]
				}
			}
			cur[f[1]] = s
		case "add":
			if s := cur[f[1]]; s != nil {
				s.Members[f[2]] = struct{}{}
			}
		}
	}
	return cur, sc.Err()
}

// Result reports what a Sync did.
type Result struct {
	Created, Swapped, Added, Deleted int
	Changed                          int // sets created, swapped or with member changes
	Unreferenced                     []string
}

// Sync makes the kernel sets equal to desired in one batch of commands.
// Only the sets named in dirty are compared (nil: all). Managed sets that
// are not desired are returned in Unreferenced for a later Destroy (after
// the rules referencing them are gone); they are not touched now.
func (m *Manager) Sync(ctx context.Context, desired map[string]*Set, dirty map[string]struct{}) (Result, error) {
	return m.SyncOpts(ctx, desired, SyncOptions{Dirty: dirty})
}

// SyncOptions narrow a Sync.
type SyncOptions struct {
	// Dirty: only these names are compared (nil: all desired sets).
	Dirty map[string]struct{}
	// Hints: hints[name], when non-nil, lists every member of that
	// (existing) set that may differ from what was programmed, so only
	// those are compared: O(changes) instead of O(size). A set without
	// hints is compared in full.
	Hints map[string]map[string]struct{}
	// CreateOnly: these sets are created empty when missing and otherwise
	// left alone (their members are synced by a later call).
	CreateOnly map[string]bool
}

// SyncOpts is Sync with options.
func (m *Manager) SyncOpts(ctx context.Context, desired map[string]*Set, o SyncOptions) (Result, error) {
	dirty, hints := o.Dirty, o.Hints
	var res Result
	var ops []Op
	type memberOp struct {
		rank int
		op   Op
	}
	var adds, dels []memberOp
	type pending struct {
		set      *Set
		swapped  bool
		add, del []string // member changes of an existing set (applied in place)
	}
	var commit []pending
	names := make([]string, 0, len(desired))
	if dirty == nil {
		for n := range desired {
			names = append(names, n)
		}
	} else {
		for n := range dirty {
			if _, ok := desired[n]; ok {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	for _, n := range names {
		want := desired[n]
		have := m.cur[n]
		if have != nil && (have.Type != want.Type || have.Family != want.Family) {
			return res, fmt.Errorf("ipset %s exists as %s/%s, want %s/%s (name collision?)", n, have.Type, have.Family, want.Type, want.Family)
		}
		if have == nil {
			ops = append(ops, Op{Cmd: OpCreate, Set: n, Type: want.Type, Family: want.Family})
			m.log.Info("ipset created", zap.String("set", n), zap.String("type", want.Type), zap.String("family", want.Family), zap.String("selector", want.Comment))
			res.Created++
			res.Changed++
			if o.CreateOnly[n] {
				empty := *want
				empty.Members = map[string]struct{}{}
				commit = append(commit, pending{set: &empty})
				continue
			}
			for _, mem := range slices.Sorted(maps.Keys(want.Members)) {
				adds = append(adds, memberOp{want.Rank, Op{Cmd: OpAdd, Set: n, Member: mem}})
				m.log.Info("ipset member added", zap.String("set", n), zap.String("member", mem), zap.String("selector", want.Comment))
			}
			res.Added += len(want.Members)
			commit = append(commit, pending{set: want})
			continue
		}
		if o.CreateOnly[n] {
			continue
		}
		add, del := dataplane.DiffKeys(want.Members, have.Members, hints[n])
		if len(add) == 0 && len(del) == 0 {
			continue
		}
		sort.Strings(add)
		sort.Strings(del)
		res.Changed++
		res.Added += len(add)
		res.Deleted += len(del)
		for _, mem := range add {
			m.log.Info("ipset member added", zap.String("set", n), zap.String("member", mem), zap.String("selector", want.Comment))
		}
		for _, mem := range del {
			m.log.Info("ipset member removed", zap.String("set", n), zap.String("member", mem), zap.String("selector", want.Comment))
		}
		if n := len(add) + len(del); want.Rank == 0 && n >= swapMin && float64(n) > swapFraction*float64(len(want.Members)) {
			// Wholesale change: fill a temporary set and swap it in, so the
			// set is never seen half-updated or empty.
			tmp := tmpName(want.Name)
			ops = append(ops, Op{Cmd: OpCreate, Set: tmp, Type: want.Type, Family: want.Family}, Op{Cmd: OpFlush, Set: tmp})
			for _, mem := range slices.Sorted(maps.Keys(want.Members)) {
				ops = append(ops, Op{Cmd: OpAdd, Set: tmp, Member: mem})
			}
			ops = append(ops, Op{Cmd: OpSwap, Set: tmp, Other: want.Name}, Op{Cmd: OpDestroy, Set: tmp})
			m.log.Info("ipset swapped", zap.String("set", want.Name), zap.Int("members", len(want.Members)), zap.String("selector", want.Comment))
			res.Swapped++
			commit = append(commit, pending{set: want, swapped: true, add: add, del: del})
			continue
		}
		// Additions first: a member moving between sets is never in neither.
		for _, mem := range add {
			adds = append(adds, memberOp{want.Rank, Op{Cmd: OpAdd, Set: want.Name, Member: mem}})
		}
		for _, mem := range del {
			dels = append(dels, memberOp{want.Rank, Op{Cmd: OpDel, Set: want.Name, Member: mem}})
		}
		commit = append(commit, pending{set: want, add: add, del: del})
	}
	// All additions (higher ranks first), then all deletions (lower ranks
	// first); stable within a rank.
	sort.SliceStable(adds, func(i, j int) bool { return adds[i].rank > adds[j].rank })
	sort.SliceStable(dels, func(i, j int) bool { return dels[i].rank < dels[j].rank })
	for _, op := range adds {
		ops = append(ops, op.op)
	}
	for _, op := range dels {
		ops = append(ops, op.op)
	}
	for n := range m.cur {
		if _, ok := desired[n]; !ok {
			res.Unreferenced = append(res.Unreferenced, n)
		}
	}
	sort.Strings(res.Unreferenced)
	if err := m.write(ctx, ops); err != nil {
		// Part of the batch may have been applied: forget what we
		// believe so the next Sync re-reads the kernel.
		_ = m.Load(ctx)
		return res, err
	}
	for _, p := range commit {
		have := m.cur[p.set.Name]
		if have == nil {
			m.cur[p.set.Name] = cloneSet(p.set)
			continue
		}
		for _, mem := range p.add {
			have.Members[mem] = struct{}{}
		}
		for _, mem := range p.del {
			delete(have.Members, mem)
		}
		have.Comment = p.set.Comment
	}
	return res, nil
}

// Destroy removes managed sets (they must no longer be referenced by any
// rule) and returns how many it destroyed. Sets still referenced by a rule
// are kept (a later call destroys them); other failures are reported.
func (m *Manager) Destroy(ctx context.Context, names []string) (int, error) {
	if len(names) == 0 {
		return 0, nil
	}
	ops := make([]Op, len(names))
	for i, n := range names {
		ops[i] = Op{Cmd: OpDestroy, Set: n}
	}
	if err := m.write(ctx, ops); err == nil {
		for _, n := range names {
			m.log.Info("ipset destroyed", zap.String("set", n), zap.String("selector", m.comment(n)))
			delete(m.cur, n)
		}
		return len(names), nil
	}
	// One by one, to destroy what can be.
	var errs []string
	done := 0
	for _, n := range names {
		if err := m.write(ctx, []Op{{Cmd: OpDestroy, Set: n}}); err != nil {
			switch {
			case isNotExist(err):
				delete(m.cur, n)
			case isInUse(err):
				m.log.Debug("ipset still referenced; destroyed later", zap.String("set", n))
			default:
				errs = append(errs, err.Error())
			}
			continue
		}
		m.log.Info("ipset destroyed", zap.String("set", n), zap.String("selector", m.comment(n)))
		delete(m.cur, n)
		done++
	}
	if len(errs) > 0 {
		return done, fmt.Errorf("ipset destroy: %s", strings.Join(errs, "; "))
	}
	return done, nil
}

func (m *Manager) comment(n string) string {
	if s := m.cur[n]; s != nil {
		return s.Comment
	}
	return ""
}

func tmpName(n string) string {
	if len(n) > 29 {
		n = n[:29]
	}
	return n + "-t"
}

func cloneSet(s *Set) *Set {
	c := *s
	c.Members = make(map[string]struct{}, len(s.Members))
	for k := range s.Members {
		c.Members[k] = struct{}{}
	}
	return &c
}

// Len is the number of sets the manager holds as programmed.
func (m *Manager) Len() int { return len(m.cur) }
