// Package ociimage builds container images as tarballs without a registry or
// a container daemon: a file tree (host files, in-memory files, directories,
// symlinks) becomes one layer, a config (entrypoint, env, labels, user) is
// set on it, and the result is written as an OCI image layout tarball that
// also carries `docker save`'s manifest.json, so that `ctr images import`,
// `docker load` and `podman load` all accept it.
//
// Builds are reproducible: entries are written in sorted order, owned by
// 0:0, with one fixed timestamp (Config.Created) on every entry and in the
// config, so the same inputs always give the same image digest.
package ociimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Entry is one file system entry of a Tree.
type Entry struct {
	// Mode holds the permission bits and the type: fs.ModeDir, fs.ModeSymlink,
	// or neither for a regular file.
	Mode fs.FileMode
	// Link is a symlink's target.
	Link string
	// Source is the host file a regular file's content is read from when
	// the layer is written; Data is used when Source is empty.
	Source string
	Data   []byte
}

// permBits are the mode bits an entry keeps besides its type.
const permBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// Tree is the content of one layer, keyed by clean slash-separated paths
// relative to the image root ("usr/bin/azure-npm").
type Tree struct {
	entries map[string]Entry
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{entries: map[string]Entry{}} }

// cleanPath turns "/usr/bin/x" or "usr/bin/x/" into "usr/bin/x"; "" for
// the root itself and an error for a path that climbs out of it.
func cleanPath(p string) (string, error) {
	for _, elem := range strings.Split(filepath.ToSlash(p), "/") {
		if elem == ".." {
			return "", fmt.Errorf("path %q: no .. allowed in an image path", p)
		}
	}
	return strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(p)), "/"), nil
}

// Add puts an entry at p, replacing one already there, and creates missing
// parent directories (0755).
func (t *Tree) Add(p string, e Entry) error {
	c, err := cleanPath(p)
	if err != nil {
		return err
	}
	if c == "" {
		return errors.New("cannot add the image root as an entry")
	}
	if e.Mode&fs.ModeType&^(fs.ModeDir|fs.ModeSymlink) != 0 {
		return fmt.Errorf("%s: unsupported file type %s", p, e.Mode.Type())
	}
	if e.Mode&fs.ModeSymlink != 0 && e.Link == "" {
		return fmt.Errorf("%s: symlink without a target", p)
	}
	for dir := path.Dir(c); dir != "."; dir = path.Dir(dir) {
		if old, ok := t.entries[dir]; ok {
			if !old.Mode.IsDir() {
				return fmt.Errorf("%s: parent %s is not a directory", p, dir)
			}
			continue
		}
		t.entries[dir] = Entry{Mode: fs.ModeDir | 0o755}
	}
	if old, ok := t.entries[c]; ok && old.Mode.IsDir() && !e.Mode.IsDir() && t.hasChildren(c) {
		return fmt.Errorf("%s: cannot replace a non-empty directory", p)
	}
	t.entries[c] = e
	return nil
}

func (t *Tree) hasChildren(dir string) bool {
	for p := range t.entries {
		if strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// AddFile adds the host file src at p with mode perm.
func (t *Tree) AddFile(p, src string, perm fs.FileMode) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	return t.Add(p, Entry{Mode: perm & permBits, Source: src})
}

// AddHostTree adds every entry under the host directory dir at prefix in the
// image, keeping modes and symlinks. Paths (relative to dir, slash-separated)
// for which skip returns true are left out, with everything below them.
func (t *Tree) AddHostTree(dir, prefix string, skip func(rel string) bool) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		dst := path.Join(prefix, rel)
		switch {
		case info.IsDir():
			return t.Add(dst, Entry{Mode: fs.ModeDir | info.Mode()&permBits})
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return t.Add(dst, Entry{Mode: fs.ModeSymlink | 0o777, Link: target})
		case info.Mode().IsRegular():
			return t.Add(dst, Entry{Mode: info.Mode() & permBits, Source: p})
		default:
			return fmt.Errorf("%s: unsupported file type %s", p, info.Mode().Type())
		}
	})
}

// Lookup returns the entry at p.
func (t *Tree) Lookup(p string) (Entry, bool) {
	c, err := cleanPath(p)
	if err != nil {
		return Entry{}, false
	}
	e, ok := t.entries[c]
	return e, ok
}

// Paths lists every entry's path in sorted order.
func (t *Tree) Paths() []string {
	paths := make([]string, 0, len(t.entries))
	for p := range t.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}

// resolve follows symlinks inside the tree (absolute targets are relative to
// the image root, as they would be in the container) to a non-link entry.
func (t *Tree) resolve(p string) (string, Entry, error) {
	c, err := cleanPath(p)
	if err != nil {
		return "", Entry{}, err
	}
	for range 40 {
		e, ok := t.entries[c]
		if !ok {
			return "", Entry{}, fmt.Errorf("%s: not in the image", p)
		}
		if e.Mode&fs.ModeSymlink == 0 {
			return c, e, nil
		}
		target := e.Link
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(c), target)
		}
		if c, err = cleanPath(target); err != nil {
			return "", Entry{}, err
		}
	}
	return "", Entry{}, fmt.Errorf("%s: too many levels of symbolic links", p)
}

// ReadFile returns the content of the regular file at p, following symlinks
// inside the tree.
func (t *Tree) ReadFile(p string) ([]byte, error) {
	_, e, err := t.resolve(p)
	if err != nil {
		return nil, err
	}
	if !e.Mode.IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	if e.Source != "" {
		return os.ReadFile(e.Source)
	}
	return e.Data, nil
}

// SHA256Sums returns, in sha256sum's format ("<hex>  <path>\n", sorted by
// path), the checksum of every regular file or symlink to one below each dir,
// with paths relative to base. The installer verifies what it copies against
// such a file baked into the image.
func (t *Tree) SHA256Sums(base string, dirs ...string) ([]byte, error) {
	b, err := cleanPath(base)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, p := range t.Paths() {
		in := false
		for _, d := range dirs {
			dc, err := cleanPath(d)
			if err != nil {
				return nil, err
			}
			if strings.HasPrefix(p, dc+"/") {
				in = true
			}
		}
		if !in || t.entries[p].Mode.IsDir() {
			continue
		}
		data, err := t.ReadFile(p)
		if err != nil {
			return nil, err
		}
		rel := strings.TrimPrefix(p, b+"/")
		if b == "" {
			rel = p
		}
		sum := sha256.Sum256(data)
		lines = append(lines, hex.EncodeToString(sum[:])+"  "+rel+"\n")
	}
	return []byte(strings.Join(lines, "")), nil
}

// Tar writes the tree as an uncompressed tar stream: entries in sorted path
// order, owner 0:0 without names, every timestamp set to mtime.
func (t *Tree) Tar(w io.Writer, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, p := range t.Paths() {
		e := t.entries[p]
		h := &tar.Header{Name: p, Mode: tarMode(e.Mode), ModTime: mtime, Format: tar.FormatPAX}
		var data []byte
		switch {
		case e.Mode.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, p+"/"
		case e.Mode&fs.ModeSymlink != 0:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.Link
		default:
			h.Typeflag = tar.TypeReg
			if e.Source != "" {
				var err error
				if data, err = os.ReadFile(e.Source); err != nil {
					return err
				}
			} else {
				data = e.Data
			}
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar %s: %w", p, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("tar %s: %w", p, err)
		}
	}
	return tw.Close()
}

// tarMode is the tar header mode of m: permission, setuid, setgid, sticky.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	for bit, flag := range map[fs.FileMode]int64{fs.ModeSetuid: 0o4000, fs.ModeSetgid: 0o2000, fs.ModeSticky: 0o1000} {
		if m&bit != 0 {
			mode |= flag
		}
	}
	return mode
}

// Config is the image's runtime configuration and metadata.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	Labels     map[string]string
	User       string
	WorkingDir string
	// Created is the image's creation time and every entry's mtime; the zero
	// value means the Unix epoch, so that builds are reproducible.
	Created time.Time
	// OS and Architecture default to linux/amd64.
	OS, Architecture string
	// History is the layer's "created by" note.
	History string
}

func (c Config) created() time.Time {
	if c.Created.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return c.Created.UTC()
}

// Build returns a single-layer image of tree with cfg.
func Build(tree *Tree, cfg Config) (v1.Image, error) {
	var buf bytes.Buffer
	if err := tree.Tar(&buf, cfg.created()); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: cfg.created()}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: created, CreatedBy: cfg.History, Comment: "built by internal/ociimage"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if cfg.OS != "" {
		cf.OS = cfg.OS
	}
	if cfg.Architecture != "" {
		cf.Architecture = cfg.Architecture
	}
	cf.Created = created
	cf.Config = v1.Config{
		Entrypoint: cfg.Entrypoint,
		Cmd:        cfg.Cmd,
		Env:        cfg.Env,
		Labels:     cfg.Labels,
		User:       cfg.User,
		WorkingDir: cfg.WorkingDir,
	}
	return mutate.ConfigFile(img, cf)
}

// WriteTarball writes img under each of refs (e.g.
// "ghcr.io/open-acn/azure-npm:v1.2.3") to file, through a temporary file
// renamed into place. The tarball is an OCI image layout (index.json, whose
// entries carry the references as annotations, and blobs/sha256/) that also
// has the manifest.json of `docker save`, like the archives of docker >= 25:
// `ctr images import` reads the layout and keeps the image's digest, and
// `docker load` reads manifest.json. Its bytes depend only on img and refs.
func WriteTarball(file string, img v1.Image, refs ...string) error {
	if len(refs) == 0 {
		return errors.New("an image tarball needs at least one reference")
	}
	var tags []name.Tag
	for _, r := range refs {
		tag, err := name.NewTag(r, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("image reference %q: %w (want registry/repository:tag)", r, err)
		}
		tags = append(tags, tag)
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	type blob struct {
		path string
		data []byte
	}
	blobPath := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	blobs := []blob{{blobPath(configName), config}, {blobPath(digest), manifest}}
	var layerPaths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		blobs = append(blobs, blob{blobPath(d), data})
		layerPaths = append(layerPaths, blobPath(d))
	}
	var index v1.IndexManifest
	index.SchemaVersion, index.MediaType = 2, types.OCIImageIndex
	var repoTags []string
	for _, tag := range tags {
		index.Manifests = append(index.Manifests, v1.Descriptor{
			MediaType: mediaType, Digest: digest, Size: int64(len(manifest)),
			Annotations: map[string]string{
				"io.containerd.image.name":          tag.Name(),
				"org.opencontainers.image.ref.name": tag.TagStr(),
			},
		})
		repoTags = append(repoTags, tag.Name())
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	dockerJSON, err := json.Marshal([]tarball.Descriptor{{Config: blobPath(configName), RepoTags: repoTags, Layers: layerPaths}})
	if err != nil {
		return err
	}
	blobs = append(blobs,
		blob{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		blob{"index.json", indexJSON},
		blob{"manifest.json", dockerJSON})
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].path < blobs[j].path })

	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	dirs := map[string]bool{}
	for _, b := range blobs {
		if dir := path.Dir(b.path); dir != "." {
			for _, d := range []string{path.Dir(dir), dir} {
				if d != "." && !dirs[d] {
					dirs[d] = true
					if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
						tmp.Close()
						return err
					}
				}
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: b.path, Mode: 0o644, Size: int64(len(b.data)), ModTime: time.Unix(0, 0)}); err != nil {
			tmp.Close()
			return err
		}
		if _, err := tw.Write(b.data); err != nil {
			tmp.Close()
			return fmt.Errorf("write %s: %w", file, err)
		}
	}
	if err := tw.Close(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}
