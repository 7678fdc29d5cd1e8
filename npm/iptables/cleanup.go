package iptables

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/policy"
)

// Cleanup implements dataplane.Dataplane: it removes NPM's jumps, chains
// and sets from both backends (and from the table earlier versions used).
func (d *Dataplane) Cleanup(ctx context.Context) error {
	var errs []string
	for _, m := range []Mode{ModeNFT, ModeLegacy} {
		for _, f := range d.families {
			for _, table := range []string{Table, LegacyTable} {
				if err := d.removeChains(ctx, m, f, table); err != nil {
					errs = append(errs, err.Error())
				}
			}
		}
	}
	if err := d.sets.Load(ctx); err != nil {
		errs = append(errs, err.Error())
	} else if _, err := d.sets.Destroy(ctx, d.sets.Names()); err != nil {
		errs = append(errs, err.Error())
	}
	d.reset()
	if len(errs) > 0 {
		return fmt.Errorf("cleanup: %s", strings.Join(errs, "; "))
	}
	return nil
}

// cleanupOther removes NPM's leftovers from the backend not in use.
func (d *Dataplane) cleanupOther(ctx context.Context) {
	other := ModeLegacy
	if d.mode == ModeLegacy {
		other = ModeNFT
	}
	for _, f := range d.families {
		for _, table := range []string{Table, LegacyTable} {
			if err := d.removeChains(ctx, other, f, table); err != nil {
				d.log.Warn("cannot clean the other iptables backend", zap.String("backend", string(other)), zap.Error(err))
			}
		}
	}
}

// cleanupLegacyTable removes what an earlier version left in the filter
// table of the backend in use. It runs after this process's first
// transaction is in force, so the node is never without NPM's rules.
func (d *Dataplane) cleanupLegacyTable(ctx context.Context) {
	for _, f := range d.families {
		if err := d.removeChains(ctx, d.mode, f, LegacyTable); err != nil {
			d.log.Warn("cannot remove NPM's chains from the filter table", zap.Error(err))
		}
	}
}

func (d *Dataplane) removeChains(ctx context.Context, m Mode, f policy.Family, table string) error {
	out, err := d.save(ctx, m, f, table)
	if err != nil {
		return nil // backend (or table) not usable here: nothing of ours in it
	}
	chains, builtins := parseSave(out, table)
	var b bytes.Buffer
	b.WriteString("*" + table + "\n")
	var dels []string
	for _, c := range slices.Sorted(maps.Keys(builtins)) {
		dels = append(dels, deleteJumps(builtins[c])...)
	}
	n := len(dels)
	for _, l := range dels {
		b.WriteString(l + "\n")
	}
	names := slices.Sorted(maps.Keys(chains))
	for _, c := range names {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, c := range names {
		b.WriteString("-X " + c + "\n")
		n++
	}
	b.WriteString("COMMIT\n")
	if n == 0 {
		return nil
	}
	d.log.Info("removing NPM chains", zap.String("backend", string(m)), zap.String("family", famName(f)), zap.String("table", table), zap.Int("chains", len(names)))
	return d.restore(ctx, m, f, b.Bytes())
}
