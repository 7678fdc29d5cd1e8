//go:build linux

// Command realcluster starts and stops the real cluster (test/realcluster)
// for `make cluster-real` and `make cluster-real-down`:
//
//	realcluster up   [--dir out/cluster-real] [--dataplane iptables|nftables]
//	                 [--cni transparent|bridge] [--proxy-mode iptables|nftables]
//	realcluster down [--dir out/cluster-real]
//	realcluster e2e  [--dataplanes iptables,nftables] [--cni transparent,bridge] [--procs N]
//
// up starts a keeper process (this program, detached) that builds the
// cluster, owns it and tears it down on SIGTERM; up returns once the
// cluster is ready and prints how to reach it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/open-acn/acn/internal/kubetest"
	"github.com/open-acn/acn/test/realcluster"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "realcluster:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

const readyFile = "ready"

func run(args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "e2e" {
		if os.Geteuid() != 0 {
			return errors.New("needs root (network and mount namespaces, cgroups)")
		}
		return e2e(args[1:], out)
	}
	if len(args) == 0 || (args[0] != "up" && args[0] != "down" && args[0] != "keep") {
		return usageError{errors.New("usage: realcluster up|down [--dir DIR] [--dataplane iptables|nftables] [--cni transparent|bridge] [--proxy-mode iptables|nftables]\n       realcluster e2e [--dataplanes iptables,nftables] [--cni transparent,bridge] [--procs N]")}
	}
	fs := flag.NewFlagSet("realcluster "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", filepath.Join("out", "cluster-real"), "state directory (kubeconfig, logs, node state)")
	dataplane := fs.String("dataplane", "iptables", "azure-npm dataplane (set in its ConfigMap)")
	cni := fs.String("cni", "transparent", "azure-vnet mode (the conflist the installer puts on the nodes)")
	proxyMode := fs.String("proxy-mode", "iptables", "kube-proxy mode")
	noProduct := fs.Bool("no-product", false, "stop before installing deploy/cni and deploy/npm")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if args[0] == "down" {
		if _, _, stateFile := realcluster.Owner(abs); stateFile == "" {
			_ = os.RemoveAll(abs)
			return nil
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (network and mount namespaces, cgroups)")
	}
	switch args[0] {
	case "down":
		return down(abs, out)
	case "keep":
		return keep(abs, realcluster.Config{Dir: abs, Dataplane: *dataplane, CNIMode: *cni, ProxyMode: *proxyMode, NoProduct: *noProduct,
			Logf: func(f string, a ...any) { fmt.Printf(f+"\n", a...) }})
	}
	if _, alive, _ := realcluster.Owner(abs); alive {
		return fmt.Errorf("a real cluster already runs from %s: run `make cluster-real-down` first", abs)
	}
	_ = os.RemoveAll(abs)
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(abs, "keeper.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, append([]string{"keep"}, args[1:]...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(out, "starting the real cluster (log: %s)...\n", logPath)
	for {
		if data, err := os.ReadFile(filepath.Join(abs, readyFile)); err == nil {
			fmt.Fprint(out, string(data))
			return nil
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("the cluster did not come up (%v):\n%s", err, log)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// keep builds the cluster, reports it ready and tears it down on SIGTERM.
func keep(dir string, cfg realcluster.Config) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-sigs; cancel() }()
	c, err := realcluster.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	k := c.KubectlCommand()
	msg := fmt.Sprintf(`real cluster up: %d nodes, azure-vnet %s, azure-npm %s, kube-proxy %s
  kubectl:  %s get nodes,pods -A -o wide
  logs:     %s (containerd, kubelet, kube-proxy per node; control plane)
  node:     nsenter --mount=%s/mnt/node-0 --net=/run/netns/%s sh   (a shell as the node sees itself)
  stop:     make cluster-real-down
`, len(c.Nodes), cfg.CNIMode, cfg.Dataplane, cfg.ProxyMode, k, dir, dir, c.Nodes[0].NS.Name)
	if err := os.WriteFile(filepath.Join(dir, readyFile), []byte(msg), 0o644); err != nil {
		return err
	}
	fmt.Print(msg)
	<-ctx.Done()
	fmt.Println("stopping")
	return nil
}

func down(dir string, out io.Writer) error {
	pid, alive, stateFile := realcluster.Owner(dir)
	if alive {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(3 * time.Minute)
		for kubetest.Alive(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("keeper %d still tearing down after 3 minutes; see %s/keeper.log", pid, dir)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if stateFile != "" {
		// The keeper died without cleaning up: do it from its state file.
		realcluster.CleanLeftovers(func(f string, a ...any) { fmt.Fprintf(out, f+"\n", a...) })
	}
	if strings.HasSuffix(dir, string(filepath.Separator)) || dir == "/" {
		return fmt.Errorf("refusing to remove %s", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	fmt.Fprintf(out, "real cluster stopped, %s removed\n", dir)
	return nil
}
