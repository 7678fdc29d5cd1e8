//go:build linux

package realcluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/open-acn/acn/internal/kubetest"
	"github.com/open-acn/acn/test/cluster"
)

// privatePaths are the host paths each node gets its own copy of: bound
// over, inside the node's mount namespace, with a directory of the node's
// state dir. kubelet writes some of them whatever its flags say (device
// plugin and pod-resources sockets, /var/log/pods), the CNI installer
// DaemonSet writes /opt/cni/bin and /etc/cni/net.d through hostPath
// volumes, and azure-vnet keeps its state in /run/azure-vnet; without
// these binds two nodes would share them.
var privatePaths = []string{
	"/var/lib/kubelet", "/var/log", "/var/lib/containerd", "/run/containerd",
	"/opt/cni/bin", "/etc/cni/net.d", "/run/azure-vnet", "/var/lib/cni", "/opt/containerd",
}

// kernelTunables are the sysctls kubelet sets at start to the values it
// wants (pkg/kubelet/cm setupKernelTunables). They are not per network
// namespace, so each node's mount namespace binds files holding those
// values over them: kubelet reads what it wants and writes nothing to the
// machine.
var kernelTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// Node is one node of the real cluster: the network namespace of the
// simulated cluster plus a persistent mount namespace in which its
// containerd, kubelet and kube-proxy run.
type Node struct {
	*cluster.Node
	c          *Cluster
	dir        string // the node's state, logs and private directories
	mntFile    string // the bind-mounted mount namespace
	cgroupRoot string // kubelet's cgroupRoot, in every v1 hierarchy
	mntInode   uint64 // the mount namespace's inode (to find its processes)
	daemons    map[string]*daemon
}

type daemon struct {
	pid  int
	done chan struct{}
}

// newNode prepares n's directories, cgroups and mount namespace.
func (c *Cluster) newNode(base *cluster.Node) (*Node, error) {
	n := &Node{Node: base, c: c, dir: filepath.Join(c.cfg.Dir, base.Name),
		mntFile:    filepath.Join(c.mntDir, base.Name),
		cgroupRoot: "/" + c.id + "-" + base.Name,
		daemons:    map[string]*daemon{}}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, err
	}
	c.st.Nodes = append(c.st.Nodes, nodeState{Name: n.Name, MountFile: n.mntFile, CgroupRoot: n.cgroupRoot})
	if err := c.saveState(); err != nil {
		return nil, err
	}
	if err := createCgroups(n.cgroupRoot); err != nil {
		return nil, err
	}
	if err := n.mountNamespace(); err != nil {
		return nil, err
	}
	return n, nil
}

// mountNamespace creates the node's mount namespace, bound to n.mntFile:
// sysfs of the node's network namespace (what `ip netns exec` does, but
// once), the cgroup tree bound back over it, the node's private
// directories, and the kernel tunables kubelet wants.
func (n *Node) mountNamespace() error {
	if err := os.WriteFile(n.mntFile, nil, 0o600); err != nil {
		return err
	}
	var script strings.Builder
	script.WriteString("set -e\n")
	// Copies of other namespaces' files (ip netns, other nodes) would keep
	// those namespaces alive as long as this one: drop them here.
	script.WriteString(`sed -n 's/^[^ ]* [^ ]* [^ ]* [^ ]* \([^ ]*\) .* - nsfs .*/\1/p' /proc/self/mountinfo | while read -r m; do umount -l "$m" 2>/dev/null || true; done` + "\n")
	cg := filepath.Join(n.dir, ".cgroup")
	fmt.Fprintf(&script, "mkdir -p %[1]s\nmount --rbind /sys/fs/cgroup %[1]s\nmount -t sysfs sysfs /sys\nmount --move %[1]s /sys/fs/cgroup\n", cg)
	for _, p := range privatePaths {
		backing := filepath.Join(n.dir, "root", p)
		if err := os.MkdirAll(backing, 0o755); err != nil {
			return err
		}
		// The mount point must exist; an empty directory on the host is
		// all this leaves behind.
		fmt.Fprintf(&script, "mkdir -p %[2]s\nmount --bind %[1]s %[2]s\n", backing, p)
	}
	for key, val := range kernelTunables {
		f := filepath.Join(n.dir, "sysctl", strings.ReplaceAll(key, "/", "."))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, []byte(val+"\n"), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&script, "mount --bind %s /proc/sys/%s\n", f, key)
	}
	cmd := exec.Command("nsenter", "--net="+n.NS.Path, "--", "unshare", "--mount="+n.mntFile, "--propagation", "private", "--", "sh", "-c", script.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: mount namespace: %v: %s", n.Name, err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(n.mntFile, &st); err != nil {
		return err
	}
	n.mntInode = st.Ino
	return nil
}

// start runs argv as daemon name inside the node's network and mount
// namespaces (nsenter execs it, so the PID is the daemon's), logging to
// <node dir>/<name>.log. It dies with the harness.
func (n *Node) start(name string, argv ...string) error {
	logf, err := os.OpenFile(filepath.Join(n.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", append([]string{"--mount=" + n.mntFile, "--net=" + n.NS.Path, "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start %s: %w", n.Name, name, err)
	}
	d := &daemon{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.done) }()
	n.daemons[name] = d
	n.c.st.PIDs = append(n.c.st.PIDs, d.pid)
	return n.c.saveState()
}

// Stop kills daemon name ("containerd", "kubelet", "kube-proxy") with
// SIGKILL, as a crash would, and waits until it is gone.
func (n *Node) Stop(name string) {
	if d := n.daemons[name]; d != nil {
		_ = syscall.Kill(d.pid, syscall.SIGKILL)
		<-d.done
		delete(n.daemons, name)
	}
}

// Running reports whether daemon name runs.
func (n *Node) Running(name string) bool {
	d := n.daemons[name]
	if d == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// HostPath is where the host sees path p of the node's private directories
// (privatePaths), e.g. /etc/cni/net.d.
func (n *Node) HostPath(p string) string { return filepath.Join(n.dir, "root", p) }

// ContainerdSocket is the node's containerd socket as the host sees it.
func (n *Node) ContainerdSocket() string { return n.containerdSock() }

// CgroupRoot is the node's cgroup root (kubelet's cgroupRoot).
func (n *Node) CgroupRoot() string { return n.cgroupRoot }

// Log is the path of a daemon's log on the node.
func (n *Node) Log(name string) string { return filepath.Join(n.dir, name+".log") }

// containerdSock is the node's containerd socket as the host sees it.
func (n *Node) containerdSock() string {
	return filepath.Join(n.dir, "root", "run", "containerd", "containerd.sock")
}

// StartContainerd starts the node's containerd and waits for its socket.
func (n *Node) StartContainerd(ctx context.Context) error {
	conf := filepath.Join(n.dir, "containerd.toml")
	// CRI settings this machine needs (and a real node would not mind):
	// restrict_oom_score_adj because the capability bounding set lacks
	// CAP_SYS_RESOURCE (runc fails every sandbox otherwise), pod netns
	// files under the node's own state dir instead of the machine's
	// /run/netns, no AppArmor.
	toml := fmt.Sprintf(`version = 2
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing"]
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
`, PauseImage)
	if err := os.WriteFile(conf, []byte(toml), 0o644); err != nil {
		return err
	}
	if err := n.start("containerd", "containerd", "--config", conf); err != nil {
		return err
	}
	return n.waitFor(ctx, "containerd", 30*time.Second, func() bool {
		_, err := os.Stat(n.containerdSock())
		return err == nil
	})
}

// ImportImages imports image tarballs into the node's containerd (the
// namespace CRI uses), as `ctr images import` would on a real node.
func (n *Node) ImportImages(files []string) error {
	for _, f := range files {
		cmd := exec.Command("ctr", "--address", n.containerdSock(), "--namespace", "k8s.io", "images", "import", f)
		cmd.Dir = n.dir
		// Run inside the node's mount namespace: unpacking mounts snapshots.
		cmd = exec.Command("nsenter", append([]string{"--mount=" + n.mntFile, "--net=" + n.NS.Path, "--"}, cmd.Args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: import %s: %v: %s", n.Name, filepath.Base(f), err, out)
		}
	}
	return nil
}

// StartKubelet writes the node's kubelet configuration and starts it.
func (n *Node) StartKubelet(ctx context.Context) error {
	conf := filepath.Join(n.dir, "kubelet.yaml")
	// cgroup v1 needs failCgroupV1: false; the cgroupfs driver under this
	// node's own cgroupRoot (created beforehand in every hierarchy) keeps
	// the two kubelets apart. Eviction and image GC thresholds are off: the
	// machine's disk is shared, and a node must not evict because another
	// process filled it.
	yaml := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
volumePluginDir: /var/lib/kubelet/volumeplugins
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %s
authorization:
  mode: Webhook
failSwapOn: false
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%%"
  imagefs.available: "0%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
maxPods: 60
serializeImagePulls: false
`, n.cgroupRoot, n.IP, n.c.API.CAFile)
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		return err
	}
	return n.start("kubelet", filepath.Join(n.c.cfg.ToolsDir, "kubelet"),
		"--config="+conf, "--kubeconfig="+n.c.API.Kubeconfig,
		"--root-dir=/var/lib/kubelet", "--cert-dir=/var/lib/kubelet/pki",
		"--hostname-override="+n.Name, "--node-ip="+n.IP.String(), "--v=1")
}

// StartKubeProxy starts kube-proxy in mode (iptables or nftables), with
// the simulated cluster's configuration (cluster.KubeProxyConfig).
// clusterCIDR is the VNet (pods and nodes): traffic from pods to a
// ClusterIP keeps its pod source address, which policies match on.
func (n *Node) StartKubeProxy(mode string) error {
	conf := filepath.Join(n.dir, "kube-proxy.yaml")
	yaml := cluster.KubeProxyConfig(cluster.KubeProxyParams{Kubeconfig: n.c.API.Kubeconfig, NodeName: n.Name, Mode: mode, ClusterCIDR: VNetPrefix})
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		return err
	}
	return n.start("kube-proxy", filepath.Join(n.c.cfg.ToolsDir, "kube-proxy"), "--config="+conf, "--v=1")
}

// waitFor polls ok until it holds, the daemon exits or timeout passes.
func (n *Node) waitFor(ctx context.Context, name string, timeout time.Duration, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if !n.Running(name) {
			return fmt.Errorf("%s: %s exited; see %s", n.Name, name, n.Log(name))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not ready after %s; see %s", n.Name, name, timeout, n.Log(name))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// cgroupMounts lists the mount points of the machine's cgroup hierarchies
// (v1 controllers, named hierarchies and the v2 "unified" one).
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && (fields[i+1] == "cgroup" || fields[i+1] == "cgroup2") {
				out = append(out, fields[4])
			}
		}
	}
	return out, sc.Err()
}

// createCgroups makes root in every hierarchy; cpuset needs its cpus and
// mems before any child can take a task.
func createCgroups(root string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		dir := filepath.Join(m, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if data, err := os.ReadFile(filepath.Join(m, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
					return fmt.Errorf("cgroup %s: %w", filepath.Join(dir, f), err)
				}
			}
		}
	}
	return nil
}

// cgroupPIDs lists the processes in root and below, in every hierarchy.
func cgroupPIDs(root string) []int {
	mounts, _ := cgroupMounts()
	seen := map[int]bool{}
	var out []int
	for _, m := range mounts {
		_ = filepath.Walk(filepath.Join(m, root), func(p string, info os.FileInfo, err error) error {
			if err != nil || !info.IsDir() {
				return nil
			}
			data, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
					seen[pid] = true
					out = append(out, pid)
				}
			}
			return nil
		})
	}
	return out
}

// removeCgroups removes root and everything below it in every hierarchy,
// deepest first. The kernel frees a memory cgroup a moment after its last
// task, so busy directories are retried for a while.
func removeCgroups(root string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var last error
	for _, m := range mounts {
		var dirs []string
		_ = filepath.Walk(filepath.Join(m, root), func(p string, info os.FileInfo, err error) error {
			if err == nil && info.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			for try := 0; ; try++ {
				err := syscall.Rmdir(dirs[i])
				if err == nil || err == syscall.ENOENT {
					break
				}
				if try == 100 {
					last = fmt.Errorf("rmdir %s: %w", dirs[i], err)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	return last
}

// mountNSPIDs lists the processes whose mount namespace is the one bound
// at file (the node's daemons and containerd's shims).
func mountNSPIDs(file string) []int {
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil {
		return nil
	}
	return inMountNS(st.Ino)
}

// inMountNS lists the processes in the mount namespace with inode ino.
func inMountNS(ino uint64) []int {
	if ino == 0 {
		return nil
	}
	want := fmt.Sprintf("mnt:[%d]", ino)
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "mnt")); err == nil && link == want {
			out = append(out, pid)
		}
	}
	return out
}

// killNode kills every process of a node (kubelet first, so it restarts
// nothing): its daemons, containerd's shims and every container, found by
// the node's mount namespace and cgroups; then it unmounts the mount
// namespace, which takes every mount made inside it along, and removes
// the cgroups.
func killNode(ns nodeState, daemonPIDs []int) error {
	for _, pid := range daemonPIDs {
		if kubetest.Alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for round := 0; round < 50; round++ {
		pids := append(mountNSPIDs(ns.MountFile), cgroupPIDs(ns.CgroupRoot)...)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			if pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	var errs []string
	if err := syscall.Unmount(ns.MountFile, 0); err != nil && err != syscall.EINVAL && err != syscall.ENOENT {
		errs = append(errs, fmt.Sprintf("umount %s: %v", ns.MountFile, err))
	}
	_ = os.Remove(ns.MountFile)
	if err := removeCgroups(ns.CgroupRoot); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("node %s: %s", ns.Name, strings.Join(errs, "; "))
	}
	return nil
}
