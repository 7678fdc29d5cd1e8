//go:build linux

package deploy

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// make azure-cni-plugins-windows produces the archive install-cni-plugin.ps1
// expects, named with hack/version.sh's version: the two .exe (Windows PE
// files carrying that version), the Windows conflist under its own name and
// as the script's default 10-azure.conflist, the script, and a .sha256 in
// sha256sum format that matches.
func TestWindowsArchive(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: cross-compiles both plugins for Windows")
	}
	root := filepath.Dir(deployDir(t))
	v, err := exec.Command(filepath.Join(root, "hack", "version.sh")).Output()
	if err != nil {
		t.Fatalf("hack/version.sh: %v", err)
	}
	version := strings.TrimSpace(string(v))
	out := t.TempDir()
	mk := exec.Command("make", "-s", "--no-print-directory", "azure-cni-plugins-windows", "OUT="+out)
	mk.Dir = root
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make azure-cni-plugins-windows: %v\n%s", err, b)
	}
	name := "azure-vnet-cni-windows-amd64-" + version + ".zip"
	archive := filepath.Join(out, name)
	data := mustRead(t, archive)
	sum := sha256.Sum256(data)
	if got, want := string(mustRead(t, archive+".sha256")), hex.EncodeToString(sum[:])+"  "+name+"\n"; got != want {
		t.Fatalf(".sha256 is %q, want %q", got, want)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	var names []string
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name] = b
		names = append(names, f.Name)
	}
	sort.Strings(names)
	want := []string{"10-azure-windows.conflist", "10-azure.conflist", "azure-vnet-ipam.exe", "azure-vnet.exe", "install-cni-plugin.ps1"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("archive holds %v, want %v", names, want)
	}
	conflist := mustRead(t, filepath.Join(deployDir(t), "cni", "10-azure-windows.conflist"))
	for _, c := range []string{"10-azure.conflist", "10-azure-windows.conflist"} {
		if !bytes.Equal(files[c], conflist) {
			t.Errorf("%s in the archive is not deploy/cni/10-azure-windows.conflist", c)
		}
	}
	// The script installs its default -Conflist from the archive.
	ps := string(files["install-cni-plugin.ps1"])
	if !strings.Contains(ps, `$Conflist = "10-azure.conflist"`) || !strings.Contains(ps, "azure-vnet-cni-windows-amd64-$Version.zip") {
		t.Errorf("install-cni-plugin.ps1 no longer expects this archive")
	}
	for _, exe := range []string{"azure-vnet.exe", "azure-vnet-ipam.exe"} {
		b := files[exe]
		if len(b) < 2 || string(b[:2]) != "MZ" {
			t.Errorf("%s is not a Windows executable", exe)
		}
		if !bytes.Contains(b, []byte(version)) {
			t.Errorf("%s does not carry the version %s", exe, version)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "windows-amd64", "azure-vnet.exe")); err != nil {
		t.Error(err)
	}
}
