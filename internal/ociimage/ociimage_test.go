package ociimage

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// sampleTree has every entry kind, from a host tree, a host file and memory.
func sampleTree(t *testing.T) *Tree {
	t.Helper()
	host := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(host, "usr/lib/x"), 0o755))
	must(t, os.WriteFile(filepath.Join(host, "usr/lib/x/libx.so.1.0"), []byte("lib"), 0o644))
	must(t, os.Symlink("libx.so.1.0", filepath.Join(host, "usr/lib/x/libx.so.1")))
	must(t, os.MkdirAll(filepath.Join(host, "usr/share/doc/x"), 0o755))
	must(t, os.WriteFile(filepath.Join(host, "usr/share/doc/x/README"), []byte("doc"), 0o644))
	bin := filepath.Join(host, "bin-src")
	must(t, os.WriteFile(bin, []byte("#!/bin/true\n"), 0o600))

	tree := NewTree()
	must(t, tree.AddHostTree(filepath.Join(host, "usr"), "usr", func(rel string) bool { return rel == "share/doc" }))
	must(t, tree.AddFile("/usr/bin/tool", bin, 0o755))
	must(t, tree.Add("etc/passwd", Entry{Mode: 0o644, Data: []byte("root:x:0:0::/:/sbin/nologin\n")}))
	must(t, tree.Add("usr/sbin/tool", Entry{Mode: fs.ModeSymlink | 0o777, Link: "../bin/tool"}))
	must(t, tree.Add("tmp", Entry{Mode: fs.ModeDir | fs.ModeSticky | 0o777}))
	return tree
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var sampleConfig = Config{
	Entrypoint: []string{"tool", "start"},
	Cmd:        []string{"--flag"},
	Env:        []string{"PATH=/usr/bin:/usr/sbin"},
	Labels:     map[string]string{"org.opencontainers.image.version": "v1.2.3"},
	User:       "0",
	WorkingDir: "/",
	History:    "test",
}

// TestReproducible: two builds of the same inputs, from separately created
// host files (other mtimes, other order of addition), give the same digest
// and the same tarball bytes; changing one byte changes the digest.
func TestReproducible(t *testing.T) {
	dir := t.TempDir()
	build := func(file string, tree *Tree, cfg Config) string {
		img, err := Build(tree, cfg)
		must(t, err)
		must(t, WriteTarball(file, img, "example.com/test/img:v1"))
		d, err := img.Digest()
		must(t, err)
		return d.String()
	}
	a := build(filepath.Join(dir, "a.tar"), sampleTree(t), sampleConfig)
	time.Sleep(10 * time.Millisecond) // other host mtimes
	b := build(filepath.Join(dir, "b.tar"), sampleTree(t), sampleConfig)
	if a != b {
		t.Errorf("same inputs, digests %s and %s", a, b)
	}
	ta, _ := os.ReadFile(filepath.Join(dir, "a.tar"))
	tb, _ := os.ReadFile(filepath.Join(dir, "b.tar"))
	if !bytes.Equal(ta, tb) {
		t.Error("same inputs, different tarball bytes")
	}

	changed := sampleTree(t)
	must(t, changed.Add("etc/passwd", Entry{Mode: 0o644, Data: []byte("root:x:0:0::/:/bin/sh\n")}))
	if c := build(filepath.Join(dir, "c.tar"), changed, sampleConfig); c == a {
		t.Error("a changed file kept the digest")
	}
	cfg := sampleConfig
	cfg.Created = time.Unix(1700000000, 0)
	if c := build(filepath.Join(dir, "d.tar"), sampleTree(t), cfg); c == a {
		t.Error("another creation time kept the digest")
	}
}

// TestReadBack reads the tarball back as `docker load` would and checks the
// reference, the config and every layer entry.
func TestReadBack(t *testing.T) {
	file := filepath.Join(t.TempDir(), "img.tar")
	img, err := Build(sampleTree(t), sampleConfig)
	must(t, err)
	must(t, WriteTarball(file, img, "example.com/test/img:v1"))

	tag, _ := name.NewTag("example.com/test/img:v1")
	back, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatalf("the tarball does not hold example.com/test/img:v1: %v", err)
	}
	cf, err := back.ConfigFile()
	must(t, err)
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("platform %s/%s created %v, want linux/amd64 at the epoch", cf.OS, cf.Architecture, cf.Created)
	}
	c := cf.Config
	if !reflect.DeepEqual(c.Entrypoint, sampleConfig.Entrypoint) || !reflect.DeepEqual(c.Cmd, sampleConfig.Cmd) ||
		!reflect.DeepEqual(c.Env, sampleConfig.Env) || !reflect.DeepEqual(c.Labels, sampleConfig.Labels) ||
		c.User != "0" || c.WorkingDir != "/" {
		t.Errorf("config %+v, want %+v", c, sampleConfig)
	}

	type entry struct {
		typ  byte
		mode int64
		link string
		data string
	}
	got := map[string]entry{}
	var order []string
	layers, err := back.Layers()
	must(t, err)
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	must(t, err)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		data, _ := io.ReadAll(tr)
		got[h.Name] = entry{h.Typeflag, h.Mode, h.Linkname, string(data)}
		order = append(order, h.Name)
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: owner %d:%d mtime %v, want 0:0 at the epoch", h.Name, h.Uid, h.Gid, h.ModTime)
		}
	}
	want := map[string]entry{
		"etc/":                  {tar.TypeDir, 0o755, "", ""},
		"etc/passwd":            {tar.TypeReg, 0o644, "", "root:x:0:0::/:/sbin/nologin\n"},
		"tmp/":                  {tar.TypeDir, 0o1777, "", ""},
		"usr/":                  {tar.TypeDir, 0o755, "", ""},
		"usr/bin/":              {tar.TypeDir, 0o755, "", ""},
		"usr/bin/tool":          {tar.TypeReg, 0o755, "", "#!/bin/true\n"},
		"usr/lib/":              {tar.TypeDir, 0o755, "", ""},
		"usr/lib/x/":            {tar.TypeDir, 0o755, "", ""},
		"usr/lib/x/libx.so.1":   {tar.TypeSymlink, 0o777, "libx.so.1.0", ""},
		"usr/lib/x/libx.so.1.0": {tar.TypeReg, 0o644, "", "lib"},
		"usr/sbin/":             {tar.TypeDir, 0o755, "", ""},
		"usr/sbin/tool":         {tar.TypeSymlink, 0o777, "../bin/tool", ""},
		"usr/share/":            {tar.TypeDir, 0o755, "", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layer entries\n got %v\nwant %v", got, want)
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Errorf("entries not sorted: %s before %s", order[i-1], order[i])
		}
	}
}

func TestSHA256Sums(t *testing.T) {
	tree := NewTree()
	must(t, tree.Add("opt/p/bin/a", Entry{Mode: 0o755, Data: []byte("a")}))
	must(t, tree.Add("usr/lib/b", Entry{Mode: 0o755, Data: []byte("b")}))
	must(t, tree.Add("opt/p/bin/b", Entry{Mode: fs.ModeSymlink | 0o777, Link: "/usr/lib/b"}))
	must(t, tree.Add("opt/p/conf/c.conflist", Entry{Mode: 0o644, Data: []byte("{}")}))
	must(t, tree.Add("opt/p/other", Entry{Mode: 0o644, Data: []byte("not listed")}))
	got, err := tree.SHA256Sums("/opt/p", "/opt/p/bin", "opt/p/conf")
	must(t, err)
	want := "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb  bin/a\n" +
		"3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d  bin/b\n" +
		"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a  conf/c.conflist\n"
	if string(got) != want {
		t.Errorf("SHA256Sums:\n%s\nwant\n%s", got, want)
	}
	must(t, tree.Add("opt/p/bin/dangling", Entry{Mode: fs.ModeSymlink | 0o777, Link: "/nowhere"}))
	if _, err := tree.SHA256Sums("/opt/p", "/opt/p/bin"); err == nil || !strings.Contains(err.Error(), "not in the image") {
		t.Errorf("dangling symlink: err %v, want not in the image", err)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(*Tree) error
		want string
	}{
		{"dotdot", func(tr *Tree) error { return tr.Add("../etc/x", Entry{Mode: 0o644}) }, "no .. allowed"},
		{"root", func(tr *Tree) error { return tr.Add("/", Entry{Mode: fs.ModeDir | 0o755}) }, "image root"},
		{"symlink without target", func(tr *Tree) error { return tr.Add("a", Entry{Mode: fs.ModeSymlink}) }, "without a target"},
		{"device", func(tr *Tree) error { return tr.Add("dev/null", Entry{Mode: fs.ModeDevice | 0o666}) }, "unsupported file type"},
		{"parent is a file", func(tr *Tree) error {
			must(t, tr.Add("a", Entry{Mode: 0o644}))
			return tr.Add("a/b", Entry{Mode: 0o644})
		}, "not a directory"},
		{"replace a full dir", func(tr *Tree) error {
			must(t, tr.Add("d/f", Entry{Mode: 0o644}))
			return tr.Add("d", Entry{Mode: 0o644})
		}, "non-empty directory"},
		{"missing host file", func(tr *Tree) error { return tr.AddFile("x", "/nonexistent/file", 0o755) }, "no such file"},
		{"host dir as file", func(tr *Tree) error { return tr.AddFile("x", t.TempDir(), 0o755) }, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do(NewTree())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
	img, err := Build(NewTree(), Config{})
	must(t, err)
	file := filepath.Join(t.TempDir(), "x.tar")
	for _, ref := range []string{"", "UPPER/case:tag", "img"} {
		var refs []string
		if ref != "" {
			refs = []string{ref}
		}
		if err := WriteTarball(file, img, refs...); err == nil {
			t.Errorf("reference %q accepted", ref)
		}
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Errorf("reference %q: a tarball was left behind", ref)
		}
	}
}
