//go:build linux

package realcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/open-acn/acn/internal/ociimage"
)

// The images every node gets besides the product's: the sandbox image
// containerd's CRI runs for each pod (sandbox_image) and the image the
// upstream e2e suite runs (test/utils/image of the pinned k8s.io/kubernetes
// names agnhost 2.59).
const (
	PauseImage   = "registry.k8s.io/pause:3.10.1"
	AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.59"
	// ConformanceAgnhostImage is the tag the network-policy-api
	// conformance manifests name: the same agnhost, plus a /bin/bash shim
	// (test/images/shellshim) for their `/bin/bash -c` commands.
	ConformanceAgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.45"
)

// TestImages builds the pause and agnhost image tarballs into dir, from
// test/images/pause and the agnhost that hack/build-tools.sh built from
// the pinned module, and returns their paths. An image newer than its
// binary is kept.
func TestImages(root, toolsDir, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pause := filepath.Join(dir, "pause")
	shell := filepath.Join(dir, "bash")
	for bin, pkg := range map[string]string{pause: "./test/images/pause", shell: "./test/images/shellshim"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %v: %s", pkg, err, out)
		}
	}
	agnhost := filepath.Join(toolsDir, "agnhost")
	if _, err := os.Stat(agnhost); err != nil {
		return nil, fmt.Errorf("agnhost not built in %s: run `hack/build-tools.sh node`", toolsDir)
	}
	images := []struct {
		file, ref, bin string
		entrypoint     []string
		cmd            []string
		extra          map[string]string
	}{
		{"pause.tar", PauseImage, pause, []string{"/pause"}, nil, nil},
		// As upstream's agnhost image: the binary at /agnhost, pause by default.
		{"agnhost.tar", AgnhostImage, agnhost, []string{"/agnhost"}, []string{"pause"}, nil},
		{"agnhost-conformance.tar", ConformanceAgnhostImage, agnhost, []string{"/agnhost"}, []string{"pause"}, map[string]string{"/bin/bash": shell}},
	}
	var files []string
	for _, im := range images {
		file := filepath.Join(dir, im.file)
		files = append(files, file)
		content := map[string]string{"/" + filepath.Base(im.bin): im.bin}
		fresh := newer(file, im.bin)
		for p, src := range im.extra {
			content[p] = src
			fresh = fresh && newer(file, src)
		}
		if fresh {
			continue
		}
		if err := writeImage(file, im.ref, content, im.entrypoint, im.cmd); err != nil {
			return nil, fmt.Errorf("image %s: %w", im.ref, err)
		}
	}
	return files, nil
}

// newer reports whether file exists and is newer than src.
func newer(file, src string) bool {
	a, err := os.Stat(file)
	if err != nil {
		return false
	}
	b, err := os.Stat(src)
	return err == nil && a.ModTime().After(b.ModTime())
}

// writeImage writes a one-layer image holding files (image path -> host
// file, each 0755) to file, tagged ref, in the format `ctr images import`
// reads.
func writeImage(file, ref string, files map[string]string, entrypoint, cmd []string) error {
	tree := ociimage.NewTree()
	for p, src := range files {
		if err := tree.AddFile(p, src, 0o755); err != nil {
			return err
		}
	}
	img, err := ociimage.Build(tree, ociimage.Config{Entrypoint: entrypoint, Cmd: cmd})
	if err != nil {
		return err
	}
	return ociimage.WriteTarball(file, img, ref)
}
