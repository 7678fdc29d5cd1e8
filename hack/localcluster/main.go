//go:build linux

// Command localcluster starts and stops the project's local Kubernetes
// control plane (etcd + kube-apiserver on 127.0.0.1) for `make cluster-up`
// and `make cluster-down`.
//
//	localcluster up   [--dir out/cluster] [--port 16443]
//	localcluster down [--dir out/cluster]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/open-acn/acn/internal/kubetest"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(args []string, out io.Writer) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down") {
		return usageError{errors.New("usage: localcluster up|down [--dir DIR] [--port PORT]")}
	}
	fs := flag.NewFlagSet("localcluster "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", filepath.Join("out", "cluster"), "state directory (kubeconfig, certificates, etcd data, logs, pids)")
	port := fs.Int("port", 16443, "API server port on 127.0.0.1")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if args[0] == "down" {
		if err := kubetest.StopDetached(abs); err != nil {
			return err
		}
		fmt.Fprintf(out, "local cluster stopped, %s removed\n", abs)
		return nil
	}
	if _, err := os.Stat(filepath.Join(abs, kubetest.PIDFile)); err == nil {
		return fmt.Errorf("a local cluster is already running from %s: run `make cluster-down` first", abs)
	}
	_ = os.RemoveAll(abs)
	s, err := kubetest.Start(context.Background(), kubetest.Options{Dir: abs, SecurePort: *port, Detach: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "local cluster ready in %.1fs at %s\n", s.StartupTime.Seconds(), s.URL)
	fmt.Fprintf(out, "  kubectl --kubeconfig %s get ns\n", s.Kubeconfig)
	fmt.Fprintf(out, "  (out/tools/kubectl is built from the same Kubernetes release)\n")
	return nil
}
