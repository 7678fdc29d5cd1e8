package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// payload writes an image payload (bin/, conf/, SHA256SUMS) into a temp dir.
func payload(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var sums strings.Builder
	for _, f := range []struct{ rel, data string }{
		{"bin/azure-vnet", "vnet"}, {"bin/azure-vnet-ipam", "ipam"}, {"bin/portmap", "portmap"},
		{"conf/10-azure.conflist", "{}"},
	} {
		p := filepath.Join(dir, f.rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), 0o644); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256([]byte(f.data))
		sums.WriteString(hex.EncodeToString(h[:]) + "  " + f.rel + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(sums.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRun(t *testing.T) {
	src := payload(t)
	custom := filepath.Join(t.TempDir(), "custom.conflist")
	if err := os.WriteFile(custom, []byte(`{"cniVersion":"1.0.0","name":"azure","plugins":[{"type":"azure-vnet"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantOut string
		wantErr string
		usage   bool
	}{
		{"version", []string{"--version"}, nil, "azure-cni-install v", "", false},
		{"help", []string{"--help"}, nil, "-force-conflist", "", false},
		{"install --help", []string{"install", "-h"}, nil, "$CNI_BIN_DIR", "", false},
		{"unknown command", []string{"uninstall"}, nil, "", "unknown command", true},
		{"unknown flag", []string{"install", "--bogus"}, nil, "", "bogus", true},
		{"extra argument", []string{"install", "x"}, nil, "", "unexpected argument", true},
		{"sleep with argument", []string{"sleep", "10"}, nil, "", "sleep takes no argument", true},
		{"bad CNI_FORCE_CONFLIST", []string{"install"}, map[string]string{"CNI_FORCE_CONFLIST": "yes please"}, "", "want true or false", true},
		{"install by flags", []string{"install", "--source", src, "--conflist", "10-azure.conflist"}, nil, "installed ", "", false},
		{"install by environment", nil, map[string]string{"AZURE_CNI_SOURCE": src}, "done: plugins in ", "", false},
		{"conflist from CNI_CONFLIST_FILE", nil, map[string]string{"AZURE_CNI_SOURCE": src, "CNI_CONFLIST_FILE": custom}, "installed ", "", false},
		{"bad conflist file", []string{"install", "--source", src, "--conflist-file", src + "/SHA256SUMS"}, nil, "", "not a JSON network configuration list", false},
		{"missing source", []string{"install", "--source", filepath.Join(src, "nope")}, nil, "", "nothing installed", false},
		{"conflist not in the image", []string{"install", "--source", src, "--conflist", "05-other.conflist"}, nil, "", "is not in the image", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			t.Setenv("CNI_BIN_DIR", filepath.Join(root, "bin"))
			t.Setenv("CNI_CONF_DIR", filepath.Join(root, "conf"))
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errOut)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("run %v: %v", tc.args, err)
			}
			if tc.wantErr != "" {
				var ue usageError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.As(err, &ue) != tc.usage {
					t.Fatalf("run %v: %v, want %q (usage error %v)", tc.args, err, tc.wantErr, tc.usage)
				}
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("output %q, want %q in it", out.String(), tc.wantOut)
			}
		})
	}
}

func TestSleepUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"sleep"}, new(bytes.Buffer), new(bytes.Buffer)) }()
	select {
	case err := <-done:
		t.Fatalf("sleep returned before it was stopped: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("sleep: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sleep did not return after SIGTERM")
	}
}
