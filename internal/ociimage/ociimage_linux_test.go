//go:build linux

package ociimage

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/open-acn/acn/internal/ociimage/containerdtest"
)

// TestContainerdImport imports a built tarball into a throw-away containerd
// (Debian's, as the nodes run it) and checks the reference and digest.
func TestContainerdImport(t *testing.T) {
	ctrd := containerdtest.Start(t)
	file := filepath.Join(t.TempDir(), "img.tar")
	img, err := Build(sampleTree(t), sampleConfig)
	must(t, err)
	must(t, WriteTarball(file, img, "example.com/test/img:v1"))
	names, err := ctrd.Import(file)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(names, []string{"example.com/test/img:v1"}) {
		t.Errorf("images after import %v, want [example.com/test/img:v1]", names)
	}
	digest, err := img.Digest()
	must(t, err)
	out, err := ctrd.Ctr("-n", "k8s.io", "images", "list")
	must(t, err)
	if !strings.Contains(out, digest.String()) {
		t.Errorf("containerd lists the image without our digest %s:\n%s", digest, out)
	}
}
