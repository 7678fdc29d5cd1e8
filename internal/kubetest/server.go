//go:build linux

// Package kubetest runs a real local Kubernetes control plane (etcd and
// kube-apiserver built by hack/build-tools.sh) for integration tests, the
// e2e harness, `make cluster-up` and the demo.
//
// The server runs either in the root network namespace bound to 127.0.0.1
// only, or inside a network namespace of the caller's making, bound to an
// address of that namespace's network (the way a real control plane sits on
// the VNet). In the latter case the returned client reaches it through a
// dialer that enters the namespace only for the dial; the root namespace is
// never changed.
package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
)

// Options describe where and how to run the control plane.
type Options struct {
	// Dir holds certificates, etcd data, logs and the kubeconfig. Required.
	Dir string
	// ToolsDir holds etcd and kube-apiserver; default: $ACN_TOOLS_DIR or
	// <module root>/out/tools.
	ToolsDir string
	// NetNS runs both processes inside this namespace; nil = root namespace.
	NetNS *netnstest.NS
	// Address the API server binds to; default 127.0.0.1. With NetNS, an
	// address of that namespace (e.g. its VNet address).
	Address string
	// SecurePort of the API server; 0 picks a free port (root namespace) or
	// 6443 (inside a private namespace).
	SecurePort int
	// Detach starts the processes in their own session so they outlive the
	// caller (make cluster-up); otherwise they die with the caller.
	Detach bool
	// ReadyTimeout bounds the wait for /readyz; default 60 s.
	ReadyTimeout time.Duration
	// Nodes configures the API server for real kubelets: the ServiceAccount
	// admission plugin (pods get their token volume), the lease endpoint
	// reconciler (the kubernetes Service gets endpoints, so in-cluster
	// clients reach it through kube-proxy) and a client certificate for
	// exec, logs and port-forward through the kubelets. Without it the
	// server suits harnesses that play the nodes themselves.
	Nodes bool
}

// Server is a running control plane.
type Server struct {
	// URL of the API server, e.g. https://127.0.0.1:34567.
	URL string
	// Kubeconfig is the path of an admin kubeconfig (system:masters).
	Kubeconfig string
	// Dir is Options.Dir.
	Dir string
	// NetNS is where the server runs (nil = root namespace).
	NetNS *netnstest.NS
	// StartupTime is how long the processes took to become ready.
	StartupTime time.Duration
	// CAFile signs the serving and client certificates (clients and
	// kubelets trust it); SAKeyFile signs service-account tokens
	// (kube-controller-manager needs it).
	CAFile, SAKeyFile string

	// pids of etcd and kube-apiserver, in start order. Kept as ints:
	// os.Process.Release sets Pid to -1, and kill(-1) signals everything.
	pids []int

	opts    Options
	certs   *pki
	apiArgs []string
}

// StopAPIServer kills kube-apiserver only (etcd keeps the data), as when a
// control plane is upgraded or crashes.
func (s *Server) StopAPIServer() {
	if len(s.pids) == 2 {
		killAndWait(s.pids[1])
		s.pids = s.pids[:1]
	}
}

// StartAPIServer starts kube-apiserver again with the same address,
// certificates and etcd, and waits until it is ready.
func (s *Server) StartAPIServer(ctx context.Context) error {
	if len(s.pids) != 1 {
		return errors.New("kubetest: StartAPIServer needs etcd running and kube-apiserver stopped")
	}
	if err := s.launch(s.opts, "kube-apiserver", s.apiArgs...); err != nil {
		return err
	}
	return s.waitReady(ctx, s.certs, s.opts.ReadyTimeout)
}

// PIDFile lists the PIDs of a detached server, one per line.
const PIDFile = "pids"

// ToolsDir returns where the control-plane binaries are expected.
func ToolsDir() string {
	if d := os.Getenv("ACN_TOOLS_DIR"); d != "" {
		return d
	}
	return filepath.Join(ModuleRoot(), "out", "tools")
}

// ModuleRoot walks up from the working directory to the project's go.mod.
func ModuleRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(data), "module github.com/open-acn/acn\n") {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// MissingTools names the control-plane binaries that are not built yet.
func MissingTools(dir string) []string {
	var missing []string
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// Start launches etcd and kube-apiserver and waits until /readyz is ok.
// On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("kubetest: Options.Dir is required")
	}
	if opts.ToolsDir == "" {
		opts.ToolsDir = ToolsDir()
	}
	if m := MissingTools(opts.ToolsDir); len(m) > 0 {
		return nil, fmt.Errorf("kubetest: %s not built in %s: run `make tools`", strings.Join(m, ", "), opts.ToolsDir)
	}
	if opts.Address == "" {
		opts.Address = "127.0.0.1"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	etcdPort, peerPort := 2379, 2380
	if opts.NetNS == nil {
		ports, err := freePorts(3)
		if err != nil {
			return nil, err
		}
		etcdPort, peerPort = ports[0], ports[1]
		if opts.SecurePort == 0 {
			opts.SecurePort = ports[2]
		}
	} else if opts.SecurePort == 0 {
		opts.SecurePort = 6443
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	bindIP := net.ParseIP(opts.Address)
	if bindIP == nil {
		return nil, fmt.Errorf("kubetest: address %q is not an IP", opts.Address)
	}
	certs, err := newPKI(opts.Dir, []net.IP{bindIP})
	if err != nil {
		return nil, fmt.Errorf("kubetest: certificates: %w", err)
	}

	start := time.Now()
	s := &Server{
		URL:        "https://" + net.JoinHostPort(opts.Address, strconv.Itoa(opts.SecurePort)),
		Kubeconfig: filepath.Join(opts.Dir, "admin.kubeconfig"),
		Dir:        opts.Dir,
		NetNS:      opts.NetNS,
		CAFile:     certs.CAFile,
		SAKeyFile:  certs.SAKey,
	}
	ok := false
	defer func() {
		if !ok {
			_ = s.Stop()
		}
	}()

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	if err := s.launch(opts, "etcd",
		"--name=acn-etcd",
		"--data-dir="+filepath.Join(opts.Dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", peerPort),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", peerPort),
		fmt.Sprintf("--initial-cluster=acn-etcd=http://127.0.0.1:%d", peerPort),
		"--unsafe-no-fsync",
		"--log-level=warn",
	); err != nil {
		return nil, err
	}
	s.opts, s.certs = opts, certs
	s.apiArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + opts.Address,
		"--advertise-address=" + opts.Address,
		fmt.Sprintf("--secure-port=%d", opts.SecurePort),
		"--tls-cert-file=" + certs.ServingCert,
		"--tls-private-key-file=" + certs.ServingKey,
		"--client-ca-file=" + certs.CAFile,
		"--service-account-key-file=" + certs.SAPub,
		"--service-account-signing-key-file=" + certs.SAKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		"--profiling=false",
		"--cert-dir=" + filepath.Join(opts.Dir, "apiserver-certs"),
		"--v=0",
	}
	if opts.Nodes {
		s.apiArgs = append(s.apiArgs,
			"--endpoint-reconciler-type=lease",
			"--kubelet-client-certificate="+certs.AdminCert,
			"--kubelet-client-key="+certs.AdminKey,
			"--kubelet-preferred-address-types=InternalIP")
	} else {
		s.apiArgs = append(s.apiArgs, "--disable-admission-plugins=ServiceAccount", "--endpoint-reconciler-type=none")
	}
	if err := s.launch(opts, "kube-apiserver", s.apiArgs...); err != nil {
		return nil, err
	}
	if err := writeKubeconfig(s.Kubeconfig, s.URL, certs); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, certs, opts.ReadyTimeout); err != nil {
		return nil, err
	}
	s.StartupTime = time.Since(start)
	if opts.Detach {
		var pids []string
		for _, pid := range s.pids {
			pids = append(pids, strconv.Itoa(pid))
		}
		if err := os.WriteFile(filepath.Join(opts.Dir, PIDFile), []byte(strings.Join(pids, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

func (s *Server) launch(opts Options, binary string, args ...string) error {
	path := filepath.Join(opts.ToolsDir, binary)
	var cmd *exec.Cmd
	if opts.NetNS != nil {
		// ip netns exec switches namespace then execs the binary, so the
		// PID (and the parent-death signal) stay the same.
		cmd = exec.Command("ip", append([]string{"netns", "exec", opts.NetNS.Name, path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	logf, err := os.OpenFile(filepath.Join(opts.Dir, binary+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if opts.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if opts.Detach { // outlives the caller: `make cluster-down` stops it
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("kubetest: start %s: %w", binary, err)
		}
		s.pids = append(s.pids, cmd.Process.Pid)
		_ = cmd.Process.Release()
		return nil
	}
	if err := owned.Start(cmd); err != nil {
		return fmt.Errorf("kubetest: start %s: %w", binary, err)
	}
	s.pids = append(s.pids, cmd.Process.Pid)
	go func() { _ = cmd.Wait(); owned.Exited(cmd.Process.Pid) }()
	return nil
}

// Dialer returns a DialContext that reaches the server: through the
// server's namespace when it runs in one, plain otherwise.
func (s *Server) Dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	if s.NetNS == nil {
		return (&net.Dialer{}).DialContext
	}
	ns := s.NetNS
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// RestConfig is an admin client configuration for the server.
func (s *Server) RestConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Dial = s.Dialer()
	cfg.QPS, cfg.Burst = 1000, 2000
	return cfg, nil
}

// Client is an admin clientset for the server.
func (s *Server) Client() (kubernetes.Interface, error) {
	cfg, err := s.RestConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// PIDs are the running control-plane processes (etcd, kube-apiserver).
func (s *Server) PIDs() []int { return append([]int(nil), s.pids...) }

// Stop kills the processes (apiserver first) and waits for them to exit.
// The state directory is left for the caller (tests use a TempDir).
func (s *Server) Stop() error {
	for i := len(s.pids) - 1; i >= 0; i-- {
		killAndWait(s.pids[i])
	}
	s.pids = nil
	return nil
}

// StopDetached stops a server started with Detach from its PID file and
// removes its state directory.
func StopDetached(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, PIDFile))
	if err == nil {
		lines := strings.Fields(string(data))
		for i := len(lines) - 1; i >= 0; i-- {
			if pid, err := strconv.Atoi(lines[i]); err == nil {
				killAndWait(pid)
			}
		}
	} else if !os.IsNotExist(err) {
		return err
	}
	return os.RemoveAll(dir)
}

// killAndWait sends SIGTERM, then SIGKILL after 5 s, and waits until the
// process is gone (a zombie of ours counts as gone).
func killAndWait(pid int) {
	// Never signal a process group or every process (pid <= 0) or init.
	if pid <= 1 || syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(time.Hour)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if pid <= 1 || syscall.Kill(pid, 0) != nil {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3 is the state; Z = zombie (exited, not yet reaped).
	f := strings.Fields(string(data))
	return len(f) < 3 || f[2] != "Z"
}

func (s *Server) waitReady(ctx context.Context, certs *pki, timeout time.Duration) error {
	caPEM, err := os.ReadFile(certs.CAFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(certs.AdminCert, certs.AdminKey)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext:     s.Dialer(),
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
		},
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, pid := range s.pids {
			if !alive(pid) {
				return fmt.Errorf("kubetest: a control-plane process exited; see %s/*.log", s.Dir)
			}
		}
		resp, err := client.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("kubetest: %s/readyz not ok after %s (last: %s); see %s/kube-apiserver.log", s.URL, timeout, last, s.Dir)
}

func writeKubeconfig(path, server string, certs *pki) error {
	read := func(p string) []byte { b, _ := os.ReadFile(p); return b }
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["acn-local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: read(certs.CAFile)}
	cfg.AuthInfos["acn-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: read(certs.AdminCert), ClientKeyData: read(certs.AdminKey)}
	cfg.Contexts["acn-local"] = &clientcmdapi.Context{Cluster: "acn-local", AuthInfo: "acn-admin", Namespace: "default"}
	cfg.CurrentContext = "acn-local"
	return clientcmd.WriteToFile(*cfg, path)
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// StopPID stops one process of ours: SIGTERM, SIGKILL after 5 s, and waits
// until it is gone. PIDs <= 1 are ignored.
func StopPID(pid int) { killAndWait(pid) }

// Alive reports whether pid runs (a zombie counts as gone).
func Alive(pid int) bool { return alive(pid) }
