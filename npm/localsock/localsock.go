// Package localsock is azure-npm's local socket: the unix socket, reachable
// only by root on the node (or by `kubectl exec` into the agent's pod),
// that serves what must not be on the network: /status (every object the
// agent enforces), /explain (which policy decides a connection) and
// /debug/pprof. The protocol is plain HTTP/1.1 over the socket, so curl
// --unix-socket works too.
//
// Listen owns the socket's directory: it is created with mode 0700, or
// tightened to 0700 when it exists, and must hold nothing but the socket,
// so a misconfigured path never changes the mode of a shared directory.
// A socket left by a run that died is replaced; a live one is an error.
package localsock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Listen creates the agent's socket at path, root-only: directory 0700,
// socket 0600.
func Listen(path string) (net.Listener, error) {
	dir, base := filepath.Split(path)
	dir = filepath.Clean(dir)
	if err := ownDir(dir, base); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	if err := restrict(dir); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("local socket %s: %w", path, err)
	}
	// The directory is already 0700, so nobody else could reach the socket
	// between its creation and this chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("local socket %s: %w", path, err)
	}
	return ln, nil
}

// ownDir creates dir, or checks that an existing one is the socket's
// own: nothing else in it, owned by this process's user. Listen then
// restricts it.
func ownDir(dir, socket string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("local socket directory %s: %w", dir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("local socket directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("local socket directory %s is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("local socket directory %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.Name() != socket {
			return fmt.Errorf("local socket directory %s holds %s: give the socket a directory of its own (its mode is set to 0700)", dir, e.Name())
		}
	}
	return checkOwner(dir, fi)
}

// removeStale removes a socket left at path by an agent that is gone. A
// socket that still answers belongs to a running agent; anything that is
// not a socket is never removed.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("local socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("local socket %s exists and is not a socket: not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("local socket %s: another azure-npm is serving on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale local socket %s: %w", path, err)
	}
	return nil
}

// Client returns an HTTP client whose every request goes to the socket.
func Client(path string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConnsPerHost: 4,
	}}
}

// URL is the URL of target ("/status?object=...") on the socket.
func URL(target string) string { return "http://azure-npm" + target }

// maxResponse bounds what a client reads (a /status of a large cluster is
// a few KiB; an explain answer lists a handful of kernel objects).
const maxResponse = 4 << 20

// Get fetches target from the agent at socket path and returns the body of
// a 200 answer; anything else is an error naming the socket and the cause.
func Get(ctx context.Context, c *http.Client, path, target string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, URL(target), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, DialError(path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("agent at %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("agent at %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// DialError says why the agent's socket could not be reached.
func DialError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no agent socket at %s: is azure-npm running here (kubectl exec ds/azure-npm -- azure-npm ...), with this socketPath?", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("agent socket %s: permission denied: it is root-only", path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("agent socket %s: connection refused: the agent that created it is gone", path)
	}
	return fmt.Errorf("agent at %s: %w", path, err)
}
