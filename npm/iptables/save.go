package iptables

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/open-acn/acn/npm/policy"
)

// parseSave parses iptables-save output: NPM's chains (their rules as
// iptables-save prints them) and the rules of FORWARD, in the filter table.
func parseSave(out []byte) (chains map[string][]string, forward []string) {
	chains = map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	inFilter := false
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "*"):
			inFilter = l == "*filter"
		case !inFilter:
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
			} else if f[1] == "FORWARD" {
				forward = append(forward, l)
			}
		}
	}
	return chains, forward
}

// jumpRule is NPM's rule in FORWARD as iptables-save prints it.
func jumpRule() string {
	return fmt.Sprintf("-A FORWARD -m comment --comment %q -j %s", JumpComment, ChainMain)
}

// jumpPlaced: exactly one NPM jump, before any kube-proxy KUBE-FORWARD jump.
func jumpPlaced(forward []string) bool {
	pos, n, kube := -1, 0, -1
	for i, l := range forward {
		if strings.HasSuffix(l, "-j "+ChainMain) {
			n++
			pos = i
		}
		if kube < 0 && strings.Contains(l, "-j KUBE-") {
			kube = i
		}
	}
	return n == 1 && (kube < 0 || pos < kube)
}

// deleteJumps returns the restore lines deleting NPM's jumps among the
// FORWARD rules.
func deleteJumps(forward []string) []string {
	var out []string
	for _, l := range forward {
		if strings.HasSuffix(l, "-j "+ChainMain) {
			out = append(out, "-D"+strings.TrimPrefix(l, "-A"))
		}
	}
	return out
}

// load reads the kernel state (both tools) into the "programmed" maps.
func (d *Dataplane) load(ctx context.Context) error {
	if err := d.sets.Load(ctx); err != nil {
		return err
	}
	for _, f := range d.families {
		out, err := d.save(ctx, d.mode, f)
		if err != nil {
			return err
		}
		chains, fwd := parseSave(out)
		d.chains[f] = chains
		d.jumpFix[f] = nil
		if !jumpPlaced(fwd) {
			// Remove any misplaced copies, then insert first in FORWARD.
			d.jumpFix[f] = append(deleteJumps(fwd), "-I FORWARD 1"+strings.TrimPrefix(jumpRule(), "-A FORWARD"))
		}
	}
	return nil
}

func (d *Dataplane) save(ctx context.Context, m Mode, f policy.Family) ([]byte, error) {
	return d.run.Run(ctx, nil, tool(m, f, "save"), "-t", "filter")
}
