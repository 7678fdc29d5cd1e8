//go:build linux

package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/open-acn/acn/cni/cnitest"
	"github.com/open-acn/acn/internal/netnstest"
)

// TestReadOnlyHostDir runs the built command with the conf dir on a
// read-only mount (in a private mount namespace): it exits 1 with a clear
// message and writes nothing, not even the plugins.
func TestReadOnlyHostDir(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		netnstest.Skip(t, "needs root and Linux for a read-only bind mount in a private mount namespace (CI runs as root)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		netnstest.Skip(t, "unshare (util-linux) missing")
	}
	bin := filepath.Join(t.TempDir(), "azure-cni-install")
	build := exec.Command(cnitest.GoTool(), "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	src := payload(t)
	root := t.TempDir()
	binDir, confDir := filepath.Join(root, "bin"), filepath.Join(root, "conf")
	for _, d := range []string{binDir, confDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$2" "$2" && mount -o remount,bind,ro "$2" && exec "$1" install --source "$3" --bin-dir "$4" --conf-dir "$2"`,
		"sh", bin, confDir, src, binDir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "target directory "+confDir+" is not writable") || !strings.Contains(string(out), "nothing installed") {
		t.Errorf("message %q does not say the conf dir is not writable and nothing was installed", out)
	}
	for _, d := range []string{binDir, confDir} {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Errorf("%s written although the install failed: %v", d, entries)
		}
	}
}
