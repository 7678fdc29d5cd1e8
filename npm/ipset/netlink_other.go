//go:build !linux

package ipset

import "context"

// netlinkWriter: ipsets are Linux's; elsewhere every write is a restore.
type netlinkWriter struct{}

func newNetlinkWriter(string) *netlinkWriter { return &netlinkWriter{} }

func (*netlinkWriter) WriteIPSet(context.Context, []Op) error { return ErrUnsupported }
