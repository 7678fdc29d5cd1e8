package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadMergesOntoDefaults(t *testing.T) {
	cases := []struct {
		name  string
		file  string
		check func(t *testing.T, c Config)
	}{
		{"empty file keeps every default", "", func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c, Default()) {
				t.Fatalf("got %+v want %+v", c, Default())
			}
		}},
		{"yaml overrides one key", "reconcileInterval: 15s\nlog:\n  level: debug\n", func(t *testing.T, c Config) {
			if c.ReconcileInterval.D() != 15*time.Second {
				t.Errorf("reconcileInterval = %s", c.ReconcileInterval.D())
			}
			if c.Log.Level != "debug" || c.Log.File != "/var/log/azure-npm.log" {
				t.Errorf("log = %+v: level overridden, file must keep its default", c.Log)
			}
			if c.MetricsAddr != ":10091" {
				t.Errorf("metricsAddr lost its default: %q", c.MetricsAddr)
			}
		}},
		{"json works too", `{"dataplane": "nftables", "batchWindow": "5ms"}`, func(t *testing.T, c Config) {
			if c.Dataplane != "nftables" || c.BatchWindow.D() != 5*time.Millisecond {
				t.Errorf("got %+v", c)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "npm.yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, path, want string
	}{
		{"missing file", filepath.Join(dir, "nope.yaml"), "no such file"},
		{"unknown key", write("typo.yaml", "reconcileIntervall: 5s\n"), `unknown field "reconcileIntervall"`},
		{"bad duration", write("dur.yaml", "batchWindow: soon\n"), `duration "soon"`},
		{"not yaml", write("bad.yaml", "{{{"), "config file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestValidateReportsEveryMistake(t *testing.T) {
	c := Default()
	c.Dataplane = "ebpf"
	c.MetricsAddr = "10091"
	c.ReconcileInterval = Duration(time.Millisecond)
	c.Log.Level = "loud"
	c.SocketPath = "npm.sock"
	err := c.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{`dataplane "ebpf"`, `metricsAddr "10091"`, "reconcileInterval 1ms", `log level "loud"`, `socketPath "npm.sock": want an absolute path`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err := Default().Validate(); err != nil {
		t.Fatalf("defaults must validate: %v", err)
	}
	for path, want := range map[string]string{
		"":                             "socketPath must not be empty",
		"/" + strings.Repeat("d", 120): "a unix socket path holds at most 107",
		"/run/azure-npm/custom.sock":   "",
	} {
		c := Default()
		c.SocketPath = path
		err := c.Validate()
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("socketPath %q: error %v, want %q", path, err, want)
		}
	}
}

func TestResolveNodeName(t *testing.T) {
	t.Setenv("NODE_NAME", "node-a")
	t.Setenv("HOSTNAME", "host-b")
	c := Config{}
	c.ResolveNodeName()
	if c.NodeName != "node-a" {
		t.Fatalf("NODE_NAME must win: %q", c.NodeName)
	}
	t.Setenv("NODE_NAME", "")
	c = Config{}
	c.ResolveNodeName()
	if c.NodeName != "host-b" {
		t.Fatalf("HOSTNAME is the fallback: %q", c.NodeName)
	}
	c = Config{NodeName: "flag"}
	c.ResolveNodeName()
	if c.NodeName != "flag" {
		t.Fatalf("an explicit name must be kept: %q", c.NodeName)
	}
}

func TestFlowLogConfig(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if f := c.FlowLog; f.Default != "none" || f.RatePerSecond != 100 || f.Burst != 200 || f.NFLOGGroup != 100 || f.File != "/var/log/azure-npm-flows.log" || f.DedupWindow.D() != 5*time.Second {
		t.Errorf("flow log defaults: %+v", f)
	}
	path := filepath.Join(t.TempDir(), "npm.yaml")
	if err := os.WriteFile(path, []byte("flowLog:\n  default: deny\n  ratePerSecond: 50\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.FlowLog.Default != "deny" || c.FlowLog.RatePerSecond != 50 || c.FlowLog.Burst != 200 {
		t.Errorf("merged flow log: %+v", c.FlowLog)
	}
	for _, tc := range []struct {
		set  func(*FlowLogConfig)
		want string
	}{
		{func(f *FlowLogConfig) { f.Default = "allow" }, `flowLog.default "allow": want none, deny or all`},
		{func(f *FlowLogConfig) { f.RatePerSecond = 0 }, "flowLog.ratePerSecond 0"},
		{func(f *FlowLogConfig) { f.Burst = -1 }, "flowLog.burst -1"},
		{func(f *FlowLogConfig) { f.NFLOGGroup = 70000 }, "flowLog.nflogGroup 70000"},
		{func(f *FlowLogConfig) { f.File = "flows.log" }, `flowLog.file "flows.log": want an absolute path`},
		{func(f *FlowLogConfig) { f.DedupWindow = Duration(time.Hour) }, "flowLog.dedupWindow 1h0m0s"},
	} {
		c := Default()
		tc.set(&c.FlowLog)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error containing %q, got %v", tc.want, err)
		}
	}
}
