package cnicmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/open-acn/acn/cni/config"
)

func TestPrevResult(t *testing.T) {
	for _, c := range []struct {
		name, version, prev string
		wantIP              string
		wantCode            uint // 0: no CNI error expected
	}{
		{"1.1.0 result", "1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"10.9.0.2/24"}]}`, "10.9.0.2", 0},
		{"0.4.0 result", "0.4.0", `{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.9.0.3/24"}]}`, "10.9.0.3", 0},
		{"undecodable", "1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"not-an-address"}]}`, "", types.ErrDecodingFailure},
		{"missing", "1.1.0", ``, "", types.ErrInvalidNetworkConfig},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := &config.NetConf{}
			cfg.CNIVersion = c.version
			if c.prev != "" {
				if err := json.Unmarshal([]byte(c.prev), &cfg.RawPrevResult); err != nil {
					t.Fatal(err)
				}
			}
			inv := &Invocation{Cfg: cfg, Args: &skel.CmdArgs{}}
			res, err := inv.PrevResult()
			if c.wantCode != 0 {
				var te *types.Error
				if !errors.As(err, &te) || te.Code != c.wantCode {
					t.Fatalf("err = %v, want CNI error code %d", err, c.wantCode)
				}
				return
			}
			if err != nil || len(res.IPs) != 1 || res.IPs[0].Address.IP.String() != c.wantIP {
				t.Fatalf("PrevResult = %+v, %v; want %s", res, err, c.wantIP)
			}
		})
	}
}

func TestInvocationHookAndPrint(t *testing.T) {
	var out bytes.Buffer
	cfg := &config.NetConf{}
	cfg.CNIVersion = "0.4.0"
	inv := &Invocation{Cfg: cfg, Stdout: &out}
	if err := inv.At("add:veth"); err != nil {
		t.Fatalf("At without a hook: %v", err)
	}
	inv.Hook = func(step string) error { return errors.New("stop at " + step) }
	if err := inv.At("add:veth"); err == nil || !strings.Contains(err.Error(), "add:veth") {
		t.Fatalf("At with a hook: %v", err)
	}
	if err := inv.PrintStored(json.RawMessage(`{"cniVersion":"1.1.0","ips":[{"address":"10.9.0.2/24"}]}`)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"cniVersion": "0.4.0"`) && !strings.Contains(out.String(), `"cniVersion":"0.4.0"`) {
		t.Fatalf("stored result not printed in the configuration's version: %s", out.String())
	}
}
