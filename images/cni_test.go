//go:build linux

package images

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestCNIImage builds the azure-cni image (twice: same digest), imports it
// into containerd and runs its installer as the DaemonSet's init container
// does (read-only root, no capability at all, the host's /opt/cni/bin and
// /etc/cni/net.d mounted): the plugins and the conflist land on the host,
// identical to their sources, and a second run changes nothing.
func TestCNIImage(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	tmp, res := buildImage(t, "azure-cni")
	tag, _ := name.NewTag(res.Ref)
	img, err := tarball.ImageFromPath(res.File, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(append(cf.Config.Entrypoint, cf.Config.Cmd...), " "); got != "azure-cni-install install" {
		t.Errorf("entrypoint+cmd %q, want azure-cni-install install", got)
	}
	if res.Ref != "ghcr.io/open-acn/azure-cni:"+testVersion {
		t.Errorf("reference %s", res.Ref)
	}
	entries := listTar(t, res)
	for _, p := range []string{"opt/azure-cni/SHA256SUMS", "opt/azure-cni/bin/azure-vnet", "opt/azure-cni/bin/portmap", "usr/lib/cni/portmap", "usr/lib/cni/loopback"} {
		if _, ok := entries[p]; !ok {
			t.Errorf("%s missing from the image", p)
		}
	}
	for p := range entries {
		if strings.HasPrefix(p, "usr/lib/cni/") && p != "usr/lib/cni/portmap" && p != "usr/lib/cni/loopback" {
			t.Errorf("%s in the image: only portmap and loopback are kept from containernetworking-plugins", p)
		}
	}
	t.Run("containerd import", func(t *testing.T) { importImage(t, res) })

	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	extract(t, res, rootfs)
	host := filepath.Join(tmp, "host")
	binDir, confDir := filepath.Join(host, "opt/cni/bin"), filepath.Join(host, "etc/cni/net.d")
	for _, d := range []string{binDir, confDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	binds := map[string]string{"/host/opt/cni/bin": binDir, "/host/etc/cni/net.d": confDir}
	install := step{Argv: []string{"azure-cni-install", "install", "--bin-dir=/host/opt/cni/bin", "--conf-dir=/host/etc/cni/net.d"}}
	out, err := runInImage(t, rootfs, binds, nil, install)
	if err != nil {
		t.Fatalf("install in the image: %v\n%s", err, out)
	}
	for _, f := range []struct{ host, src string }{
		{filepath.Join(binDir, "azure-vnet"), filepath.Join(tmp, "root/out/azure-vnet")},
		{filepath.Join(binDir, "azure-vnet-ipam"), filepath.Join(tmp, "root/out/azure-vnet-ipam")},
		{filepath.Join(binDir, "portmap"), filepath.Join(rootfs, "usr/lib/cni/portmap")},
		{filepath.Join(binDir, "loopback"), filepath.Join(rootfs, "usr/lib/cni/loopback")},
		{filepath.Join(confDir, "10-azure.conflist"), filepath.Join(repoRoot(t), "deploy/cni/10-azure.conflist")},
	} {
		got, err := os.ReadFile(f.host)
		if err != nil {
			t.Errorf("not installed: %v", err)
			continue
		}
		want, _ := os.ReadFile(f.src)
		if !bytes.Equal(got, want) || len(want) == 0 {
			t.Errorf("%s differs from %s", f.host, f.src)
		}
	}
	// The installed plugin runs on the host.
	ver := exec.Command(filepath.Join(binDir, "azure-vnet"))
	ver.Env = []string{"CNI_COMMAND=VERSION"}
	ver.Stdin = strings.NewReader(`{"cniVersion":"1.0.0"}`)
	if vout, err := ver.Output(); err != nil || !strings.Contains(string(vout), "supportedVersions") {
		t.Errorf("installed azure-vnet, CNI_COMMAND=VERSION: %v %s", err, vout)
	}
	// portmap is Debian's, dynamically linked against the host's libc.
	pm := exec.Command(filepath.Join(binDir, "portmap"))
	pm.Env = []string{"CNI_COMMAND=VERSION"}
	pm.Stdin = strings.NewReader(`{"cniVersion":"1.0.0"}`)
	if pout, err := pm.Output(); err != nil || !strings.Contains(string(pout), "supportedVersions") {
		t.Errorf("installed portmap, CNI_COMMAND=VERSION: %v %s", err, pout)
	}

	out, err = runInImage(t, rootfs, binds, nil, install)
	if err != nil {
		t.Fatalf("second install: %v\n%s", err, out)
	}
	if strings.Contains(out, "installed /") || strings.Count(out, "unchanged ") != 5 {
		t.Errorf("second run should leave all 5 files unchanged:\n%s", out)
	}
	out, err = runInImage(t, rootfs, binds, nil, step{Argv: []string{"azure-cni-install", "--version"}})
	if err != nil || !strings.Contains(out, "azure-cni-install "+testVersion) {
		t.Errorf("--version: %v\n%s", err, out)
	}
}
