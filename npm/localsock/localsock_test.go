//go:build !windows

package localsock

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, ln net.Listener) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.Error(w, "no such endpoint", http.StatusNotFound)
			return
		}
		fmt.Fprint(w, "ok")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

func TestListenIsRootOnlyAndServes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "npm.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
		t.Fatalf("socket %v in directory %v: want a 0600 socket in a 0700 directory", fi.Mode(), di.Mode())
	}
	c := Client(path, 2*time.Second)
	body, err := Get(context.Background(), c, path, "/status")
	if err != nil || string(body) != "ok" {
		t.Fatalf("Get /status = %q, %v", body, err)
	}
	if _, err := Get(context.Background(), c, path, "/nope"); err == nil || !strings.Contains(err.Error(), "404 Not Found: no such endpoint") {
		t.Fatalf("Get /nope: %v, want the 404 and its reason", err)
	}
	// A second agent on the same path must not take the socket over.
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "another azure-npm is serving on it") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
}

func TestListenReplacesAStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "npm.sock")
	// A socket whose server is gone, as after kill -9: keep the file.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ln2, err := Listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	serve(t, ln2)
	if _, err := Get(context.Background(), Client(path, 2*time.Second), path, "/status"); err != nil {
		t.Fatal(err)
	}
}

func TestListenRefuses(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) string // returns the socket path
		want  string
	}{
		{"a file that is not a socket", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "npm.sock")
			writeFile(t, p)
			return p
		}, "exists and is not a socket: not removing it"},
		{"a shared directory", func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, "someone-elses.pid"))
			return filepath.Join(dir, "npm.sock")
		}, "holds someone-elses.pid: give the socket a directory of its own"},
		{"a directory that is a file", func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, "run"))
			return filepath.Join(dir, "run", "npm.sock")
		}, "is not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tc.setup(t, dir)
			_ = os.Chmod(dir, 0o755)
			before, _ := os.Stat(dir)
			if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Listen(%s): %v, want %q", path, err, tc.want)
			}
			after, _ := os.Stat(dir)
			if before.Mode() != after.Mode() {
				t.Fatalf("a refused Listen changed %s from %v to %v", dir, before.Mode(), after.Mode())
			}
		})
	}
}

func TestGetSaysWhyTheAgentIsUnreachable(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	if _, err := Get(context.Background(), Client(missing, time.Second), missing, "/status"); err == nil || !strings.Contains(err.Error(), "no agent socket at "+missing) {
		t.Fatalf("missing socket: %v", err)
	}
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := Get(context.Background(), Client(stale, time.Second), stale, "/status"); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("stale socket: %v", err)
	}
}

func writeFile(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}
