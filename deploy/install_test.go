//go:build linux

package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/open-acn/acn/cni/cnitest"
)

// release is an archive built like `make azure-cni-plugins` does, from
// plugins built by the test itself (the test does not depend on make).
type release struct {
	dir     string // holds the archive and its .sha256
	archive string
	version string
	bins    string // the built azure-vnet and azure-vnet-ipam
}

// buildRelease builds both plugins and the archive into a temporary dir.
func buildRelease(t *testing.T) *release {
	t.Helper()
	r, err := makeRelease(deployDir(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func makeRelease(deploy, dir string) (*release, error) {
	root := filepath.Dir(deploy)
	r := &release{dir: filepath.Join(dir, "out"), bins: filepath.Join(dir, "bin"), version: "v9.9.9-test"}
	stage := filepath.Join(dir, "stage")
	for _, d := range []string{r.dir, r.bins, stage} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	build := exec.Command(cnitest.GoTool(), "build", "-trimpath", "-o", r.bins+"/", "./cmd/azure-vnet", "./cmd/azure-vnet-ipam")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build the plugins: %v\n%s", err, out)
	}
	// The archive's content, as the Makefile's azure-cni-plugins target has it.
	files := []string{filepath.Join(r.bins, "azure-vnet"), filepath.Join(r.bins, "azure-vnet-ipam"), filepath.Join(deploy, "cni", "install-cni-plugin.sh")}
	conflists, _ := filepath.Glob(filepath.Join(deploy, "cni", "*.conflist"))
	for _, c := range conflists {
		if !strings.HasSuffix(c, "-windows.conflist") { // in the Windows archive only
			files = append(files, c)
		}
	}
	for _, f := range files {
		if out, err := exec.Command("cp", "-p", f, stage+"/").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("cp %s: %v\n%s", f, err, out)
		}
	}
	name := "azure-vnet-cni-linux-amd64-" + r.version + ".tgz"
	r.archive = filepath.Join(r.dir, name)
	if out, err := exec.Command("tar", "-C", stage, "--owner=0", "--group=0", "-czf", r.archive, ".").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("tar: %v\n%s", err, out)
	}
	if err := writeSum(r.archive, ""); err != nil {
		return nil, err
	}
	return r, nil
}

// writeSum writes ARCHIVE.sha256 in sha256sum's format; sum "" = the real one.
func writeSum(archive, sum string) error {
	if sum == "" {
		data, err := os.ReadFile(archive)
		if err != nil {
			return err
		}
		h := sha256.Sum256(data)
		sum = hex.EncodeToString(h[:])
	}
	return os.WriteFile(archive+".sha256", []byte(sum+"  "+filepath.Base(archive)+"\n"), 0o644)
}

// node is one install target: DESTDIR and a fake reference plugin dir.
type node struct {
	destdir, ref string
	env          []string
}

func newNode(t *testing.T) *node {
	t.Helper()
	n := &node{destdir: filepath.Join(t.TempDir(), "root"), ref: filepath.Join(t.TempDir(), "ref")}
	if err := os.MkdirAll(n.ref, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"portmap", "loopback"} {
		if err := os.WriteFile(filepath.Join(n.ref, p), []byte("#!/bin/sh\n# reference "+p+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// REF_PLUGINS_DIR set: the script never runs apt-get.
	n.env = []string{"DESTDIR=" + n.destdir, "REF_PLUGINS_DIR=" + n.ref, "TMPDIR=" + t.TempDir()}
	return n
}

func (n *node) bin(name string) string  { return filepath.Join(n.destdir, "opt/cni/bin", name) }
func (n *node) conf(name string) string { return filepath.Join(n.destdir, "etc/cni/net.d", name) }

// run runs the install script under umask 077 (modes must not depend on
// the caller's umask) and returns stdout, stderr and the exit code.
func (n *node) run(t *testing.T, extraEnv []string, args ...string) (string, string, int) {
	t.Helper()
	script := filepath.Join(deployDir(t), "cni", "install-cni-plugin.sh")
	cmd := exec.Command("bash", append([]string{"-c", `umask 077; exec bash "$0" "$@"`, script}, args...)...)
	cmd.Env = append(append(os.Environ(), n.env...), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// files lists every file under DESTDIR (relative), including stray temporaries.
func (n *node) files(t *testing.T) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(n.destdir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(n.destdir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkFile(t *testing.T, path string, mode os.FileMode, want []byte) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if st.Mode().Perm() != mode {
		t.Errorf("%s: mode %o, want %o", path, st.Mode().Perm(), mode)
	}
	if want != nil && !bytes.Equal(mustRead(t, path), want) {
		t.Errorf("%s: content differs from its source", path)
	}
}

// checkInstalled checks the complete, exact result of an install.
func (n *node) checkInstalled(t *testing.T, r *release, conflist string) {
	t.Helper()
	checkFile(t, n.bin("azure-vnet"), 0o755, mustRead(t, filepath.Join(r.bins, "azure-vnet")))
	checkFile(t, n.bin("azure-vnet-ipam"), 0o755, mustRead(t, filepath.Join(r.bins, "azure-vnet-ipam")))
	checkFile(t, n.bin("portmap"), 0o755, nil)
	checkFile(t, n.bin("loopback"), 0o755, nil)
	checkFile(t, n.conf(conflist), 0o644, mustRead(t, filepath.Join(deployDir(t), "cni", conflist)))
	want := []string{"etc/cni/net.d/" + conflist, "opt/cni/bin/azure-vnet", "opt/cni/bin/azure-vnet-ipam", "opt/cni/bin/loopback", "opt/cni/bin/portmap"}
	if got := n.files(t); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("installed files %v, want exactly %v", got, want)
	}
}

func (n *node) checkNothingInstalled(t *testing.T, except ...string) {
	t.Helper()
	for _, f := range n.files(t) {
		if !contains(except, f) {
			t.Errorf("%s installed although the install failed", f)
		}
	}
}

type stamp struct {
	ino   uint64
	mtime int64
}

func stampOf(t *testing.T, p string) stamp {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return stamp{ino: sys.Ino, mtime: st.ModTime().UnixNano()}
}

func TestInstallScript(t *testing.T) {
	t.Parallel()
	r := buildRelease(t)

	t.Run("fresh install then idempotent", func(t *testing.T) {
		n := newNode(t)
		out, errOut, code := n.run(t, nil, "--archive", r.archive)
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		n.checkInstalled(t, r, "10-azure.conflist")
		// portmap and loopback came from REF_PLUGINS_DIR.
		for _, p := range []string{"portmap", "loopback"} {
			checkFile(t, n.bin(p), 0o755, mustRead(t, filepath.Join(n.ref, p)))
		}
		before := map[string]stamp{}
		for _, f := range n.files(t) {
			before[f] = stampOf(t, filepath.Join(n.destdir, f))
		}
		out, errOut, code = n.run(t, nil, "--archive", r.archive)
		if code != 0 {
			t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
		}
		n.checkInstalled(t, r, "10-azure.conflist")
		for f, s := range before {
			if stampOf(t, filepath.Join(n.destdir, f)) != s {
				t.Errorf("second run rewrote %s", f)
			}
		}
		if strings.Contains(out, "installed /") || strings.Count(out, "unchanged ") != 3 {
			t.Errorf("second run should report azure-vnet, azure-vnet-ipam and the conflist unchanged and install nothing:\n%s", out)
		}
	})

	t.Run("the script shipped in the archive", func(t *testing.T) {
		// What an operator does: unpack the release, run its script.
		x := t.TempDir()
		if out, err := exec.Command("tar", "-xzf", r.archive, "-C", x).CombinedOutput(); err != nil {
			t.Fatalf("tar: %v\n%s", err, out)
		}
		n := newNode(t)
		cmd := exec.Command("./install-cni-plugin.sh", "--archive", r.archive)
		cmd.Dir = x
		cmd.Env = append(os.Environ(), n.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		n.checkInstalled(t, r, "10-azure.conflist")
	})

	t.Run("checksum mismatch installs nothing", func(t *testing.T) {
		for name, tamper := range map[string]func(archive string) error{
			"wrong sum": func(a string) error { return writeSum(a, strings.Repeat("0", 64)) },
			"tampered archive": func(a string) error {
				f, err := os.OpenFile(a, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					return err
				}
				_, err = f.Write([]byte{0})
				return errors.Join(err, f.Close())
			},
		} {
			t.Run(name, func(t *testing.T) {
				a := copyRelease(t, r)
				if err := tamper(a); err != nil {
					t.Fatal(err)
				}
				n := newNode(t)
				out, errOut, code := n.run(t, nil, "--archive", a)
				if code != 1 || !strings.Contains(errOut, "checksum mismatch") || !strings.Contains(errOut, "nothing installed") {
					t.Errorf("exit %d, want 1 with a checksum mismatch message\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
				}
				n.checkNothingInstalled(t)
			})
		}
	})

	t.Run("missing checksum file installs nothing", func(t *testing.T) {
		a := copyRelease(t, r)
		if err := os.Remove(a + ".sha256"); err != nil {
			t.Fatal(err)
		}
		n := newNode(t)
		_, errOut, code := n.run(t, nil, "--archive", a)
		if code != 1 || !strings.Contains(errOut, ".sha256 not found") {
			t.Errorf("exit %d, want 1 naming the missing .sha256\n%s", code, errOut)
		}
		n.checkNothingInstalled(t)
	})

	t.Run("different conflist refused without --force", func(t *testing.T) {
		n := newNode(t)
		theirs := []byte(`{"cniVersion":"1.0.0","name":"someone-elses","plugins":[{"type":"bridge"}]}` + "\n")
		if err := os.MkdirAll(filepath.Dir(n.conf("10-azure.conflist")), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n.conf("10-azure.conflist"), theirs, 0o600); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := n.run(t, nil, "--archive", r.archive)
		if code != 1 || !strings.Contains(errOut, "differs") || !strings.Contains(errOut, "--force") {
			t.Errorf("exit %d, want 1 with a refusal naming --force\n%s", code, errOut)
		}
		if !bytes.Equal(mustRead(t, n.conf("10-azure.conflist")), theirs) {
			t.Error("the existing conflist was changed without --force")
		}
		n.checkNothingInstalled(t, "etc/cni/net.d/10-azure.conflist")

		out, errOut, code := n.run(t, nil, "--force", "--archive", r.archive)
		if code != 0 {
			t.Fatalf("--force: exit %d\n%s%s", code, out, errOut)
		}
		n.checkInstalled(t, r, "10-azure.conflist")
	})

	t.Run("identical conflist is not a conflict", func(t *testing.T) {
		n := newNode(t)
		if err := os.MkdirAll(filepath.Dir(n.conf("10-azure.conflist")), 0o755); err != nil {
			t.Fatal(err)
		}
		// Same content, wrong mode: accepted, and the mode is repaired.
		if err := os.WriteFile(n.conf("10-azure.conflist"), mustRead(t, filepath.Join(deployDir(t), "cni", "10-azure.conflist")), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, errOut, code := n.run(t, nil, "--archive", r.archive); code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		n.checkInstalled(t, r, "10-azure.conflist")
	})

	t.Run("warns about a config that takes precedence", func(t *testing.T) {
		n := newNode(t)
		other := n.conf("05-other.conflist")
		if err := os.MkdirAll(filepath.Dir(other), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(other, []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := n.run(t, nil, "--archive", r.archive)
		if code != 0 || !strings.Contains(errOut, "warning: "+other+" sorts before 10-azure.conflist") {
			t.Errorf("exit %d, want 0 and a warning naming %s\n%s", code, other, errOut)
		}
	})

	t.Run("present reference plugins are kept", func(t *testing.T) {
		n := newNode(t)
		if err := os.MkdirAll(filepath.Dir(n.bin("portmap")), 0o755); err != nil {
			t.Fatal(err)
		}
		mine := []byte("#!/bin/sh\n# the node's own portmap\n")
		if err := os.WriteFile(n.bin("portmap"), mine, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, errOut, code := n.run(t, nil, "--archive", r.archive); code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		n.checkInstalled(t, r, "10-azure.conflist")
		checkFile(t, n.bin("portmap"), 0o755, mine)
		checkFile(t, n.bin("loopback"), 0o755, mustRead(t, filepath.Join(n.ref, "loopback")))
	})

	t.Run("missing reference plugin installs nothing", func(t *testing.T) {
		n := newNode(t)
		if err := os.Remove(filepath.Join(n.ref, "loopback")); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := n.run(t, nil, "--archive", r.archive)
		if code != 1 || !strings.Contains(errOut, "loopback is missing") {
			t.Errorf("exit %d, want 1 naming loopback\n%s", code, errOut)
		}
		n.checkNothingInstalled(t)
	})

	t.Run("by version from OUT_DIR, custom dirs, bridge conflist", func(t *testing.T) {
		n := newNode(t)
		env := []string{"OUT_DIR=" + r.dir, "CNI_BIN_DIR=/usr/libexec/cni", "CNI_CONF_DIR=/etc/cni/conf.d"}
		for _, args := range [][]string{
			{"--version", r.version, "--conflist", "10-azure-bridge.conflist"},
			{"--conflist=10-azure-bridge.conflist", r.version},
		} {
			if out, errOut, code := n.run(t, env, args...); code != 0 {
				t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
			}
		}
		checkFile(t, filepath.Join(n.destdir, "usr/libexec/cni/azure-vnet"), 0o755, mustRead(t, filepath.Join(r.bins, "azure-vnet")))
		checkFile(t, filepath.Join(n.destdir, "usr/libexec/cni/azure-vnet-ipam"), 0o755, nil)
		checkFile(t, filepath.Join(n.destdir, "usr/libexec/cni/portmap"), 0o755, nil)
		checkFile(t, filepath.Join(n.destdir, "etc/cni/conf.d/10-azure-bridge.conflist"), 0o644, mustRead(t, filepath.Join(deployDir(t), "cni", "10-azure-bridge.conflist")))

		_, errOut, code := n.run(t, env, "--version", "v0.0.0-nonexistent")
		if code != 1 || !strings.Contains(errOut, "not found") {
			t.Errorf("unknown version: exit %d, want 1\n%s", code, errOut)
		}
	})

	t.Run("no arguments: the archive make names from this checkout", func(t *testing.T) {
		// make and the script must agree on the version without being told:
		// make names the archive with $(VERSION), the script looks for
		// hack/version.sh's; both must be the same string.
		root := filepath.Dir(deployDir(t))
		v, err := exec.Command(filepath.Join(root, "hack", "version.sh")).Output()
		if err != nil {
			t.Fatalf("hack/version.sh: %v", err)
		}
		version := strings.TrimSpace(string(v))
		mk := exec.Command("make", "-s", "--no-print-directory", "version")
		mk.Dir = root
		mv, err := mk.Output()
		if err != nil {
			t.Fatalf("make version: %v", err)
		}
		if strings.TrimSpace(string(mv)) != version {
			t.Errorf("make's VERSION %q, hack/version.sh %q: the archive name and the script's default differ", mv, version)
		}
		out := t.TempDir()
		named := filepath.Join(out, "azure-vnet-cni-linux-amd64-"+version+".tgz")
		if err := os.Link(r.archive, named); err != nil {
			t.Fatal(err)
		}
		if err := writeSum(named, ""); err != nil {
			t.Fatal(err)
		}
		n := newNode(t)
		stdout, errOut, code := n.run(t, []string{"OUT_DIR=" + out})
		if code != 0 {
			t.Fatalf("no arguments: exit %d\n%s%s", code, stdout, errOut)
		}
		n.checkInstalled(t, r, "10-azure.conflist")
		if !strings.Contains(stdout, filepath.Base(named)) {
			t.Errorf("the script did not install %s:\n%s", filepath.Base(named), stdout)
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		n := newNode(t)
		for _, args := range [][]string{
			{"--archive", r.archive, "--version", "v1"},
			{"--bogus"},
			{"--archive"},
			{"v1", "v2"},
		} {
			if _, errOut, code := n.run(t, nil, args...); code != 2 {
				t.Errorf("%v: exit %d, want 2\n%s", args, code, errOut)
			}
		}
		if _, errOut, code := n.run(t, nil, "--conflist", "../x", "--archive", r.archive); code != 1 {
			t.Errorf("--conflist ../x: exit %d, want 1\n%s", code, errOut)
		}
		n.checkNothingInstalled(t)
	})
}

// copyRelease copies the archive and its .sha256 into a fresh directory.
func copyRelease(t *testing.T, r *release) string {
	t.Helper()
	dir := t.TempDir()
	a := filepath.Join(dir, filepath.Base(r.archive))
	for _, f := range []string{r.archive, r.archive + ".sha256"} {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), mustRead(t, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// TestInstallScriptPowerShellCounterpart cannot run PowerShell here; it
// checks that install-cni-plugin.ps1 keeps the Linux script's interface and
// checks: the same options, the Windows default directories, the checksum
// verified before extraction, and the conflist refusal without -Force.
func TestInstallScriptPowerShellCounterpart(t *testing.T) {
	ps := string(mustRead(t, filepath.Join(deployDir(t), "cni", "install-cni-plugin.ps1")))
	sh := string(mustRead(t, filepath.Join(deployDir(t), "cni", "install-cni-plugin.sh")))
	for _, want := range []string{
		"[switch]$Force", "[string]$Archive", "[string]$Version", "[string]$Conflist",
		`"C:\k\azurecni\bin"`, `"C:\k\azurecni\netconf"`, "$env:DESTDIR", "$env:CNI_BIN_DIR", "$env:CNI_CONF_DIR",
		"Get-FileHash -Algorithm SHA256", "checksum mismatch", "not found: refusing to install an unverified archive",
		"differs from the archive's; nothing installed (-Force replaces it)",
		`$Conflist = "10-azure.conflist"`, "azure-vnet.exe", "azure-vnet-ipam.exe",
	} {
		if !strings.Contains(ps, want) {
			t.Errorf("install-cni-plugin.ps1 lacks %q", want)
		}
	}
	// Both take their default version from the one definition make uses.
	for name, script := range map[string]string{"install-cni-plugin.ps1": ps, "install-cni-plugin.sh": sh} {
		if !strings.Contains(script, "version.sh") || strings.Contains(script, "describe") {
			t.Errorf("%s: the default version must come from hack/version.sh, not its own git describe", name)
		}
	}
	if !strings.Contains(sh, `conflist_name="10-azure.conflist"`) {
		t.Error("the two scripts disagree on the default conflist")
	}
	// The checksum is verified before the archive is extracted.
	if strings.Index(ps, "$got -ne $want") > strings.Index(ps, "Expand-Archive") {
		t.Error("install-cni-plugin.ps1 extracts the archive before verifying it")
	}
	// The conflist conflict is checked before the first file is installed.
	if strings.Index(ps, "if (-not $Force)") > strings.Index(ps, `InstallFile (Join-Path $tmp "azure-vnet.exe")`) {
		t.Error("install-cni-plugin.ps1 installs before checking the conflist")
	}
}
