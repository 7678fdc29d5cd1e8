//go:build linux

package iptables

import (
	"testing"

	"github.com/open-acn/acn/npm/dataplane/dptest"
)

func TestSizesFollowLiveObjects(t *testing.T) { dptest.RunSizesFollowLiveObjects(t, fresh) }
