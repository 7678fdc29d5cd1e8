//go:build linux

package cmdmain

import (
	"bytes"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

func TestArgs(t *testing.T) {
	cases := []struct {
		args     []string
		code     int
		exit     bool
		out, err string
	}{
		{nil, 0, false, "", ""},
		{[]string{"--version"}, 0, true, "azure-vnet v", ""},
		{[]string{"-version"}, 0, true, "azure-vnet v", ""},
		{[]string{"--help"}, 0, true, "CNI plugin", ""},
		{[]string{"--bogus"}, 2, true, "", `unknown argument "--bogus"`},
		{[]string{"version"}, 2, true, "", "unknown argument"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code, exit := Args("azure-vnet", c.args, &out, &errb)
		if code != c.code || exit != c.exit || !strings.Contains(out.String(), c.out) || !strings.Contains(errb.String(), c.err) {
			t.Errorf("%v: code=%d exit=%v out=%q err=%q", c.args, code, exit, out.String(), errb.String())
		}
		if c.err != "" && strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%v: error must be one line: %q", c.args, errb.String())
		}
	}
}

// TestDel: DEL reaches the handler with the raw configuration (no
// version or name check first); missing identifiers and handler errors
// are the spec's error JSON with exit code 1.
func TestDel(t *testing.T) {
	env := map[string]string{"CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "CNI_NETNS": "/proc/1/ns/net"}
	var got *skel.CmdArgs
	ok := func(a *skel.CmdArgs) error { got = a; return nil }
	var out bytes.Buffer
	if code := Del(ok, func(k string) string { return env[k] }, strings.NewReader(`{"cniVersion":"0.1.0"`), &out); code != 0 || out.Len() != 0 {
		t.Fatalf("DEL: code %d, output %q", code, out.String())
	}
	if got == nil || got.ContainerID != "c1" || got.IfName != "eth0" || string(got.StdinData) != `{"cniVersion":"0.1.0"` {
		t.Fatalf("handler got %+v", got)
	}
	failing := func(*skel.CmdArgs) error { return types.NewError(104, "write state: disk full", "") }
	out.Reset()
	if code := Del(failing, func(k string) string { return env[k] }, strings.NewReader("{}"), &out); code != 1 || !strings.Contains(out.String(), `"code":104`) {
		t.Errorf("failing DEL: code %d, output %q", code, out.String())
	}
	out.Reset()
	delete(env, "CNI_IFNAME")
	if code := Del(ok, func(k string) string { return env[k] }, strings.NewReader("{}"), &out); code != 1 || !strings.Contains(out.String(), "CNI_IFNAME") || !strings.Contains(out.String(), `"code":4`) {
		t.Errorf("DEL without CNI_IFNAME: code %d, output %q", code, out.String())
	}
}
