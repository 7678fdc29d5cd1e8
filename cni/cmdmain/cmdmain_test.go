//go:build linux

package cmdmain

import (
	"bytes"
	"strings"
	"testing"
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
