// Package install puts the CNI plugins and a conflist from the azure-cni
// image onto the host (hostPath mounts of /opt/cni/bin and /etc/cni/net.d).
//
// The image carries its payload under one source directory: bin/ (plugins),
// conf/ (conflists) and SHA256SUMS, written when the image was built. Run
// verifies every listed file against SHA256SUMS and checks that the target
// directories are writable before it writes anything, so a corrupt image or
// an unusable host installs nothing. Each file is written to a temporary
// file in its target directory, fsynced, renamed over the target and the
// directory fsynced: the container runtime either sees the old file or the
// complete new one, never a half-written plugin. The conflist is written
// last, so that a runtime which sees it finds the plugins it names.
// Identical files are left alone (same inode, same mtime): re-running
// changes nothing.
package install

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// SumsFile is the checksum file in the source directory.
const SumsFile = "SHA256SUMS"

// tempPrefix starts the name of every temporary file Run creates.
const tempPrefix = ".azure-cni-install-"

// Options says what to install where.
type Options struct {
	// SourceDir holds bin/, conf/ and SHA256SUMS (the image's /opt/azure-cni).
	SourceDir string
	// BinDir and ConfDir are the host's plugin and network config dirs.
	BinDir, ConfDir string
	// Conflist is the file of conf/ to install (e.g. 10-azure.conflist),
	// and the name it gets in ConfDir.
	Conflist string
	// ConflistFile, when set, is installed as Conflist instead of the
	// image's (a ConfigMap mounted into the pod: another IPAM environment,
	// another CIDR). It is checked to be a network configuration list
	// before anything is written.
	ConflistFile string
	// ForceConflist replaces an existing conflist of the same name that
	// differs; without it that conflist is kept (and reported).
	ForceConflist bool
	// Log receives one line per action; nil discards.
	Log io.Writer
}

// Action is what happened to one target file.
type Action string

const (
	Installed Action = "installed"
	Unchanged Action = "unchanged"
	ModeFixed Action = "mode fixed"
	// Kept: a different conflist was there and ForceConflist was not set.
	Kept Action = "kept"
)

// Result maps each target path to its Action.
type Result map[string]Action

// file is one planned copy.
type file struct {
	src, dst string
	mode     os.FileMode
	data     []byte
	conflist bool
}

// ReadSums parses a sha256sum-format file: "<64 hex>  <relative path>".
func ReadSums(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("checksum manifest: %w", err)
	}
	sums := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		sum, rel, ok := strings.Cut(line, "  ")
		if _, err := hex.DecodeString(sum); !ok || err != nil || len(sum) != 64 || rel == "" ||
			filepath.IsAbs(rel) || strings.Contains(rel, "..") {
			return nil, fmt.Errorf("checksum manifest %s line %d: %q is not \"<sha256>  <relative path>\"", path, n, line)
		}
		if _, dup := sums[rel]; dup {
			return nil, fmt.Errorf("checksum manifest %s: %s listed twice", path, rel)
		}
		sums[rel] = sum
	}
	if len(sums) == 0 {
		return nil, fmt.Errorf("checksum manifest %s lists no file", path)
	}
	return sums, nil
}

// plan reads and verifies every file the manifest lists and returns the
// copies to make: every bin/ file, and conf/<Conflist>.
func plan(o Options) ([]file, error) {
	sums, err := ReadSums(filepath.Join(o.SourceDir, SumsFile))
	if err != nil {
		return nil, err
	}
	rels := make([]string, 0, len(sums))
	for rel := range sums {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	var files []file
	var conflists []string
	for _, rel := range rels {
		src := filepath.Join(o.SourceDir, rel)
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", rel, err)
		}
		h := sha256.Sum256(data)
		if got := hex.EncodeToString(h[:]); got != sums[rel] {
			return nil, fmt.Errorf("source %s is corrupt: sha256 %s, the manifest says %s", rel, got, sums[rel])
		}
		dir, base := filepath.Split(rel)
		switch filepath.Clean(dir) {
		case "bin":
			files = append(files, file{src: src, dst: filepath.Join(o.BinDir, base), mode: 0o755, data: data})
		case "conf":
			conflists = append(conflists, base)
			if base == o.Conflist {
				files = append(files, file{src: src, dst: filepath.Join(o.ConfDir, base), mode: 0o644, data: data, conflist: true})
			}
		}
	}
	if o.ConflistFile != "" {
		if o.Conflist == "" || strings.ContainsRune(o.Conflist, '/') || filepath.Ext(o.Conflist) != ".conflist" {
			return nil, fmt.Errorf("conflist name %q: want a file name ending in .conflist", o.Conflist)
		}
		data, err := os.ReadFile(o.ConflistFile)
		if err != nil {
			return nil, fmt.Errorf("conflist file: %w", err)
		}
		if err := checkConflist(data); err != nil {
			return nil, fmt.Errorf("conflist file %s: %w", o.ConflistFile, err)
		}
		files = slices.DeleteFunc(files, func(f file) bool { return f.conflist })
		files = append(files, file{src: o.ConflistFile, dst: filepath.Join(o.ConfDir, o.Conflist), mode: 0o644, data: data, conflist: true})
	} else if o.Conflist == "" || strings.ContainsRune(o.Conflist, '/') || !contains(conflists, o.Conflist) {
		return nil, fmt.Errorf("conflist %q is not in the image (it has %s)", o.Conflist, strings.Join(conflists, ", "))
	}
	if len(files) == 1 {
		return nil, fmt.Errorf("checksum manifest lists no plugin under bin/")
	}
	// Plugins first, the conflist last.
	sort.SliceStable(files, func(i, j int) bool { return !files[i].conflist && files[j].conflist })
	return files, nil
}

// checkConflist accepts a CNI network configuration list: a JSON object
// with cniVersion, name and at least one plugin, each with a type.
func checkConflist(data []byte) error {
	var c struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("not a JSON network configuration list: %w", err)
	}
	if c.CNIVersion == "" || c.Name == "" || len(c.Plugins) == 0 {
		return fmt.Errorf("want cniVersion, name and plugins")
	}
	for i, p := range c.Plugins {
		if t, _ := p["type"].(string); t == "" {
			return fmt.Errorf("plugin %d has no type", i)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// checkWritable creates the directory if needed and proves that a file can
// be created and renamed there.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("target directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, tempPrefix+"probe-")
	if err != nil {
		return fmt.Errorf("target directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("target directory %s: %w", dir, err)
	}
	return nil
}

// removeStaleTemps removes temporary files an interrupted earlier run left.
func removeStaleTemps(dir string) {
	stale, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	for _, f := range stale {
		_ = os.Remove(f)
	}
}

// Run installs; see the package comment. On error nothing was written
// unless the error says which file failed while writing.
func Run(o Options) (Result, error) {
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	files, err := plan(o)
	if err != nil {
		return nil, fmt.Errorf("%w; nothing installed", err)
	}
	for _, dir := range []string{o.BinDir, o.ConfDir} {
		if err := checkWritable(dir); err != nil {
			return nil, fmt.Errorf("%w; nothing installed", err)
		}
		removeStaleTemps(dir)
	}
	res := Result{}
	for _, f := range files {
		action, err := install(f, o.ForceConflist)
		if err != nil {
			return res, err
		}
		res[f.dst] = action
		switch action {
		case Kept:
			fmt.Fprintf(log, "kept %s: it differs from the image's %s (set --force-conflist to replace it)\n", f.dst, filepath.Base(f.src))
		default:
			fmt.Fprintf(log, "%s %s\n", action, f.dst)
		}
	}
	// The runtime uses the first config file in name order: say so when
	// another one takes precedence over ours.
	others, _ := os.ReadDir(o.ConfDir)
	for _, e := range others {
		ext := filepath.Ext(e.Name())
		if (ext == ".conf" || ext == ".conflist" || ext == ".json") && e.Name() < o.Conflist {
			fmt.Fprintf(log, "warning: %s sorts before %s: the container runtime uses it, not ours\n", filepath.Join(o.ConfDir, e.Name()), o.Conflist)
		}
	}
	return res, nil
}

// install puts one file in place.
func install(f file, force bool) (Action, error) {
	st, err := os.Lstat(f.dst)
	switch {
	case err == nil && st.Mode().IsRegular():
		cur, err := os.ReadFile(f.dst)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", f.dst, err)
		}
		if bytes.Equal(cur, f.data) {
			if st.Mode().Perm() == f.mode {
				return Unchanged, nil
			}
			if err := os.Chmod(f.dst, f.mode); err != nil {
				return "", fmt.Errorf("chmod %s: %w", f.dst, err)
			}
			return ModeFixed, nil
		}
		if f.conflist && !force {
			return Kept, nil
		}
	case err == nil && f.conflist && !force:
		return Kept, nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("stat %s: %w", f.dst, err)
	}
	if err := writeAtomic(f.dst, f.data, f.mode); err != nil {
		return "", fmt.Errorf("install %s: %w", f.dst, err)
	}
	return Installed, nil
}

// writeAtomic writes data to a temporary file next to dst, fsyncs it,
// renames it over dst and fsyncs the directory.
func writeAtomic(dst string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(dst)
	tmp, err := os.CreateTemp(dir, tempPrefix+filepath.Base(dst)+"-")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	done = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
