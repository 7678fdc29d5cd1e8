package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badCfg, []byte("nope: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	flows := filepath.Join(dir, "flows.log")
	if err := os.WriteFile(flows, []byte(`{"time":"2026-01-02T03:04:05Z","verdict":"deny","direction":"ingress","namespace":"x","policy":"x/deny-b","description":"no rule of x/deny-b allows it","protocol":"TCP","src":"10.0.0.3","srcPod":"x/a","dst":"10.0.0.2","dstPort":80,"dstPod":"x/b","count":1}
{"time":"2026-01-02T03:04:06Z","verdict":"allow","direction":"egress","namespace":"y","policy":"y/out","rule":0,"description":"to any peer on 53/UDP","protocol":"UDP","src":"10.0.0.4","dst":"10.0.0.9","dstPort":53,"count":1}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	flowsCfg := filepath.Join(dir, "npm.yaml")
	if err := os.WriteFile(flowsCfg, []byte("flowLog:\n  file: "+flows+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		args      []string
		wantUsage bool   // exit code 2
		wantOut   string // on stdout
		wantErr   string
	}{
		{"version flag", []string{"--version"}, false, "azure-npm v", ""},
		{"version command", []string{"version"}, false, "azure-npm v", ""},
		{"no command", nil, true, "", "no command"},
		{"unknown command", []string{"frobnicate"}, true, "", `unknown command "frobnicate"`},
		{"unknown flag", []string{"start", "--bogus"}, true, "", "flag provided but not defined: -bogus"},
		{"unreadable config", []string{"start", "--config", filepath.Join(dir, "missing.yaml")}, true, "", "no such file"},
		{"unknown config key", []string{"start", "--config", badCfg}, true, "", `unknown field "nope"`},
		{"bad dataplane flag", []string{"start", "--dataplane", "ebpf", "--node-name", "n"}, true, "", `dataplane "ebpf"`},
		{"explain without endpoints", []string{"explain", "--port", "80"}, true, "", "--from, --to and --port are required"},
		{"explain bad port", []string{"explain", "--from", "a/b", "--to", "10.0.0.1", "--port", "99999"}, true, "", `port "99999"`},
		{"start help", []string{"start", "--help"}, false, "-socket", ""},
		{"relative socket path", []string{"start", "--node-name", "n", "--socket", "npm.sock"}, true, "", `socketPath "npm.sock": want an absolute path`},
		{"explain has no network address", []string{"explain", "--addr", "127.0.0.1:10091", "--from", "a/b", "--to", "c/d", "--port", "80"}, true, "", "flag provided but not defined: -addr"},
		{"explain without an agent", []string{"explain", "--socket", filepath.Join(dir, "none.sock"), "--from", "a/b", "--to", "c/d", "--port", "80"}, false, "", "no agent socket at " + filepath.Join(dir, "none.sock")},
		{"status without an agent", []string{"status", "--socket", filepath.Join(dir, "none.sock")}, false, "", "no agent socket at " + filepath.Join(dir, "none.sock")},
		{"status extra argument", []string{"status", "pods"}, true, "", `unexpected argument "pods"`},
		{"status help", []string{"status", "--help"}, false, "-object", ""},
		{"flows denied", []string{"flows", "--file", flows, "--verdict", "deny"}, false, "DENY  ingress x/a 10.0.0.3 -> x/b 10.0.0.2:80/TCP  x/deny-b default deny: no rule of x/deny-b allows it", ""},
		{"flows by namespace, file from the config", []string{"flows", "--config", flowsCfg, "--namespace", "y"}, false, "ALLOW egress  10.0.0.4 -> 10.0.0.9:53/UDP  y/out rule 0: to any peer on 53/UDP", ""},
		{"flows bad verdict", []string{"flows", "--verdict", "drop"}, true, "", `--verdict "drop": want allow or deny`},
		{"flows without a file", []string{"flows", "--file", filepath.Join(dir, "none.log")}, false, "", "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, &out)
			var ue usageError
			if got := errors.As(err, &ue); got != tc.wantUsage {
				t.Fatalf("usage error = %v (err %v), want %v", got, err, tc.wantUsage)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("stdout %q lacks %q", out.String(), tc.wantOut)
			}
		})
	}
}
