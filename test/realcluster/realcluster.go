//go:build linux

// Package realcluster is a real Kubernetes cluster on one machine: the
// simulated VNet, control-plane and node namespaces of test/cluster, with
// real node components in them instead of the harness playing the nodes.
//
//	cp      etcd + kube-apiserver (10.224.0.2:6443), kube-controller-manager
//	        (--use-service-account-credentials), kube-scheduler
//	node-i  its own containerd (+ runc), kubelet and kube-proxy, started
//	        with nsenter into the node's network namespace and into one
//	        persistent mount namespace per node (its own sysfs, cgroup tree
//	        bound back, private /var/lib/kubelet, /var/log, /opt/cni/bin,
//	        /etc/cni/net.d, /run/containerd, ...; kubelet cgroupRoot
//	        /<run>-node-i in every cgroup v1 hierarchy)
//	vnet    also answers as the Azure host endpoint (168.63.129.16): each
//	        node gets its NIC's addresses, which azure-vnet-ipam reads with
//	        the shipped conflist's "environment": "azure"
//
// The product is installed only through the shipped manifests (deploy/cni,
// deploy/npm) with a kustomize overlay for what an operator sets: image
// tags, the NPM dataplane, the conflist. Images are imported into each
// node's containerd from tarballs (make images, plus pause and agnhost).
//
// Every process is recorded by PID and every mount, namespace and cgroup in
// a state file under /run/acn-realcluster; Close removes them all, and New
// first removes what a dead earlier run (its owner process gone) left.
package realcluster

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/internal/kubetest"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
	"github.com/open-acn/acn/test/cluster"
)

// VNetPrefix holds the nodes' and the pods' addresses (kube-proxy's
// clusterCIDR).
const VNetPrefix = "10.224.0.0/16"

// azureHostIP is the Azure host endpoint's address (wireserver).
const azureHostIP = "168.63.129.16"

// registry holds one state file per run; runs of other users of the machine
// are found there too and never touched while their owner lives.
const registry = "/run/acn-realcluster"

// Config describes the cluster.
type Config struct {
	Nodes     int    // default 2
	CNIMode   string // transparent (default) or bridge: the conflist installed
	Dataplane string // NPM's dataplane in its ConfigMap: iptables (default) or nftables
	ProxyMode string // kube-proxy mode: iptables (default) or nftables
	// Dir holds state, logs, kubeconfig; default a new /tmp/acn-realcluster-*.
	Dir string
	// Root is the module root (deploy/, out/); default kubetest.ModuleRoot().
	Root string
	// ToolsDir holds the Kubernetes binaries; default kubetest.ToolsDir().
	ToolsDir string
	// ImagesDir holds the product's image tarballs (make images); default
	// <Root>/out/images.
	ImagesDir string
	// NoProduct stops before installing the CNI and NPM manifests.
	NoProduct bool
	// RuntimeOnly starts containerd alone on the nodes (no kubelet, no
	// kube-proxy, no product): for driving the CRI directly (make bench).
	RuntimeOnly bool
	Logf        func(format string, args ...any)
}

// Cluster is a running real cluster.
type Cluster struct {
	*cluster.Cluster
	Nodes []*Node
	// Kubeconfig is the admin kubeconfig; the API server is reachable only
	// from the control-plane namespace (Kubectl runs there).
	Kubeconfig string

	cfg       Config
	id        string
	mntDir    string
	stateFile string
	st        state
	mu        sync.Mutex
	azureHost *http.Server
	cpPIDs    map[string]int
}

type state struct {
	// Owner is the process that made the run (internal/owned's identity:
	// PID and start time, so a reused PID is not taken for it).
	Owner     owned.Owner `json:"owner"`
	Dir       string      `json:"dir"`
	RemoveDir bool        `json:"removeDir"`
	MountDir  string      `json:"mountDir"`
	Netns     []string    `json:"netns"`
	PIDs      []int       `json:"pids"`
	Nodes     []nodeState `json:"nodes"`
}

type nodeState struct {
	Name       string `json:"name"`
	MountFile  string `json:"mountFile"`
	CgroupRoot string `json:"cgroupRoot"`
}

func (c *Cluster) logf(format string, args ...any) {
	if c.cfg.Logf != nil {
		c.cfg.Logf(format, args...)
	}
}

// MissingTools names the binaries a real cluster needs that are not built.
func MissingTools(dir string) []string {
	var missing []string
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl", "kubelet", "kube-proxy", "kube-controller-manager", "kube-scheduler", "agnhost"} {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// MissingHostTools names the node programs from Debian packages that are
// not installed (make deps installs them).
func MissingHostTools() []string {
	var missing []string
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter", "unshare"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	return missing
}

// New builds the cluster and installs the product. On error everything
// created so far is removed.
func New(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 2
	}
	if cfg.CNIMode == "" {
		cfg.CNIMode = "transparent"
	}
	if cfg.Dataplane == "" {
		cfg.Dataplane = "iptables"
	}
	if cfg.ProxyMode == "" {
		cfg.ProxyMode = "iptables"
	}
	if cfg.Root == "" {
		cfg.Root = kubetest.ModuleRoot()
	}
	if cfg.ToolsDir == "" {
		cfg.ToolsDir = kubetest.ToolsDir()
	}
	if cfg.ImagesDir == "" {
		cfg.ImagesDir = filepath.Join(cfg.Root, "out", "images")
	}
	if m := MissingTools(cfg.ToolsDir); len(m) > 0 {
		return nil, fmt.Errorf("realcluster: %v not built in %s: run `hack/build-tools.sh control node`", m, cfg.ToolsDir)
	}
	if m := MissingHostTools(); len(m) > 0 {
		return nil, fmt.Errorf("realcluster: %v not installed: run `make deps`", m)
	}
	CleanLeftovers(cfg.Logf)
	c := &Cluster{cfg: cfg, cpPIDs: map[string]int{}}
	removeDir := false
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "acn-realcluster-"); err != nil {
			return nil, err
		}
		removeDir = true
	} else if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, err
	}
	c.cfg.Dir = cfg.Dir
	c.id = "acn-rc-" + randomID()
	c.stateFile = filepath.Join(registry, c.id+".json")
	c.st = state{Owner: owned.Self(), Dir: cfg.Dir, RemoveDir: removeDir}
	if err := os.MkdirAll(registry, 0o755); err != nil {
		return nil, err
	}
	if err := c.saveState(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	start := time.Now()
	images, err := c.images()
	if err != nil {
		return nil, err
	}
	if err := c.privateMountDir(); err != nil {
		return nil, err
	}
	c.Cluster, err = cluster.New(ctx, cluster.Config{Nodes: cfg.Nodes, CNIMode: cfg.CNIMode, NoNPM: true, RealNodes: true,
		Dir: filepath.Join(cfg.Dir, "sim"), Logf: cfg.Logf, BinDir: filepath.Join(cfg.Root, "out")})
	if c.Cluster != nil || err == nil {
		c.recordBase()
	}
	if err != nil {
		return nil, err
	}
	c.Kubeconfig = c.API.Kubeconfig
	c.recordBase()
	if err := c.startAzureHost(); err != nil {
		return nil, err
	}
	if err := c.startControllers(); err != nil {
		return nil, err
	}
	for _, base := range c.Cluster.Nodes {
		n, err := c.newNode(base)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
		if err := n.StartContainerd(ctx); err != nil {
			return nil, err
		}
		if err := n.ImportImages(images); err != nil {
			return nil, err
		}
		if cfg.RuntimeOnly {
			continue
		}
		if err := n.StartKubelet(ctx); err != nil {
			return nil, err
		}
		if err := n.StartKubeProxy(cfg.ProxyMode); err != nil {
			return nil, err
		}
	}
	if cfg.RuntimeOnly {
		return c, nil
	}
	if err := c.waitNodesRegistered(ctx, 2*time.Minute); err != nil {
		return nil, err
	}
	c.logf("real cluster: %d nodes registered in %.1fs", cfg.Nodes, time.Since(start).Seconds())
	if cfg.NoProduct {
		return c, nil
	}
	if err := c.InstallProduct(ctx); err != nil {
		return nil, err
	}
	c.logf("real cluster: CNI and NPM installed from the manifests, nodes Ready, in %.1fs", time.Since(start).Seconds())
	return c, nil
}

// images returns the tarballs every node imports: pause and agnhost (built
// here when missing) and the product's (make images).
func (c *Cluster) images() ([]string, error) {
	files, err := TestImages(c.cfg.Root, c.cfg.ToolsDir, filepath.Join(c.cfg.Root, "out", "images", "test"))
	if err != nil {
		return nil, err
	}
	if c.cfg.NoProduct || c.cfg.RuntimeOnly {
		return files, nil
	}
	product, _ := filepath.Glob(filepath.Join(c.cfg.ImagesDir, "*.tar"))
	if len(product) == 0 {
		return nil, fmt.Errorf("realcluster: no product images in %s: run `make images`", c.cfg.ImagesDir)
	}
	return append(files, product...), nil
}

// privateMountDir makes <Dir>/mnt a private mount: the nodes' mount
// namespaces are bound to files in it, which the kernel allows only where
// mounts do not propagate.
func (c *Cluster) privateMountDir() error {
	c.mntDir = filepath.Join(c.cfg.Dir, "mnt")
	if err := os.MkdirAll(c.mntDir, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount(c.mntDir, c.mntDir, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", c.mntDir, err)
	}
	c.st.MountDir = c.mntDir
	if err := c.saveState(); err != nil {
		return err
	}
	if err := syscall.Mount("", c.mntDir, "", syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", c.mntDir, err)
	}
	return nil
}

// recordBase puts the simulated cluster's namespaces and control-plane
// processes into the state file.
func (c *Cluster) recordBase() {
	if c.Cluster == nil {
		return
	}
	var names []string
	for _, ns := range []*netnstest.NS{c.VNet, c.CP} {
		if ns != nil {
			names = append(names, ns.Name)
		}
	}
	for _, n := range c.Cluster.Nodes {
		names = append(names, n.NS.Name)
	}
	c.mu.Lock()
	c.st.Netns = names
	if c.API != nil {
		for _, pid := range c.API.PIDs() {
			if !contains(c.st.PIDs, pid) {
				c.st.PIDs = append(c.st.PIDs, pid)
			}
		}
	}
	c.mu.Unlock()
	_ = c.saveState()
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// startAzureHost serves getinterfaceinfov1 at 168.63.129.16 in the VNet:
// each node (known by its source address) gets its NIC's addresses from
// the interfaces file the simulated cluster wrote for it.
func (c *Cluster) startAzureHost() error {
	if _, err := c.VNet.Exec("ip", "addr", "add", azureHostIP+"/32", "dev", "lo"); err != nil {
		return err
	}
	var ln net.Listener
	if err := c.VNet.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", azureHostIP+":80")
		return err
	}); err != nil {
		return err
	}
	byIP := map[netip.Addr]string{}
	for _, n := range c.Cluster.Nodes {
		byIP[n.IP] = filepath.Join(c.cfg.Dir, "sim", n.Name, "interfaces.json")
	}
	c.azureHost = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		file, ok := byIP[ap.Addr()]
		if err != nil || !ok || r.URL.Query().Get("type") != "getinterfaceinfov1" {
			http.Error(w, "unknown caller or request", http.StatusNotFound)
			return
		}
		data, err := os.ReadFile(file)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ifaces, err := ipam.ParseJSON(data)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		_ = xml.NewEncoder(w).Encode(ifaces)
	})}
	go func() { _ = c.azureHost.Serve(ln) }()
	return nil
}

// startControllers runs kube-controller-manager and kube-scheduler in the
// control-plane namespace.
func (c *Cluster) startControllers() error {
	kc := c.API.Kubeconfig
	for _, p := range []struct {
		name string
		args []string
	}{
		{"kube-controller-manager", []string{"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			// Each controller with its own service account: with the
			// manager's identity alone RBAC denies the root-CA publisher,
			// and pods wait for kube-root-ca.crt forever.
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + c.API.SAKeyFile, "--root-ca-file=" + c.API.CAFile,
			"--leader-elect=false", "--bind-address=127.0.0.1", "--cluster-name=" + c.id, "--v=1"}},
		{"kube-scheduler", []string{"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
			"--leader-elect=false", "--bind-address=127.0.0.1", "--v=1"}},
	} {
		logf, err := os.OpenFile(filepath.Join(c.cfg.Dir, p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		cmd := exec.Command("nsenter", append([]string{"--net=" + c.CP.Path, "--", filepath.Join(c.cfg.ToolsDir, p.name)}, p.args...)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		logf.Close()
		if err != nil {
			return fmt.Errorf("start %s: %w", p.name, err)
		}
		go func() { _ = cmd.Wait() }()
		c.cpPIDs[p.name] = cmd.Process.Pid
		c.mu.Lock()
		c.st.PIDs = append(c.st.PIDs, cmd.Process.Pid)
		c.mu.Unlock()
		if err := c.saveState(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) waitNodesRegistered(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil && len(nodes.Items) == len(c.Nodes) {
			return nil
		}
		for _, n := range c.Nodes {
			for _, d := range []string{"containerd", "kubelet", "kube-proxy"} {
				if !n.Running(d) {
					return fmt.Errorf("%s: %s exited; see %s", n.Name, d, n.Log(d))
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes not registered after %s (%v); see the kubelet logs in %s", timeout, err, c.cfg.Dir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitNodesReady waits until every node reports Ready (kubelet sees the
// CNI conflist: NetworkReady).
func (c *Cluster) WaitNodesReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		ready := 0
		var why []string
		if err == nil {
			for _, n := range nodes.Items {
				for _, cond := range n.Status.Conditions {
					if cond.Type == corev1.NodeReady {
						if cond.Status == corev1.ConditionTrue {
							ready++
						} else {
							why = append(why, n.Name+": "+cond.Message)
						}
					}
				}
			}
		}
		if ready == len(c.Nodes) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nodes not Ready after %s: %s", timeout, strings.Join(why, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Kubectl runs kubectl with the admin kubeconfig in the control-plane
// namespace and returns its combined output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + c.CP.Path, "--", filepath.Join(c.cfg.ToolsDir, "kubectl"), "--kubeconfig=" + c.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// KubectlCommand is the command line that reaches this cluster with
// kubectl from a shell of the machine.
func (c *Cluster) KubectlCommand() string {
	return fmt.Sprintf("ip netns exec %s %s --kubeconfig %s", c.CP.Name, filepath.Join(c.cfg.ToolsDir, "kubectl"), c.Kubeconfig)
}

// Root is the module root the cluster installs deploy/ from.
func (c *Cluster) Root() string { return c.cfg.Root }

// StateDir is where the cluster keeps its state and logs.
func (c *Cluster) StateDir() string { return c.cfg.Dir }

// Close stops every process and removes every mount, namespace, cgroup and
// file of the cluster.
func (c *Cluster) Close() {
	if c.azureHost != nil {
		_ = c.azureHost.Close()
	}
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	if err := teardown(st); err != nil {
		c.logf("real cluster teardown: %v", err)
	}
	_ = os.Remove(c.stateFile)
}

func (c *Cluster) saveState() error {
	c.mu.Lock()
	data, err := json.MarshalIndent(c.st, "", "  ")
	c.mu.Unlock()
	if err != nil {
		return err
	}
	tmp := c.stateFile + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, c.stateFile)
}

// teardown removes everything st records: each node's processes, mount
// namespace and cgroups, the other processes, the network namespaces, the
// private mount dir and (when the run made it) the state dir.
func teardown(st state) error {
	var errs []error
	for _, n := range st.Nodes {
		if err := killNode(n, st.PIDs); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(st.PIDs) - 1; i >= 0; i-- {
		kubetest.StopPID(st.PIDs[i])
	}
	for _, name := range st.Netns {
		if err := (&netnstest.NS{Name: name, Path: "/run/netns/" + name}).Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	if st.MountDir != "" {
		if err := syscall.Unmount(st.MountDir, 0); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
			errs = append(errs, fmt.Errorf("umount %s: %w", st.MountDir, err))
		}
	}
	if st.RemoveDir && strings.HasPrefix(filepath.Base(st.Dir), "acn-realcluster-") {
		_ = os.RemoveAll(st.Dir)
	}
	return errors.Join(errs...)
}

// CleanLeftovers tears down every run in the registry whose owner process
// is gone (a crashed test or harness); live runs are left alone.
func CleanLeftovers(logf func(string, ...any)) {
	files, _ := filepath.Glob(filepath.Join(registry, "*.json"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var st state
		if json.Unmarshal(data, &st) != nil || st.Owner.PID <= 1 || st.Owner.Alive() {
			continue
		}
		if logf != nil {
			logf("removing a dead real cluster run: %s (owner %d gone)", st.Dir, st.Owner.PID)
		}
		if err := teardown(st); err != nil && logf != nil {
			logf("leftover %s: %v", st.Dir, err)
		}
		_ = os.Remove(f)
	}
}

// Owner returns the state of the run kept in dir, if one is registered.
func Owner(dir string) (pid int, alive bool, stateFile string) {
	abs, _ := filepath.Abs(dir)
	files, _ := filepath.Glob(filepath.Join(registry, "*.json"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		var st state
		if err != nil || json.Unmarshal(data, &st) != nil || st.Dir != abs {
			continue
		}
		return st.Owner.PID, st.Owner.Alive(), f
	}
	return 0, false, ""
}

func randomID() string {
	b := make([]byte, 3)
	f, err := os.Open("/dev/urandom")
	if err == nil {
		_, _ = f.Read(b)
		f.Close()
	}
	return fmt.Sprintf("%x", b)
}

// Residue lists what of the cluster is still on the machine: processes,
// network namespaces, mounts, cgroups, the state file. Empty after Close.
func (c *Cluster) Residue() []string {
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	var out []string
	for _, pid := range st.PIDs {
		if kubetest.Alive(pid) {
			out = append(out, fmt.Sprintf("process %d", pid))
		}
	}
	for _, n := range c.Nodes {
		for _, pid := range inMountNS(n.mntInode) {
			out = append(out, fmt.Sprintf("process %d in %s's mount namespace", pid, n.Name))
		}
	}
	for _, n := range st.Nodes {
		mounts, _ := cgroupMounts()
		for _, m := range mounts {
			if _, err := os.Stat(filepath.Join(m, n.CgroupRoot)); err == nil {
				out = append(out, "cgroup "+filepath.Join(m, n.CgroupRoot))
			}
		}
	}
	for _, name := range st.Netns {
		if _, err := os.Stat("/run/netns/" + name); err == nil {
			out = append(out, "network namespace "+name)
		}
	}
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], st.Dir+"/") || len(f) > 4 && f[4] == st.Dir {
				out = append(out, "mount "+f[4])
			}
		}
	}
	if _, err := os.Stat(c.stateFile); err == nil {
		out = append(out, "state file "+c.stateFile)
	}
	return out
}

// eventually polls cond every 250 ms until it holds or timeout passes.
func eventually(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}
