//go:build !linux

package iptables

import (
	"context"

	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/dataplane"
)

// commitWatch: nf_tables exists on Linux only; elsewhere a restore is
// waited for until it exits.
type commitWatch struct{ netns string }

func newCommitWatch(netnsPath string, _ int, _ *zap.Logger) *commitWatch {
	return &commitWatch{netns: netnsPath}
}

func (w *commitWatch) run(ctx context.Context, stdin []byte, name string, args ...string) error {
	_, err := dataplane.Exec{Netns: w.netns}.Run(ctx, stdin, name, args...)
	return err
}
