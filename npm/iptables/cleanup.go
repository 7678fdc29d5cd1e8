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

// Cleanup implements dataplane.Dataplane: it removes NPM's jump, chains
// and sets from both backends.
func (d *Dataplane) Cleanup(ctx context.Context) error {
	var errs []string
	for _, m := range []Mode{ModeNFT, ModeLegacy} {
		for _, f := range d.families {
			if err := d.removeChains(ctx, m, f); err != nil {
				errs = append(errs, err.Error())
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
		if err := d.removeChains(ctx, other, f); err != nil {
			d.log.Warn("cannot clean the other iptables backend", zap.String("backend", string(other)), zap.Error(err))
		}
	}
}

func (d *Dataplane) removeChains(ctx context.Context, m Mode, f policy.Family) error {
	out, err := d.save(ctx, m, f)
	if err != nil {
		return nil // backend not usable here: nothing of ours in it
	}
	chains, fwd := parseSave(out)
	var b bytes.Buffer
	b.WriteString("*filter\n")
	dels := deleteJumps(fwd)
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
	d.log.Info("removing NPM chains", zap.String("backend", string(m)), zap.String("family", famName(f)), zap.Int("chains", len(names)))
	return d.restore(ctx, m, f, b.Bytes())
}
