//go:build linux

package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/open-acn/acn/cni/cnitest"
	"github.com/open-acn/acn/internal/debpkg"
	"github.com/open-acn/acn/internal/imagespec"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/ociimage/containerdtest"
)

const testVersion = "v9.9.9-test"

// repoRoot is the repository root (images/..).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate images_test.go")
	}
	return filepath.Dir(filepath.Dir(file))
}

// imageDirs lists images/*/ (every directory with an image.json).
func imageDirs(t testing.TB) []string {
	t.Helper()
	specs, err := filepath.Glob(filepath.Join(repoRoot(t), "images", "*", imagespec.SpecFile))
	if err != nil || len(specs) == 0 {
		t.Fatalf("no images/*/%s: %v", imagespec.SpecFile, err)
	}
	var dirs []string
	for _, s := range specs {
		dirs = append(dirs, filepath.Dir(s))
	}
	return dirs
}

// load loads an image directory with its repository-relative name (as
// hack/imagebuild is run from the root), which the Dockerfile shows.
func load(t testing.TB, dir string) *imagespec.Image {
	t.Helper()
	rel, err := filepath.Rel(repoRoot(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := imagespec.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	im.Dir = rel
	return im
}

// TestDockerfilesAgree: each checked-in Dockerfile is exactly what
// image.json and packages.lock render, so the daemon-less build and the
// Dockerfile cannot drift; and it names every locked package at its version.
func TestDockerfilesAgree(t *testing.T) {
	for _, dir := range imageDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			im := load(t, dir)
			got, err := os.ReadFile(filepath.Join(dir, imagespec.DockerfileName))
			if err != nil {
				t.Fatal(err)
			}
			if want := im.Dockerfile(); !bytes.Equal(got, want) {
				t.Errorf("%s/Dockerfile is stale: run `go run ./hack/imagebuild dockerfile images/%s`", dir, filepath.Base(dir))
			}
			for _, p := range im.Lock {
				if !bytes.Contains(got, []byte(" "+p.Name+"="+p.Version+" ")) || !bytes.Contains(got, []byte(p.SHA256+" "+p.FileName())) {
					t.Errorf("Dockerfile does not download and check %s=%s", p.Name, p.Version)
				}
			}
			for _, f := range im.Spec.Files {
				if !bytes.Contains(got, []byte("COPY "+f.Src+" /rootfs"+f.Dst+"\n")) {
					t.Errorf("Dockerfile does not copy %s", f.Src)
				}
			}
		})
	}
}

// TestLockClosed: every locked package's Depends and Pre-Depends (read from
// the downloaded .debs themselves) are satisfied by the lock, unless the
// image takes its files to the host (skipDependencies).
func TestLockClosed(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		netnstest.Skip(t, "apt-get missing: the .debs are downloaded with it (Debian only)")
	}
	for _, dir := range imageDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			im := load(t, dir)
			debs, err := debpkg.Fetch(context.Background(), im.Lock, debCache(t))
			if err != nil {
				t.Fatal(err)
			}
			locked := map[string]bool{}
			for _, p := range im.Lock {
				locked[p.Name] = true
			}
			for _, deb := range debs {
				out, err := exec.Command("dpkg-deb", "-f", deb, "Depends", "Pre-Depends").Output()
				if err != nil {
					t.Fatalf("dpkg-deb -f %s: %v", deb, err)
				}
				for _, line := range strings.Split(string(out), "\n") {
					_, deps, _ := strings.Cut(line, ": ")
					if !strings.Contains(line, ": ") {
						deps = line
					}
					for _, dep := range strings.Split(deps, ",") {
						if strings.TrimSpace(dep) == "" {
							continue
						}
						ok := false
						for _, alt := range strings.Split(dep, "|") {
							n := strings.Fields(alt)[0]
							n, _, _ = strings.Cut(n, ":")
							ok = ok || locked[n]
						}
						if !ok && !im.Spec.SkipDependencies {
							t.Errorf("%s depends on %q, which the lock lacks", filepath.Base(deb), strings.TrimSpace(dep))
						}
					}
				}
			}
		})
	}
}

// debCache is where the tests keep downloaded .debs: make images' cache.
func debCache(t testing.TB) string {
	return filepath.Join(repoRoot(t), "out", "images", "debs")
}

// imageBinaries are the Go binaries each image holds (out path -> package).
var imageBinaries = map[string]map[string]string{
	"azure-npm": {"out/azure-npm": "./cmd/npm"},
	"azure-cni": {
		"out/azure-cni-install": "./cmd/azure-cni-install",
		"out/azure-vnet":        "./cmd/azure-vnet",
		"out/azure-vnet-ipam":   "./cmd/azure-vnet-ipam",
	},
}

// standIn builds the image's binaries into stand, a stand-in repository root
// (image.json's file sources are repository-relative) that has the
// repository's deploy/ and images/ too.
func standIn(t *testing.T, image, stand string) {
	t.Helper()
	root := repoRoot(t)
	if err := os.MkdirAll(filepath.Join(stand, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"deploy", "images"} {
		if err := os.Symlink(filepath.Join(root, e), filepath.Join(stand, e)); err != nil {
			t.Fatal(err)
		}
	}
	for out, pkg := range imageBinaries[image] {
		cmd := exec.Command(cnitest.GoTool(), "build", "-trimpath", "-ldflags",
			"-s -w -X github.com/open-acn/acn/internal/version.Version="+testVersion, "-o", filepath.Join(stand, out), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
}

// buildImage builds one image (and the Go binaries it holds) into a temp
// dir, twice, and checks both builds have the same digest. The stand-in
// root is <tmp>/root.
func buildImage(t *testing.T, image string) (string, imagespec.Result) {
	t.Helper()
	if _, err := exec.LookPath("apt-get"); err != nil {
		netnstest.Skip(t, "apt-get missing: the .debs are downloaded with it (Debian only)")
	}
	tmp := t.TempDir()
	stand := filepath.Join(tmp, "root")
	standIn(t, image, stand)
	im := load(t, filepath.Join(repoRoot(t), "images", image))
	var res []imagespec.Result
	for i := range 2 {
		work := filepath.Join(tmp, fmt.Sprintf("work%d", i))
		r, err := im.Build(context.Background(), imagespec.Options{RepoRoot: stand, CacheDir: debCache(t), WorkDir: work, Version: testVersion},
			filepath.Join(tmp, fmt.Sprintf("%s-%d.tar", image, i)))
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, r)
	}
	if res[0].Digest != res[1].Digest {
		t.Errorf("two builds of %s: digests %s and %s", image, res[0].Digest, res[1].Digest)
	}
	a, _ := os.ReadFile(res[0].File)
	b, _ := os.ReadFile(res[1].File)
	if !bytes.Equal(a, b) {
		t.Errorf("two builds of %s: different tarball bytes", image)
	}
	t.Logf("%s: %s %s, %d bytes", image, res[0].Ref, res[0].Digest, res[0].Size)
	return tmp, res[0]
}

// extract unpacks the image's file system from its tarball into dir.
func extract(t *testing.T, res imagespec.Result, dir string) {
	t.Helper()
	tag, err := name.NewTag(res.Ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(res.File, &tag)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, %v: want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	cmd := exec.Command("tar", "-x", "-p", "-C", dir)
	cmd.Stdin = rc
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
}

// listTar lists the image's entries with their types.
func listTar(t *testing.T, res imagespec.Result) map[string]byte {
	t.Helper()
	tag, _ := name.NewTag(res.Ref)
	img, err := tarball.ImageFromPath(res.File, &tag)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries := map[string]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return entries
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[strings.TrimSuffix(h.Name, "/")] = h.Typeflag
	}
}

// importImage imports the tarball into a throw-away containerd and checks
// the reference and digest it lists.
func importImage(t *testing.T, res imagespec.Result) {
	t.Helper()
	c := containerdtest.Start(t)
	names, err := c.Import(res.File)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != res.Ref {
		t.Errorf("containerd lists %v after the import, want [%s]", names, res.Ref)
	}
	out, err := c.Ctr("-n", "k8s.io", "images", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, res.Digest) {
		t.Errorf("containerd does not list digest %s:\n%s", res.Digest, out)
	}
}

// The child side of runInImage: see TestMain.
const execEnv = "ACN_IMAGES_TEST_EXEC"

func TestMain(m *testing.M) {
	if spec := os.Getenv(execEnv); spec != "" {
		if err := execInImage(spec); err != nil {
			fmt.Fprintln(os.Stderr, "in image:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// step is one command run inside the image.
type step struct {
	Argv  []string
	Stdin string
}

// inImage is what the child gets (JSON in execEnv).
type inImage struct {
	Rootfs string
	Binds  map[string]string // container path -> host path
	Caps   []int             // the capabilities kept (unix.CAP_*)
	Steps  []step
}

// npmCaps are the capabilities the azure-npm DaemonSet adds (all others dropped).
var npmCaps = []int{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW}

// runInImage runs steps one after the other inside the extracted image
// rootfs the way the DaemonSet runs the container: its own network
// namespace (never the host's), the root file system read-only, the
// hostPath mounts (binds) in place, uid 0 with only the capabilities caps,
// no new privileges. It stops at the first failing step.
func runInImage(t *testing.T, rootfs string, binds map[string]string, caps []int, steps ...step) (string, error) {
	t.Helper()
	spec, err := json.Marshal(inImage{rootfs, binds, caps, steps})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), execEnv+"="+string(spec))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// execInImage runs in the child, already in new mount and network
// namespaces: it mounts, chroots, drops capabilities and runs the steps.
func execInImage(spec string) error {
	var in inImage
	if err := json.Unmarshal([]byte(spec), &in); err != nil {
		return err
	}
	rootfs := in.Rootfs
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	for dst, src := range in.Binds {
		target := filepath.Join(rootfs, dst)
		// Mount points are created before the root turns read-only, as
		// the runtime does.
		if st, err := os.Stat(src); err == nil && st.IsDir() {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		} else if _, err := os.Stat(target); err != nil {
			if err := os.WriteFile(target, nil, 0o600); err != nil {
				return err
			}
		}
		if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", src, target, err)
		}
	}
	// What every container runtime provides: /proc, a /dev tmpfs with the
	// standard devices, /sys read-only.
	for _, d := range []string{"proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("proc", filepath.Join(rootfs, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	if err := unix.Mount("sysfs", filepath.Join(rootfs, "sys"), "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount sysfs: %w", err)
	}
	if err := unix.Mount("tmpfs", filepath.Join(rootfs, "dev"), "tmpfs", unix.MS_NOSUID, "mode=755,size=1m"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, dev := range []string{"null", "zero", "full", "random", "urandom"} {
		target := filepath.Join(rootfs, "dev", dev)
		if err := os.WriteFile(target, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+dev, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", dev, err)
		}
	}
	if err := unix.Mount("", rootfs, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", rootfs, err)
	}
	if err := unix.Chroot(rootfs); err != nil {
		return err
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	// The capability bounding set is per thread: drop it on every thread
	// the Go runtime may fork from by locking this one and dropping here,
	// then starting the steps from it.
	runtime.LockOSThread()
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if slices.Contains(in.Caps, c) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, s := range in.Steps {
		bin := s.Argv[0]
		for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
			if _, err := os.Lstat(filepath.Join(d, bin)); err == nil && !strings.Contains(bin, "/") {
				bin = filepath.Join(d, bin)
				break
			}
		}
		fmt.Printf("$ %s\n", strings.Join(s.Argv, " "))
		cmd := &exec.Cmd{Path: bin, Args: s.Argv, Env: env, Stdin: strings.NewReader(s.Stdin), Stdout: os.Stdout, Stderr: os.Stdout,
			SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}}
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(s.Argv, " "), err)
		}
	}
	return nil
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		netnstest.Skip(t, "needs root for namespaces, chroot and mounts (CI runs as root)")
	}
}
