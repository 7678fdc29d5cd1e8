// Package debpkg turns a list of Debian packages into files for an image:
// Resolve computes the closure of their Depends/Pre-Depends with versions and
// checksums (a lock file, checked in), Fetch downloads exactly those .debs
// with `apt-get download` and verifies them, Extract unpacks them with
// `dpkg-deb -x`. Maintainer scripts are not run: an image that needs what a
// postinst would create (alternatives symlinks) declares it itself.
package debpkg

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Package is one pinned .deb.
type Package struct {
	Name, Version, Arch, SHA256 string
}

// FileName is the name apt-get download gives the .deb (an epoch's ':' is
// escaped as %3a).
func (p Package) FileName() string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Arch + ".deb"
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	versionRE = regexp.MustCompile(`^[A-Za-z0-9.+~:-]+$`)
	shaRE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ParseLock reads a lock file: one "name version arch sha256" per line,
// '#' comments and blank lines ignored.
func ParseLock(r io.Reader) ([]Package, error) {
	var pkgs []Package
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("line %d: %q: want name version arch sha256", n, line)
		}
		p := Package{f[0], f[1], f[2], f[3]}
		switch {
		case !nameRE.MatchString(p.Name):
			return nil, fmt.Errorf("line %d: bad package name %q", n, p.Name)
		case !versionRE.MatchString(p.Version):
			return nil, fmt.Errorf("line %d: bad version %q", n, p.Version)
		case !nameRE.MatchString(p.Arch):
			return nil, fmt.Errorf("line %d: bad architecture %q", n, p.Arch)
		case !shaRE.MatchString(p.SHA256):
			return nil, fmt.Errorf("line %d: bad sha256 %q", n, p.SHA256)
		case seen[p.Name]:
			return nil, fmt.Errorf("line %d: %s listed twice", n, p.Name)
		}
		seen[p.Name] = true
		pkgs = append(pkgs, p)
	}
	return pkgs, sc.Err()
}

// FormatLock writes pkgs sorted by name, after a header comment.
func FormatLock(header string, pkgs []Package) []byte {
	sorted := append([]Package(nil), pkgs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var b bytes.Buffer
	for _, l := range strings.Split(strings.TrimSpace(header), "\n") {
		b.WriteString("# " + l + "\n")
	}
	for _, p := range sorted {
		fmt.Fprintf(&b, "%s %s %s %s\n", p.Name, p.Version, p.Arch, p.SHA256)
	}
	return b.Bytes()
}

func run(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Resolve returns names and every package they depend on (Depends and
// Pre-Depends, recursively; not Recommends), at the candidate versions of
// the machine's apt lists, with the checksum apt knows for each. A virtual
// package resolves to its first provider as apt-cache prints it. The result
// depends only on the apt lists, which is why it is checked in as a lock.
func Resolve(ctx context.Context, names []string) ([]Package, error) {
	if len(names) == 0 {
		return nil, nil
	}
	args := append([]string{"depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
		"--no-breaks", "--no-replaces", "--no-enhances"}, names...)
	out, err := run(ctx, "", "apt-cache", args...)
	if err != nil {
		return nil, err
	}
	closure := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "<") {
			continue // dependency lines and virtual packages (their providers are listed too)
		}
		closure[strings.TrimSpace(line)] = true
	}
	all := make([]string, 0, len(closure))
	for n := range closure {
		all = append(all, n)
	}
	return Candidates(ctx, all)
}

// Candidates pins names, without their dependencies, at their candidate
// versions, sorted by name.
func Candidates(ctx context.Context, names []string) ([]Package, error) {
	var pkgs []Package
	for _, n := range names {
		p, err := candidate(ctx, n)
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	return pkgs, nil
}

// candidate reads the candidate version's record of one package.
func candidate(ctx context.Context, name string) (Package, error) {
	out, err := run(ctx, "", "apt-cache", "show", "--no-all-versions", name)
	if err != nil {
		return Package{}, err
	}
	p := Package{Name: name}
	// The first record is the candidate's.
	for _, line := range strings.Split(strings.SplitN(string(out), "\n\n", 2)[0], "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch k {
		case "Version":
			p.Version = v
		case "Architecture":
			p.Arch = v
		case "SHA256":
			p.SHA256 = v
		}
	}
	if p.Version == "" || p.Arch == "" || !shaRE.MatchString(p.SHA256) {
		return Package{}, fmt.Errorf("apt-cache show %s: no version, architecture or SHA256 (run apt-get update)", name)
	}
	return p, nil
}

// Fetch makes sure cacheDir holds every package's .deb with its locked
// checksum, downloading what is missing with `apt-get download
// name=version`, and returns their paths in pkgs' order. A .deb whose
// checksum differs from the lock is an error, never used.
func Fetch(ctx context.Context, pkgs []Package, cacheDir string) ([]string, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	var paths, missing []string
	for _, p := range pkgs {
		path := filepath.Join(cacheDir, p.FileName())
		paths = append(paths, path)
		if err := verify(path, p.SHA256); err != nil {
			missing = append(missing, p.Name+"="+p.Version)
		}
	}
	if len(missing) > 0 {
		tmp, err := os.MkdirTemp(cacheDir, ".download-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		// apt drops privileges to _apt for downloads: let it write there.
		_ = os.Chmod(tmp, 0o777)
		if _, err := run(ctx, tmp, "apt-get", append([]string{"download", "-q"}, missing...)...); err != nil {
			return nil, fmt.Errorf("%w (a locked version that left the mirror needs a new lock: `go run ./hack/imagebuild lock`)", err)
		}
		for _, p := range pkgs {
			src := filepath.Join(tmp, p.FileName())
			if _, err := os.Stat(src); err != nil {
				continue // was already cached
			}
			if err := verify(src, p.SHA256); err != nil {
				return nil, err
			}
			if err := os.Rename(src, filepath.Join(cacheDir, p.FileName())); err != nil {
				return nil, err
			}
		}
	}
	for i, p := range pkgs {
		if err := verify(paths[i], p.SHA256); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

func verify(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%s: sha256 %s, the lock says %s", path, got, want)
	}
	return nil
}

// Extract unpacks each .deb's data into dir with `dpkg-deb -x`, in order.
func Extract(ctx context.Context, debs []string, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, deb := range debs {
		if _, err := run(ctx, "", "dpkg-deb", "-x", deb, dir); err != nil {
			return err
		}
	}
	return nil
}
