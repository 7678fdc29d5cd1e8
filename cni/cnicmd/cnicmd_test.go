package cnicmd

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/store"
)

func TestToError(t *testing.T) {
	own := types.NewError(types.ErrInvalidNetworkConfig, "bad", "")
	src := &ipam.SourceError{Err: errors.New("unreachable")}
	cases := []struct {
		name   string
		err    error
		remote bool
		want   uint
		ok     bool
	}{
		{"CNI error kept", fmt.Errorf("wrapped: %w", own), false, types.ErrInvalidNetworkConfig, true},
		{"lock timeout", fmt.Errorf("x: %w", store.ErrLockTimeout), false, types.ErrTryAgainLater, true},
		{"exhausted", &ipam.ExhaustedError{Pool: "10.0.0.0/30", Total: 2}, false, ErrPoolExhausted, true},
		{"requested taken", ipam.ErrRequestedTaken, false, ErrAddressTaken, true},
		{"file source", src, false, ErrAddressSource, true},
		{"Azure host source", src, true, types.ErrTryAgainLater, true},
		{"other", errors.New("boom"), false, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := ToError(c.err, c.remote)
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v (%v)", ok, c.ok, got)
			}
			if ok && got.Code != c.want {
				t.Errorf("code %d, want %d", got.Code, c.want)
			}
		})
	}
}

func TestK8sArgs(t *testing.T) {
	cases := []struct{ in, ns, name string }{
		{"IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-1", "kube-system", "coredns-1"},
		{"K8S_POD_NAME=a;junk;K8S_POD_NAMESPACE=b", "b", "a"},
		{"", "", ""},
	}
	for _, c := range cases {
		ns, name := K8sArgs(c.in)
		if ns != c.ns || name != c.name {
			t.Errorf("K8sArgs(%q) = %q, %q; want %q, %q", c.in, ns, name, c.ns, c.name)
		}
	}
}

func TestPrintConvertsVersion(t *testing.T) {
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	var b bytes.Buffer
	if err := Print(&b, res, "0.3.1"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"cniVersion": "0.3.1"`) {
		t.Errorf("printed %s, want version 0.3.1", b.String())
	}
	err := PrintStored(&b, []byte(`{"cniVersion":"1.0.0"}`), "9.9.9")
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrIncompatibleCNIVersion {
		t.Errorf("unknown version: %v, want code %d", err, types.ErrIncompatibleCNIVersion)
	}
}

func TestStateError(t *testing.T) {
	var te *types.Error
	err := StateError("/run/x.json", errors.New("disk full"))
	if !errors.As(err, &te) || te.Code != ErrState || !strings.Contains(te.Msg, "/run/x.json") {
		t.Errorf("got %v", err)
	}
}
