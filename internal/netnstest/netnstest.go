//go:build linux

// Package netnstest creates throw-away network namespaces for tests that
// need a real kernel. Every namespace carries the project prefix, is
// deleted by t.Cleanup even when the test fails, and the root network
// namespace of the machine is never modified.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/internal/withnetns"
)

// Prefix starts the name of every namespace the tests create, so a leftover
// is recognisable. Each is recorded with its owner (internal/owned): the
// first namespace a process creates removes those of dead runs.
const Prefix = "acn-"

// NS is a named network namespace (visible in `ip netns list`).
type NS struct {
	Name string
	Path string // /run/netns/<Name>
}

// RequireEnv names the environment variable that turns every skip of a
// test for want of root, a tool or a built binary into a failure: CI
// sets ACN_REQUIRE_KERNEL_TESTS=1, so a kernel test cannot pass by not
// running.
const RequireEnv = "ACN_REQUIRE_KERNEL_TESTS"

// Skip skips the test saying why, or fails it when RequireEnv is 1.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s=1 and this test cannot run: "+format, append([]any{RequireEnv}, args...)...)
	}
	t.Skipf(format, args...)
}

// RequireRoot skips the test, saying why, when it cannot create namespaces
// (fails it under RequireEnv).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root to create network namespaces (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		Skip(t, "needs iproute2's ip command (make deps installs it)")
	}
}

// New creates a namespace named acn-<name>-<random> with its loopback up and
// registers its deletion with t.Cleanup.
func New(t testing.TB, name string) *NS {
	t.Helper()
	RequireRoot(t)
	ns, err := Create(name)
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { _ = ns.Delete() })
	return ns
}

// Create makes a namespace without a testing.T (for harnesses and the demo);
// the caller must Delete it.
func Create(name string) (*NS, error) {
	// Six random bytes: a test that holds hundreds of namespaces at once
	// (TestParallelAdds300) met a birthday collision with three. A name
	// that exists anyway (another run's, never ours to remove) is skipped
	// for a fresh one.
	var full string
	for try := 0; ; try++ {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		full = fmt.Sprintf("%s%s-%s", Prefix, name, hex.EncodeToString(b))
		if len(full) > 60 {
			full = full[:60]
		}
		err := create(full)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || try == 4 {
			return nil, err
		}
	}
	ns := &NS{Name: full, Path: "/run/netns/" + full}
	if _, err := ns.Exec("ip", "link", "set", "lo", "up"); err != nil {
		_ = ns.Delete()
		return nil, err
	}
	return ns, nil
}

// create makes the namespace full, recorded as this process's before it
// exists (internal/owned): if the run dies before Delete, the next run
// removes it. A name already taken is an error wrapping os.ErrExist.
func create(full string) error {
	owned.CleanupOnSignal()
	return owned.Track(owned.Netns, full, func() error {
		if _, err := os.Stat("/run/netns/" + full); err == nil {
			return fmt.Errorf("ip netns add %s: %w", full, os.ErrExist) // not ours: never remove it
		}
		// Its own process group: a signal to the run's group (Ctrl-C,
		// timeout) must not kill it half-way, leaving a namespace the
		// failed Track no longer records.
		cmd := exec.Command("ip", "netns", "add", full)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if out, err := cmd.CombinedOutput(); err != nil {
			_ = owned.RemoveNetns(full) // whatever half of it exists is ours
			return fmt.Errorf("ip netns add %s: %v: %s", full, err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

// Delete removes the namespace with every process still inside it;
// interfaces inside it go with it.
func (n *NS) Delete() error { return owned.RemoveNetns(n.Name) }

// Exec runs a command inside the namespace (ip netns exec) and returns its
// combined output; the error includes that output.
func (n *NS) Exec(name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %v: %s", name, strings.Join(args, " "), n.Name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// MustExec is Exec that fails the test on error.
func (n *NS) MustExec(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Exec(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Do runs f on a locked OS thread switched into the namespace and switches
// back afterwards. Goroutines started by f do not inherit the namespace.
func (n *NS) Do(f func() error) error { return withnetns.Do(n.Path, f) }

// Handle opens a netlink handle bound to the namespace (no thread switching).
func (n *NS) Handle() (*netlink.Handle, error) {
	h, err := netns.GetFromPath(n.Path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return netlink.NewHandleAt(h)
}

// Dial opens a connection from inside the namespace: only the dial enters
// it, the returned socket keeps working from any goroutine.
func (n *NS) Dial(network, address string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = net.Dial(network, address)
		return err
	})
	return c, err
}

// Link connects two namespaces with a veth pair. Addresses are CIDRs
// ("10.1.0.1/24"), empty for none; both ends are brought up.
func Link(t testing.TB, a *NS, aIf, aAddr string, b *NS, bIf, bAddr string) {
	t.Helper()
	if err := LinkNS(a, aIf, aAddr, b, bIf, bAddr); err != nil {
		t.Fatal(err)
	}
}

// LinkNS is Link without a testing.T.
func LinkNS(a *NS, aIf, aAddr string, b *NS, bIf, bAddr string) error {
	if _, err := a.Exec("ip", "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name); err != nil {
		return err
	}
	for _, e := range []struct {
		ns       *NS
		ifc, adr string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if e.adr != "" {
			if _, err := e.ns.Exec("ip", "addr", "add", e.adr, "dev", e.ifc); err != nil {
				return err
			}
		}
		if _, err := e.ns.Exec("ip", "link", "set", e.ifc, "up"); err != nil {
			return err
		}
	}
	return nil
}
