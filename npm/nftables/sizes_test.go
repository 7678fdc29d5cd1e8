//go:build linux

package nftables

import (
	"testing"

	"github.com/open-acn/acn/npm/dataplane/dptest"
)

func TestSizesFollowLiveObjects(t *testing.T) { dptest.RunSizesFollowLiveObjects(t, fresh) }
