//go:build linux

package config

import (
	"errors"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// FuzzParse: any stdin, for either plugin, parses into a configuration or
// fails with a CNI spec error (code 6 for undecodable JSON, 7 for a wrong
// value) with a message, never a panic or a bare Go error. A configuration
// that parses has every default filled in.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"azure","type":"azure-vnet","mode":"transparent","ipam":{"type":"azure-vnet-ipam"}}`), false)
	f.Add([]byte(`{"cniVersion":"1.0.0","name":"azure","type":"azure-vnet-ipam","ipam":{"type":"azure-vnet-ipam","environment":"file","interfacesFile":"/tmp/i.json","queryInterval":"30s"}}`), true)
	f.Fuzz(func(t *testing.T, stdin []byte, ipamPlugin bool) {
		plugin := VnetPlugin
		if ipamPlugin {
			plugin = IPAMPlugin
		}
		c, err := Parse(stdin, plugin)
		if err != nil {
			var te *types.Error
			if !errors.As(err, &te) {
				t.Fatalf("error is not a CNI spec error: %T %v", err, err)
			}
			if (te.Code != types.ErrDecodingFailure && te.Code != types.ErrInvalidNetworkConfig) || te.Msg == "" {
				t.Fatalf("error code %d, message %q: want code 6 or 7 with a message", te.Code, te.Msg)
			}
			return
		}
		if c.Mode == "" || c.Bridge == "" || c.StateDir == "" || c.IPAM.Environment == "" ||
			c.IPAM.QueryInterval <= 0 || c.IPAM.ReuseCooldown <= 0 || c.LockTimeout <= 0 {
			t.Fatalf("parsed configuration lacks a default or has a non-positive duration: %+v", c)
		}
	})
}
