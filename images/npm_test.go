//go:build linux

package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/open-acn/acn/internal/imagespec"
)

// TestNPMImage builds the azure-npm image (twice: same digest), imports it
// into containerd, and runs, inside it as the DaemonSet does (read-only root,
// NET_ADMIN and NET_RAW only, /var/log and /run/xtables.lock mounted), every
// tool the iptables dataplane execs, in both backends, and the daemon's own
// cleanup, which execs them itself.
func TestNPMImage(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	tmp, res := buildImage(t, "azure-npm")

	tag, _ := name.NewTag(res.Ref)
	img, err := tarball.ImageFromPath(res.File, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "azure-npm start" {
		t.Errorf("entrypoint %q, want azure-npm start", got)
	}
	if cf.Config.User != "0" || cf.Config.Labels[imagespec.VersionLabel] != testVersion {
		t.Errorf("user %q labels %v, want 0 and version %s", cf.Config.User, cf.Config.Labels, testVersion)
	}
	if res.Ref != "ghcr.io/open-acn/azure-npm:"+testVersion {
		t.Errorf("reference %s", res.Ref)
	}
	t.Run("containerd import", func(t *testing.T) { importImage(t, res) })

	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	extract(t, res, rootfs)
	logDir := filepath.Join(tmp, "log")
	lock := filepath.Join(tmp, "xtables.lock")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	binds := map[string]string{"/var/log": logDir, "/run/xtables.lock": lock}

	for _, tc := range []struct {
		name  string
		steps []step
		want  []string // in the output
	}{
		{"version", []step{{Argv: []string{"azure-npm", "--version"}}}, []string{"azure-npm " + testVersion}},
		{"default iptables is nft", []step{{Argv: []string{"iptables", "-V"}}, {Argv: []string{"ip6tables", "-V"}}}, []string{"(nf_tables)"}},
		{"ipset", []step{{Argv: []string{"ipset", "version"}}}, []string{"ipset v7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runInImage(t, rootfs, binds, npmCaps, tc.steps...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("%q not in the output:\n%s", w, out)
				}
			}
		})
	}

	// As the dataplane does: sets with ipset restore, rules with
	// iptables-restore --noflush (the set match and comment extensions are
	// loaded from the image), read back with save; in each backend, each in
	// a fresh network namespace.
	sets := "create TESTSET hash:net family inet\nadd TESTSET 10.0.0.0/24\n"
	rules4 := "*filter\n:TEST-CHAIN - [0:0]\n-A TEST-CHAIN -m set --match-set TESTSET src -m comment --comment \"test rule\" -j ACCEPT\n-A FORWARD -j TEST-CHAIN\nCOMMIT\n"
	rules6 := "*filter\n:TEST-CHAIN - [0:0]\n-A TEST-CHAIN -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n"
	for _, backend := range []string{"nft", "legacy"} {
		t.Run("restore and save/"+backend, func(t *testing.T) {
			out, err := runInImage(t, rootfs, binds, npmCaps,
				step{Argv: []string{"ipset", "restore"}, Stdin: sets},
				step{Argv: []string{"iptables-" + backend + "-restore", "-w", "--noflush"}, Stdin: rules4},
				step{Argv: []string{"ip6tables-" + backend + "-restore", "-w", "--noflush"}, Stdin: rules6},
				step{Argv: []string{"ipset", "save"}},
				step{Argv: []string{"iptables-" + backend + "-save"}},
				step{Argv: []string{"ip6tables-" + backend + "-save"}},
			)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, want := range []string{"add TESTSET 10.0.0.0/24", "-A TEST-CHAIN -m set --match-set TESTSET src", "-A FORWARD -j TEST-CHAIN", "--dport 80 -j ACCEPT"} {
				if !strings.Contains(out, want) {
					t.Errorf("%q not in\n%s", want, out)
				}
			}
		})
	}

	t.Run("azure-npm cleanup", func(t *testing.T) {
		// The daemon's cleanup detects the backend and execs
		// iptables-*-save/restore and ipset itself.
		out, err := runInImage(t, rootfs, binds, npmCaps, step{Argv: []string{"azure-npm", "cleanup", "--dataplane=iptables", "--node-name=node-1", "--log-file=stderr"}})
		if err != nil {
			t.Errorf("azure-npm cleanup in the image: %v\n%s", err, out)
		}
		t.Logf("%s", out)
	})
}
