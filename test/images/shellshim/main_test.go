//go:build linux

package main

import (
	"os"
	"testing"
)

// TestOnlySCTP: porter is replaced only when it would serve SCTP ports
// and nothing else.
func TestOnlySCTP(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{"SERVE_SCTP_PORT_9003": "foo"}, true},
		{map[string]string{"SERVE_SCTP_PORT_9003": "foo", "SERVE_PORT_80": "bar"}, false},
		{map[string]string{"SERVE_TLS_PORT_443": "x"}, false},
		{map[string]string{}, false},
	} {
		for _, k := range []string{"SERVE_SCTP_PORT_9003", "SERVE_PORT_80", "SERVE_TLS_PORT_443"} {
			t.Setenv(k, "")
		}
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		// t.Setenv leaves the unset keys present but empty; onlySCTP
		// looks at presence, so unset them for this check.
		for _, k := range []string{"SERVE_SCTP_PORT_9003", "SERVE_PORT_80", "SERVE_TLS_PORT_443"} {
			if _, ok := c.env[k]; !ok {
				unsetenv(t, k)
			}
		}
		if got := onlySCTP(); got != c.want {
			t.Errorf("%v: onlySCTP %v, want %v", c.env, got, c.want)
		}
	}
}

func unsetenv(t *testing.T, k string) {
	t.Helper()
	if err := os.Unsetenv(k); err != nil {
		t.Fatal(err)
	}
}
