package config

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzMerge: any file content (YAML or JSON) merged onto the defaults
// either fails with an error or yields a configuration; one that validates
// survives a round trip (written as JSON and merged onto the defaults
// again, it is the same configuration), so what the daemon logs as its
// effective configuration means what it ran with.
func FuzzMerge(f *testing.F) {
	f.Add([]byte("reconcileInterval: 30s\nbatchWindow: 5ms\nlog:\n  level: debug\n"))
	f.Add([]byte(`{"dataplane":"nftables","metricsAddr":"127.0.0.1:10091","resyncPeriod":0}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Default()
		if err := Merge(&cfg, data); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if cfg.Validate() != nil {
			return
		}
		js, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal a valid configuration: %v", err)
		}
		again := Default()
		if err := Merge(&again, js); err != nil {
			t.Fatalf("a valid configuration written as JSON does not load: %v\n%s", err, js)
		}
		if !reflect.DeepEqual(cfg, again) {
			t.Fatalf("round trip changed the configuration:\n%+v\n%+v\n%s", cfg, again, js)
		}
	})
}
