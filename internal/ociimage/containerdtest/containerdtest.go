//go:build linux

// Package containerdtest runs a throw-away containerd for tests: its own
// root, state, socket and config under a temporary directory (never the
// machine's /run/containerd), with the CRI plugin disabled, so that a test
// can import image tarballs with `ctr` and inspect them.
package containerdtest

import (
	"bytes"
	"fmt"
	"github.com/open-acn/acn/internal/netnstest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Containerd is a running throw-away containerd.
type Containerd struct {
	Dir     string // holds root/, state/, the socket and the config
	Address string // its gRPC socket
	cmd     *exec.Cmd
}

// Start starts containerd and stops it (and removes its directory) when the
// test ends. It skips when not root or when containerd or ctr is missing.
func Start(t testing.TB) *Containerd {
	t.Helper()
	if os.Geteuid() != 0 {
		netnstest.Skip(t, "containerd needs root (CI runs as root)")
	}
	for _, bin := range []string{"containerd", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			netnstest.Skip(t, "%s not installed (make deps installs Debian's containerd)", bin)
		}
	}
	// A short directory name: the socket path must fit in sun_path (108 bytes).
	dir, err := os.MkdirTemp("", "acn-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Containerd{Dir: dir, Address: filepath.Join(dir, "c.sock")}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Address, c.Address+".ttrpc", filepath.Join(dir, "opt"))
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command("containerd", "--config", cfg)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
		}
		logf.Close()
		// Snapshots are plain directories (the import does not mount them).
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Ctr("version"); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("containerd did not answer on %s within 30s; log:\n%s", c.Address, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Ctr runs ctr against this containerd and returns its combined output.
func (c *Containerd) Ctr(args ...string) (string, error) {
	cmd := exec.Command("ctr", append([]string{"--address", c.Address}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("ctr %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// Import imports an image tarball into namespace k8s.io, as a kubelet node
// would have it, and returns the image names containerd lists afterwards.
func (c *Containerd) Import(tarball string) ([]string, error) {
	if _, err := c.Ctr("-n", "k8s.io", "images", "import", tarball); err != nil {
		return nil, err
	}
	out, err := c.Ctr("-n", "k8s.io", "images", "list", "-q")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}
