//go:build linux

package withnetns_test

import (
	"testing"

	"github.com/vishvananda/netns"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/withnetns"
)

// TestDoSwitchesAndReturns: f runs in the target namespace, and the
// calling thread is back in its own afterwards, also when f fails.
func TestDoSwitchesAndReturns(t *testing.T) {
	ns := netnstest.New(t, "withns")
	self, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := netns.GetFromPath(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	for _, fail := range []bool{false, true} {
		var inside bool
		err := withnetns.Do(ns.Path, func() error {
			cur, err := netns.Get()
			if err != nil {
				return err
			}
			defer cur.Close()
			inside = cur.Equal(target) && !cur.Equal(self)
			if fail {
				return errFail
			}
			return nil
		})
		if fail != (err == errFail) {
			t.Fatalf("fail=%v: err = %v", fail, err)
		}
		if !inside {
			t.Fatalf("fail=%v: f did not run in the target namespace", fail)
		}
		after, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		if !after.Equal(self) {
			t.Fatalf("fail=%v: the thread stayed in another namespace", fail)
		}
		after.Close()
	}
	if err := withnetns.Do("/run/netns/acn-does-not-exist", func() error { return nil }); err == nil {
		t.Fatal("Do into a missing namespace: no error")
	}
}

type failErr struct{}

func (failErr) Error() string { return "f failed" }

var errFail error = failErr{}
