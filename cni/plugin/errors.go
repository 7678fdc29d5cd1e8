//go:build linux

// Package plugin holds the CNI command handlers of azure-vnet and
// azure-vnet-ipam (ADD, DEL, CHECK, GC, STATUS; VERSION is skel's). The
// handlers orchestrate the other packages: config parses, ipam chooses an
// address, store keeps state, network does the kernel work.
package plugin

import (
	"errors"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/open-acn/acn/cni/cnicmd"
	"github.com/open-acn/acn/cni/network"
)

// Plugin-specific error codes (the spec reserves 100 and up for
// plugins); those of cnicmd, shared with the Windows plugins.
const (
	ErrCheckFailed   = cnicmd.ErrCheckFailed
	ErrAddressSource = cnicmd.ErrAddressSource
	ErrPoolExhausted = cnicmd.ErrPoolExhausted
	ErrAddressTaken  = cnicmd.ErrAddressTaken
	ErrState         = cnicmd.ErrState
)

// Spec codes for STATUS.
const (
	ErrPluginNotAvailable          = cnicmd.ErrPluginNotAvailable
	ErrPluginNotAvailableLimitedIO = cnicmd.ErrPluginNotAvailableLimitedIO
)

// toCNIError maps an error from the other packages to a CNI error with
// the right code (cnicmd.ToError's, plus the pod namespace's).
func toCNIError(err error, azureSource bool) *types.Error {
	if err == nil {
		return nil
	}
	if cerr, ok := cnicmd.ToError(err, azureSource); ok {
		return cerr
	}
	var ne *network.NetnsError
	if errors.As(err, &ne) {
		return types.NewError(types.ErrInvalidNetNS, err.Error(), "")
	}
	return types.NewError(types.ErrInternal, err.Error(), "")
}
