//go:build linux

package images

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/open-acn/acn/internal/imagespec"
	"github.com/open-acn/acn/internal/netnstest"
)

// dockerfileScript turns the build stage of a rendered Dockerfile into one
// sh script that runs outside a container: its RUN commands as they are,
// COPY as cp, and its absolute staging paths (/debs, /pkgroot, /rootfs, the
// apt lists) moved under $D. apt-get is fakeAptGet, first on PATH.
func dockerfileScript(t *testing.T, dockerfile []byte) string {
	t.Helper()
	var script strings.Builder
	script.WriteString(`set -eu
umask 022
`)
	sc := bufio.NewScanner(bytes.NewReader(dockerfile))
	inRun := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		// Each RUN in a subshell: its cd does not carry over, as in a build.
		case inRun:
			inRun = strings.HasSuffix(line, "\\")
			if !inRun {
				line += "\n)"
			}
			script.WriteString(line + "\n")
		case strings.HasPrefix(line, "FROM scratch"):
			return relocate(script.String())
		case strings.HasPrefix(line, "RUN "):
			line = "(\n" + strings.TrimPrefix(line, "RUN ")
			inRun = strings.HasSuffix(line, "\\")
			if !inRun {
				line += "\n)"
			}
			script.WriteString(line + "\n")
		case strings.HasPrefix(line, "COPY "):
			f := strings.Fields(line)
			if len(f) != 3 {
				t.Fatalf("COPY line %q: want COPY SRC DST", line)
			}
			fmt.Fprintf(&script, "mkdir -p \"$(dirname %s)\" && cp %s %s\n", f[2], f[1], f[2])
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "FROM "):
		default:
			t.Fatalf("unexpected build stage line %q", line)
		}
	}
	t.Fatal("no FROM scratch stage")
	return ""
}

// fakeAptGet copies the .debs apt-get download would fetch from $CACHE
// (update is a no-op): the same files, checked by the same sha256sum line.
const fakeAptGet = `#!/bin/sh
set -eu
case "$1" in
update) exit 0 ;;
download) shift ;;
*) echo "apt-get $1: not in a Dockerfile build stage" >&2; exit 1 ;;
esac
for a in "$@"; do
	case "$a" in -*) continue ;; esac
	n=${a%%=*}; v=$(printf %s "${a#*=}" | sed 's/:/%3a/')
	cp "$CACHE/${n}_${v}_"*.deb .
done
`

var stagingPath = regexp.MustCompile(`(^|[\s'"])/(debs|pkgroot|rootfs)\b`)

func relocate(script string) string {
	script = strings.ReplaceAll(script, "/var/lib/apt/lists/*", "$D/lists/*")
	return stagingPath.ReplaceAllString(script, "${1}$$D/$2")
}

// treeEntry is what two builds of a root file system must agree on.
type treeEntry struct {
	Mode fs.FileMode
	Link string
	Data string
}

func walkTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	tree := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		e := treeEntry{Mode: info.Mode() & (fs.ModeType | fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			e.Link, err = os.Readlink(p)
		case info.Mode().IsRegular():
			var data []byte
			data, err = os.ReadFile(p)
			e.Data = string(data)
		}
		tree[rel] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// TestDockerfileBuildsSameTree runs each Dockerfile's build stage (as an
// unprivileged user, outside a container: no container daemon here) and
// compares the root file system it stages with the one of the daemon-less
// build, entry by entry: same paths, types, modes, symlink targets and
// contents. The two recipes come from one spec; this checks the renderings.
func TestDockerfileBuildsSameTree(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	if _, err := exec.LookPath("apt-get"); err != nil {
		netnstest.Skip(t, "apt-get missing: the .debs are downloaded with it (Debian only)")
	}
	for _, dir := range imageDirs(t) {
		image := filepath.Base(dir)
		t.Run(image, func(t *testing.T) {
			im := load(t, dir)
			tmp := t.TempDir()
			stand := filepath.Join(tmp, "root")
			standIn(t, image, stand)

			// The daemon-less build's tree, from its tarball.
			res, err := im.Build(context.Background(), imagespec.Options{RepoRoot: stand, CacheDir: debCache(t), WorkDir: filepath.Join(tmp, "work"), Version: testVersion},
				filepath.Join(tmp, image+".tar"))
			if err != nil {
				t.Fatal(err)
			}
			goRoot := filepath.Join(tmp, "go-rootfs")
			if err := os.MkdirAll(goRoot, 0o755); err != nil {
				t.Fatal(err)
			}
			extract(t, res, goRoot)

			// The Dockerfile's, run by nobody in a directory it owns, with
			// a copy of the build context (the stand-in root) and the .debs.
			d := filepath.Join(tmp, "docker")
			ctxDir := filepath.Join(d, "context")
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("cp", "-rL", stand, ctxDir).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
			if out, err := exec.Command("cp", "-r", debCache(t), filepath.Join(d, "cache")).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
			// nobody must reach it: t.TempDir's directories are 0700.
			for _, p := range []string{filepath.Dir(tmp), tmp} {
				if err := os.Chmod(p, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(filepath.Join(d, "bin"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "bin", "apt-get"), []byte(fakeAptGet), 0o755); err != nil {
				t.Fatal(err)
			}
			df, err := os.ReadFile(filepath.Join(dir, imagespec.DockerfileName))
			if err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("chown", "-R", "65534:65534", d).CombinedOutput(); err != nil {
				t.Fatalf("chown: %v\n%s", err, out)
			}
			cmd := exec.Command("sh", "-c", dockerfileScript(t, df))
			cmd.Dir = ctxDir
			cmd.Env = []string{"PATH=" + filepath.Join(d, "bin") + ":/usr/sbin:/usr/bin:/sbin:/bin", "D=" + d, "CACHE=" + filepath.Join(d, "cache"), "LC_ALL=C"}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("the Dockerfile's build stage: %v\n%s", err, out)
			}

			goTree, dockerTree := walkTree(t, goRoot), walkTree(t, filepath.Join(d, "rootfs"))
			var paths []string
			for p := range goTree {
				paths = append(paths, p)
			}
			for p := range dockerTree {
				if _, ok := goTree[p]; !ok {
					paths = append(paths, p)
				}
			}
			sort.Strings(paths)
			diffs := 0
			for _, p := range paths {
				g, inGo := goTree[p]
				k, inDocker := dockerTree[p]
				switch {
				case !inGo:
					t.Errorf("%s: only in the Dockerfile's tree", p)
				case !inDocker:
					t.Errorf("%s: only in make images' tree", p)
				case g.Mode != k.Mode || g.Link != k.Link:
					t.Errorf("%s: make images %v %q, Dockerfile %v %q", p, g.Mode, g.Link, k.Mode, k.Link)
				case g.Data != k.Data:
					t.Errorf("%s: contents differ", p)
				default:
					continue
				}
				if diffs++; diffs > 20 {
					t.Fatal("too many differences")
				}
			}
			t.Logf("%s: %d entries agree", image, len(goTree))
		})
	}
}
