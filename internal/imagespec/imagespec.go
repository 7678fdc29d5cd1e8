// Package imagespec describes one of the project's images in a directory
// (images/<name>/): image.json says what goes in (Debian packages, our
// binaries, symlinks, directories, runtime config) and packages.lock pins the
// Debian packages. Build assembles the image from them with internal/debpkg
// and internal/ociimage; Dockerfile renders the same recipe for docker or
// buildah users, so the two are generated from one source and cannot drift.
package imagespec

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/open-acn/acn/internal/debpkg"
	"github.com/open-acn/acn/internal/ociimage"
)

// Spec is image.json.
type Spec struct {
	// Name is the repository the manifests use (tagged with the version).
	Name string `json:"name"`
	// Debian is the release the packages come from (the Dockerfile's base,
	// debian:<Debian>-slim).
	Debian string `json:"debian"`
	// Packages are the Debian packages wanted; packages.lock pins them and,
	// unless SkipDependencies, their dependencies' closure.
	Packages []string `json:"packages"`
	// SkipDependencies locks only Packages: for files that run on the host
	// with the host's libraries, not in the image.
	SkipDependencies bool `json:"skipDependencies,omitempty"`
	// Keep, when set, takes only these paths (and what is below them) from
	// the packages; otherwise everything but Exclude.
	Keep    []string `json:"keep,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	// Files are copied from the repository (Src relative to its root).
	Files []File `json:"files,omitempty"`
	// Content is written from the spec itself.
	Content  []Content `json:"content,omitempty"`
	Dirs     []Dir     `json:"dirs,omitempty"`
	Symlinks []Symlink `json:"symlinks,omitempty"`
	// Checksums, when set, writes a sha256sum-format file of the files
	// below Dirs (paths relative to Base), for the installer to verify.
	Checksums *Checksums `json:"checksums,omitempty"`

	Entrypoint []string          `json:"entrypoint"`
	Cmd        []string          `json:"cmd,omitempty"`
	Env        []string          `json:"env,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	User       string            `json:"user"`
	WorkingDir string            `json:"workingDir,omitempty"`
}

// File is a repository file put into the image.
type File struct {
	Src  string `json:"src"`
	Dst  string `json:"dst"`
	Mode string `json:"mode"`
}

// Content is a small file written from the spec.
type Content struct {
	Dst  string `json:"dst"`
	Data string `json:"data"`
	Mode string `json:"mode"`
}

// Dir is an empty directory (a mount point, /tmp).
type Dir struct {
	Path string `json:"path"`
	Mode string `json:"mode"`
}

// Symlink is what a postinst (update-alternatives) would create.
type Symlink struct {
	Path   string `json:"path"`
	Target string `json:"target"`
}

// Checksums describes the checksum file the image carries.
type Checksums struct {
	File string   `json:"file"`
	Base string   `json:"base"`
	Dirs []string `json:"dirs"`
}

// VersionLabel carries the version in every image's config.
const VersionLabel = "org.opencontainers.image.version"

// Image is a loaded image directory.
type Image struct {
	Dir  string // images/<name>
	Spec Spec
	Lock []debpkg.Package
}

// LockFile and SpecFile are the names of the two inputs in an image directory.
const (
	SpecFile       = "image.json"
	LockFile       = "packages.lock"
	DockerfileName = "Dockerfile"
)

// LoadSpec reads and checks dir/image.json.
func LoadSpec(dir string) (*Spec, error) {
	data, err := os.ReadFile(filepath.Join(dir, SpecFile))
	if err != nil {
		return nil, err
	}
	var s Spec
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SpecFile), err)
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, SpecFile), err)
	}
	return &s, nil
}

// Load reads and checks dir/image.json and dir/packages.lock.
func Load(dir string) (*Image, error) {
	s, err := LoadSpec(dir)
	if err != nil {
		return nil, err
	}
	im := &Image{Dir: dir, Spec: *s}
	f, err := os.Open(filepath.Join(dir, LockFile))
	if err != nil {
		return nil, fmt.Errorf("%w (create it with `go run ./hack/imagebuild lock %s`)", err, dir)
	}
	defer f.Close()
	if im.Lock, err = debpkg.ParseLock(f); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	locked := map[string]bool{}
	for _, p := range im.Lock {
		locked[p.Name] = true
	}
	for _, p := range im.Spec.Packages {
		if !locked[p] {
			return nil, fmt.Errorf("%s: package %s of image.json is not locked (run `go run ./hack/imagebuild lock %s`)", f.Name(), p, dir)
		}
	}
	return im, nil
}

func parseMode(s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("mode %q: want octal like 0755", s)
	}
	m := fs.FileMode(n & 0o777)
	for bit, flag := range map[uint64]fs.FileMode{0o4000: fs.ModeSetuid, 0o2000: fs.ModeSetgid, 0o1000: fs.ModeSticky} {
		if n&bit != 0 {
			m |= flag
		}
	}
	return m, nil
}

func (s *Spec) validate() error {
	if s.Name == "" || s.Debian == "" || len(s.Entrypoint) == 0 || s.User == "" {
		return fmt.Errorf("name, debian, entrypoint and user are required")
	}
	for _, f := range s.Files {
		if _, err := parseMode(f.Mode); err != nil {
			return fmt.Errorf("file %s: %w", f.Dst, err)
		}
		if f.Src == "" || !path.IsAbs(f.Dst) {
			return fmt.Errorf("file %q -> %q: want a source and an absolute destination", f.Src, f.Dst)
		}
	}
	for _, c := range s.Content {
		if _, err := parseMode(c.Mode); err != nil {
			return fmt.Errorf("content %s: %w", c.Dst, err)
		}
		if !strings.HasSuffix(c.Data, "\n") || !path.IsAbs(c.Dst) {
			return fmt.Errorf("content %s: want an absolute path and text ending in a newline", c.Dst)
		}
	}
	for _, d := range s.Dirs {
		if _, err := parseMode(d.Mode); err != nil {
			return fmt.Errorf("dir %s: %w", d.Path, err)
		}
	}
	for _, l := range s.Symlinks {
		if s.Checksums != nil && path.IsAbs(l.Target) {
			// The Dockerfile checksums inside a staging directory, where
			// an absolute target would point at the build stage's own files.
			return fmt.Errorf("symlink %s: want a relative target, not %s", l.Path, l.Target)
		}
	}
	return nil
}

// Options of Build.
type Options struct {
	RepoRoot string    // where Files' sources are
	CacheDir string    // downloaded .debs (kept between builds)
	WorkDir  string    // scratch space (extracted packages)
	Version  string    // the tag and the version label
	Created  time.Time // image creation time; zero: the epoch
}

// skip returns the filter of extracted package paths.
func (s *Spec) skip(rel string) bool {
	under := func(p, prefix string) bool {
		prefix = strings.Trim(prefix, "/")
		return p == prefix || strings.HasPrefix(p, prefix+"/")
	}
	for _, ex := range s.Exclude {
		if under(rel, ex) {
			return true
		}
	}
	if len(s.Keep) == 0 {
		return false
	}
	for _, k := range s.Keep {
		if under(rel, k) || under(strings.Trim(k, "/"), rel) {
			return false // kept, or a directory above a kept path
		}
	}
	return true
}

// Ref is the image reference for version.
func (im *Image) Ref(version string) string { return im.Spec.Name + ":" + version }

// Tree assembles the image's file tree.
func (im *Image) Tree(ctx context.Context, o Options) (*ociimage.Tree, error) {
	s := &im.Spec
	debs, err := debpkg.Fetch(ctx, im.Lock, o.CacheDir)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(o.WorkDir, "pkgroot")
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}
	if err := debpkg.Extract(ctx, debs, root); err != nil {
		return nil, err
	}
	tree := ociimage.NewTree()
	if err := tree.AddHostTree(root, "", s.skip); err != nil {
		return nil, err
	}
	for _, k := range s.Keep {
		if _, ok := tree.Lookup(k); !ok {
			return nil, fmt.Errorf("keep %s: no package of %s has it", k, filepath.Join(im.Dir, LockFile))
		}
	}
	for _, d := range s.Dirs {
		m, _ := parseMode(d.Mode)
		if err := tree.Add(d.Path, ociimage.Entry{Mode: fs.ModeDir | m}); err != nil {
			return nil, err
		}
	}
	for _, f := range s.Files {
		m, _ := parseMode(f.Mode)
		if err := tree.AddFile(f.Dst, filepath.Join(o.RepoRoot, f.Src), m); err != nil {
			return nil, fmt.Errorf("%w (build it first: make images builds what the images hold)", err)
		}
	}
	for _, c := range s.Content {
		m, _ := parseMode(c.Mode)
		if err := tree.Add(c.Dst, ociimage.Entry{Mode: m, Data: []byte(c.Data)}); err != nil {
			return nil, err
		}
	}
	for _, l := range s.Symlinks {
		if err := tree.Add(l.Path, ociimage.Entry{Mode: fs.ModeSymlink | 0o777, Link: l.Target}); err != nil {
			return nil, err
		}
	}
	if c := s.Checksums; c != nil {
		sums, err := tree.SHA256Sums(c.Base, c.Dirs...)
		if err != nil {
			return nil, fmt.Errorf("checksums: %w", err)
		}
		if err := tree.Add(c.File, ociimage.Entry{Mode: 0o644, Data: sums}); err != nil {
			return nil, err
		}
	}
	return tree, nil
}

// Config is the image's runtime config for version.
func (im *Image) Config(version string, created time.Time) ociimage.Config {
	s := &im.Spec
	labels := map[string]string{VersionLabel: version}
	for k, v := range s.Labels {
		labels[k] = v
	}
	return ociimage.Config{
		Entrypoint: s.Entrypoint,
		Cmd:        s.Cmd,
		Env:        s.Env,
		Labels:     labels,
		User:       s.User,
		WorkingDir: s.WorkingDir,
		Created:    created,
		History:    "go run ./hack/imagebuild build " + filepath.ToSlash(im.Dir),
	}
}

// Result is what Build wrote.
type Result struct {
	File, Ref, Digest string
	Size              int64 // bytes of the tarball
}

// Build writes the image tarball to file.
func (im *Image) Build(ctx context.Context, o Options, file string) (Result, error) {
	if o.Version == "" {
		return Result{}, fmt.Errorf("no version given")
	}
	tree, err := im.Tree(ctx, o)
	if err != nil {
		return Result{}, err
	}
	img, err := ociimage.Build(tree, im.Config(o.Version, o.Created))
	if err != nil {
		return Result{}, err
	}
	ref := im.Ref(o.Version)
	if err := ociimage.WriteTarball(file, img, ref); err != nil {
		return Result{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return Result{}, err
	}
	st, err := os.Stat(file)
	if err != nil {
		return Result{}, err
	}
	return Result{File: file, Ref: ref, Digest: d.String(), Size: st.Size()}, nil
}
