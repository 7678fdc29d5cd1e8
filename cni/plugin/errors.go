//go:build linux

// Package plugin holds the CNI command handlers of azure-vnet and
// azure-vnet-ipam (ADD, DEL, CHECK, GC, STATUS; VERSION is skel's). The
// handlers orchestrate the other packages: config parses, ipam chooses an
// address, store keeps state, network does the kernel work.
package plugin

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/network"
	"github.com/open-acn/acn/cni/store"
)

// Plugin-specific error codes (the spec reserves 100 and up for plugins).
const (
	// ErrCheckFailed: CHECK found the kernel differs from prevResult.
	ErrCheckFailed uint = 100
	// ErrAddressSource: the interfaces file is missing or unreadable.
	ErrAddressSource uint = 101
	// ErrPoolExhausted: no free address left in the pool.
	ErrPoolExhausted uint = 102
	// ErrAddressTaken: ipam.ipAddress is held by another container.
	ErrAddressTaken uint = 103
	// ErrState: a state file could not be written.
	ErrState uint = 104
)

// Spec codes for STATUS.
const (
	ErrPluginNotAvailable          uint = 50
	ErrPluginNotAvailableLimitedIO uint = 51
)

// toCNIError maps an error from the other packages to a CNI error with
// the right code. Codes are chosen so that 11 (try again) appears only
// when a retry can succeed without anyone changing anything.
func toCNIError(err error, azureSource bool) *types.Error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	var ex *ipam.ExhaustedError
	var se *ipam.SourceError
	var ne *network.NetnsError
	switch {
	case errors.Is(err, store.ErrLockTimeout):
		return types.NewError(types.ErrTryAgainLater, err.Error(), "")
	case errors.As(err, &ex):
		return types.NewError(ErrPoolExhausted, err.Error(), "")
	case errors.Is(err, ipam.ErrRequestedTaken):
		return types.NewError(ErrAddressTaken, err.Error(), "")
	case errors.As(err, &se):
		if azureSource {
			// The host endpoint failing is usually transient.
			return types.NewError(types.ErrTryAgainLater, err.Error(), "")
		}
		return types.NewError(ErrAddressSource, err.Error(), "")
	case errors.As(err, &ne):
		return types.NewError(types.ErrInvalidNetNS, err.Error(), "")
	}
	return types.NewError(types.ErrInternal, err.Error(), "")
}

// stateError wraps a failure to persist state.
func stateError(path string, err error) error {
	return types.NewError(ErrState, fmt.Sprintf("write state %s: %v", path, err), "")
}
