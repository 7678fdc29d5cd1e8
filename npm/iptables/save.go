package iptables

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/open-acn/acn/npm/ipset"
	"github.com/open-acn/acn/npm/policy"
)

// parseSave parses iptables-save output of one table: NPM's chains (their
// rules as iptables-save prints them) and the rules of the built-in chains
// NPM jumps from (hooks).
func parseSave(out []byte, table string) (chains map[string][]string, builtins map[string][]string) {
	chains, builtins = map[string][]string{}, map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	inTable := false
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "*"):
			inTable = l == "*"+table
		case !inTable:
		case strings.HasPrefix(l, ":"+ChainPrefix):
			name := strings.Fields(l[1:])[0]
			if _, ok := chains[name]; !ok {
				chains[name] = nil
			}
		case strings.HasPrefix(l, "-A "):
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			if strings.HasPrefix(f[1], ChainPrefix) {
				chains[f[1]] = append(chains[f[1]], l)
			} else if isBuiltin(f[1]) {
				builtins[f[1]] = append(builtins[f[1]], l)
			}
		}
	}
	return chains, builtins
}

func isBuiltin(c string) bool {
	switch c {
	case "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING":
		return true
	}
	return false
}

// jumpRule is NPM's rule in a built-in chain as iptables-save prints it.
func jumpRule(h hook) string {
	return fmt.Sprintf("-A %s -m comment --comment %q -j %s", h.builtin, JumpComment, h.target)
}

// isNPMJump: a rule of a built-in chain jumping to one of NPM's chains.
func isNPMJump(l string) bool {
	i := strings.LastIndex(l, " -j ")
	return i >= 0 && strings.HasPrefix(l[i+len(" -j "):], ChainPrefix)
}

// jumpPlaced: the hook's chain has exactly one NPM jump, its own, and it is
// the first rule. In mangle nothing of kube-proxy's precedes it; first
// place also keeps any other agent's ACCEPT in mangle from coming before it.
func jumpPlaced(h hook, rules []string) bool {
	n := 0
	for _, l := range rules {
		if isNPMJump(l) {
			n++
		}
	}
	return n == 1 && len(rules) > 0 && norm(rules[0]) == norm(jumpRule(h))
}

// deleteJumps returns the restore lines deleting NPM's jumps among the
// rules of built-in chains.
func deleteJumps(rules []string) []string {
	var out []string
	for _, l := range rules {
		if isNPMJump(l) {
			out = append(out, "-D"+strings.TrimPrefix(l, "-A"))
		}
	}
	return out
}

// reading is a read-back of the kernel (both tools): what load installs
// as the "programmed" state.
type reading struct {
	sets  map[string]*ipset.Set
	saves map[policy.Family][]byte // iptables-save of Table per family
}

// read reads the kernel back; it changes nothing of d, so it may run
// while Apply does (ReadKernel).
func (d *Dataplane) read(ctx context.Context) (*reading, error) {
	sets, err := d.sets.Read(ctx)
	if err != nil {
		return nil, err
	}
	r := &reading{sets: sets, saves: map[policy.Family][]byte{}}
	for _, f := range d.families {
		out, err := d.save(ctx, d.mode, f, Table)
		if err != nil {
			return nil, err
		}
		r.saves[f] = out
	}
	return r, nil
}

// load reads the kernel state (both tools) into the "programmed" maps.
func (d *Dataplane) load(ctx context.Context) error {
	r, err := d.read(ctx)
	if err != nil {
		return err
	}
	d.install(r)
	return nil
}

// install makes a reading the "programmed" state.
func (d *Dataplane) install(r *reading) {
	d.chainsDirty = true
	d.sets.Install(r.sets)
	for _, f := range d.families {
		chains, builtins := parseSave(r.saves[f], Table)
		d.chains[f] = chains
		d.jumpFix[f] = nil
		for _, h := range hooks {
			if !jumpPlaced(h, builtins[h.builtin]) {
				// Remove any misplaced copies, then insert first.
				d.jumpFix[f] = append(d.jumpFix[f], deleteJumps(builtins[h.builtin])...)
				d.jumpFix[f] = append(d.jumpFix[f], "-I "+h.builtin+" 1"+strings.TrimPrefix(jumpRule(h), "-A "+h.builtin))
			}
		}
	}
}

func (d *Dataplane) save(ctx context.Context, m Mode, f policy.Family, table string) ([]byte, error) {
	return d.run.Run(ctx, nil, tool(m, f, "save"), "-t", table)
}
