// Package cnicmd holds what the command handlers of the Linux plugins
// (cni/plugin) and the Windows ones (cni/winplugin) share and that has no
// platform in it: the invocation (arguments, configuration, log line,
// fault hook, printing a result in the configuration's spec version,
// prevResult), the plugin error codes and the mapping of the
// platform-neutral packages' errors (store, ipam) to them, reading
// CNI_ARGS, the locked state section (load or rebuild, address file
// saved first) and what runs in it (allocate, release, GC, CHECK of the
// allocations).
package cnicmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/store"
)

// Plugin-specific error codes (the spec reserves 100 and up for plugins).
const (
	// ErrCheckFailed: CHECK found the kernel (or HNS) differs from prevResult.
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

// ToError maps an error that is a CNI error already or comes from the
// platform-neutral packages (store, ipam) to a CNI error with the right
// code; ok is false for any other error, which the caller maps (its
// platform's errors) or reports as internal. Codes are chosen so that 11
// (try again) appears only when a retry can succeed without anyone
// changing anything. remoteSource says the addresses come from the Azure
// host, whose failures are usually transient.
func ToError(err error, remoteSource bool) (cerr *types.Error, ok bool) {
	var te *types.Error
	if errors.As(err, &te) {
		return te, true
	}
	var ex *ipam.ExhaustedError
	var se *ipam.SourceError
	switch {
	case errors.Is(err, store.ErrLockTimeout):
		return types.NewError(types.ErrTryAgainLater, err.Error(), ""), true
	case errors.As(err, &ex):
		return types.NewError(ErrPoolExhausted, err.Error(), ""), true
	case errors.Is(err, ipam.ErrRequestedTaken):
		return types.NewError(ErrAddressTaken, err.Error(), ""), true
	case errors.As(err, &se):
		if remoteSource {
			return types.NewError(types.ErrTryAgainLater, err.Error(), ""), true
		}
		return types.NewError(ErrAddressSource, err.Error(), ""), true
	}
	return nil, false
}

// StateError wraps a failure to persist the state file at path.
func StateError(path string, err error) error {
	return types.NewError(ErrState, fmt.Sprintf("write state %s: %v", path, err), "")
}

// Print writes res to w converted to the spec version cniVersion.
func Print(w io.Writer, res *types100.Result, cniVersion string) error {
	out, err := res.GetAsVersion(cniVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, err.Error(), "")
	}
	return out.PrintTo(w)
}

// PrintStored is Print for a result stored as JSON (a 1.0.0 result).
func PrintStored(w io.Writer, raw json.RawMessage, cniVersion string) error {
	res := &types100.Result{}
	if err := json.Unmarshal(raw, res); err != nil {
		return err
	}
	return Print(w, res, cniVersion)
}

// K8sArgs picks K8S_POD_NAMESPACE and K8S_POD_NAME out of CNI_ARGS;
// everything else there is ignored (the plugins work without them).
func K8sArgs(s string) (ns, name string) {
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			ns = v
		case "K8S_POD_NAME":
			name = v
		}
	}
	return ns, name
}

// Key is the state files' key of a container interface.
func Key(containerID, ifName string) string { return containerID + "/" + ifName }
