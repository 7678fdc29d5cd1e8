//go:build linux

package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/open-acn/acn/internal/kubetest"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/daemon"
	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/policy"
)

// deployDir is this package's directory (deploy/).
func deployDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate deploy_test.go")
	}
	return filepath.Dir(file)
}

// kubectl returns the kubectl built by hack/build-tools.sh, or skips.
func kubectl(t testing.TB) string {
	t.Helper()
	k := filepath.Join(kubetest.ToolsDir(), "kubectl")
	if st, err := os.Stat(k); err != nil || st.Mode()&0o111 == 0 {
		netnstest.Skip(t, "kubectl not built in %s: run `make tools` (make test does)", kubetest.ToolsDir())
	}
	return k
}

// runKubectl runs kubectl against the server; stdin may be nil.
func runKubectl(t testing.TB, k, kubeconfig string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(k, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// manifests lists every Kubernetes manifest under deploy/ (YAML files other
// than kustomization.yaml), relative to deploy/.
func manifests(t testing.TB) []string {
	t.Helper()
	root := deployDir(t)
	var files []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ext := filepath.Ext(path)
		if d.IsDir() || (ext != ".yaml" && ext != ".yml") || d.Name() == "kustomization.yaml" {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		files = append(files, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// TestManifestsOnAPIServer applies every manifest under deploy/ and the
// rendered kustomization with --dry-run=server, then applies the RBAC for
// real and impersonates the service account.
func TestManifestsOnAPIServer(t *testing.T) {
	t.Parallel()
	k := kubectl(t)
	srv := kubetest.StartForTest(t)
	kc := srv.Kubeconfig
	dir := deployDir(t)

	// The examples live in namespace demo (the demo creates it).
	if out, err := runKubectl(t, k, kc, nil, "create", "namespace", "demo"); err != nil {
		t.Fatalf("create namespace demo: %v\n%s", err, out)
	}

	files := manifests(t)
	for _, want := range []string{"npm/rbac.yaml", "npm/service.yaml", "npm/linux/configmap.yaml", "npm/linux/daemonset.yaml", "npm/windows/configmap.yaml", "npm/windows/daemonset.yaml", "cni/daemonset.yaml"} {
		if !contains(files, want) {
			t.Errorf("manifest %s missing from deploy/ (found %v)", want, files)
		}
	}
	for _, f := range files {
		t.Run("dry-run/"+f, func(t *testing.T) {
			out, err := runKubectl(t, k, kc, nil, "apply", "--dry-run=server", "-f", filepath.Join(dir, f))
			if err != nil {
				t.Fatalf("kubectl apply --dry-run=server -f %s: %v\n%s", f, err, out)
			}
			if !strings.Contains(out, "(server dry run)") {
				t.Errorf("unexpected kubectl output:\n%s", out)
			}
		})
	}

	t.Run("dry-run/kustomize", func(t *testing.T) {
		rendered, err := exec.Command(k, "kustomize", filepath.Join(dir, "npm")).Output()
		if err != nil {
			t.Fatalf("kubectl kustomize deploy/npm: %v", err)
		}
		out, err := runKubectl(t, k, kc, rendered, "apply", "--dry-run=server", "-f", "-")
		if err != nil {
			t.Fatalf("kubectl apply --dry-run=server of the kustomization: %v\n%s", err, out)
		}
		// Every object of the kustomization is accepted.
		for _, obj := range []string{
			"serviceaccount/azure-npm", "clusterrole.rbac.authorization.k8s.io/azure-npm",
			"clusterrolebinding.rbac.authorization.k8s.io/azure-npm", "configmap/azure-npm-config",
			"configmap/azure-npm-win-config", "service/azure-npm-metrics",
			"daemonset.apps/azure-npm", "daemonset.apps/azure-npm-win",
		} {
			if !strings.Contains(out, obj+" created (server dry run)") {
				t.Errorf("%s not in the dry run output:\n%s", obj, out)
			}
		}
	})

	for _, kz := range []struct{ dir, want string }{
		{"cni", "daemonset.apps/azure-cni created"},
		{"cni-file-ipam", "configmap/azure-cni-conflist-"},
	} {
		t.Run("dry-run/kustomize "+kz.dir, func(t *testing.T) {
			rendered, err := exec.Command(k, "kustomize", filepath.Join(dir, kz.dir)).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize deploy/%s: %v", kz.dir, err)
			}
			out, err := runKubectl(t, k, kc, rendered, "apply", "--dry-run=server", "-f", "-")
			if err != nil {
				t.Fatalf("kubectl apply --dry-run=server of deploy/%s: %v\n%s", kz.dir, err, out)
			}
			for _, want := range []string{"daemonset.apps/azure-cni created (server dry run)", kz.want} {
				if !strings.Contains(out, want) {
					t.Errorf("%q not in the dry run output:\n%s", want, out)
				}
			}
		})
	}

	t.Run("rbac", func(t *testing.T) {
		out, err := runKubectl(t, k, kc, nil, "apply", "-f", filepath.Join(dir, "npm", "rbac.yaml"))
		if err != nil {
			t.Fatalf("kubectl apply rbac.yaml: %v\n%s", err, out)
		}
		// kubectl auth can-i resolves a resource by discovery: the
		// ClusterNetworkPolicy CRD (which deploy/npm installs) must be served.
		crd := filepath.Join(dir, "network-policy-api", "standard", crdFile)
		if out, err := runKubectl(t, k, kc, nil, "apply", "--server-side", "-f", crd); err != nil {
			t.Fatalf("kubectl apply the CRD: %v\n%s", err, out)
		}
		if out, err := runKubectl(t, k, kc, nil, "wait", "--for=condition=established", "--timeout=60s", "crd/clusternetworkpolicies.policy.networking.k8s.io"); err != nil {
			t.Fatalf("CRD not established: %v\n%s", err, out)
		}
		const sa = "system:serviceaccount:kube-system:azure-npm"
		canI := func(verb, resource string, extra ...string) bool {
			args := append([]string{"auth", "can-i", verb, resource, "--as=" + sa}, extra...)
			out, err := runKubectl(t, k, kc, nil, args...)
			// The answer is the last line (warnings come first).
			lines := strings.Split(strings.TrimSpace(out), "\n")
			ans := strings.TrimSpace(lines[len(lines)-1])
			switch {
			case err == nil && ans == "yes":
				return true
			case ans == "no" || strings.HasPrefix(ans, "no - "):
				return false
			}
			t.Fatalf("kubectl auth can-i %s %s: %v\n%s", verb, resource, err, out)
			return false
		}
		// The authorizer may take a moment to see the new binding.
		deadline := time.Now().Add(10 * time.Second)
		for !canI("list", "pods", "--all-namespaces") {
			if time.Now().After(deadline) {
				t.Fatal("the service account cannot list pods 10s after applying rbac.yaml")
			}
			time.Sleep(200 * time.Millisecond)
		}
		for _, res := range []string{"pods", "namespaces", "nodes", "networkpolicies.networking.k8s.io", "clusternetworkpolicies.policy.networking.k8s.io", "services", "endpointslices.discovery.k8s.io"} {
			for _, verb := range []string{"get", "list", "watch"} {
				if !canI(verb, res, "--all-namespaces") {
					t.Errorf("azure-npm cannot %s %s cluster-wide", verb, res)
				}
			}
		}
		denied := [][2]string{
			{"create", "pods"}, {"delete", "pods"}, {"update", "pods"}, {"patch", "pods"},
			{"update", "pods/status"}, {"create", "pods/exec"},
			{"get", "secrets"}, {"list", "secrets"}, {"get", "configmaps"},
			{"create", "networkpolicies.networking.k8s.io"}, {"update", "networkpolicies.networking.k8s.io"},
			{"delete", "networkpolicies.networking.k8s.io"},
			{"create", "clusternetworkpolicies.policy.networking.k8s.io"}, {"update", "clusternetworkpolicies.policy.networking.k8s.io/status"},
			{"delete", "namespaces"}, {"create", "namespaces"},
			{"update", "nodes"}, {"patch", "nodes/status"}, {"create", "services"}, {"update", "services"}, {"delete", "endpointslices.discovery.k8s.io"},
			{"create", "events"}, {"create", "leases.coordination.k8s.io"},
			{"list", "daemonsets.apps"}, {"create", "serviceaccounts/token"},
			{"impersonate", "serviceaccounts"}, {"escalate", "clusterroles.rbac.authorization.k8s.io"},
			{"*", "*"},
		}
		for _, d := range denied {
			if canI(d[0], d[1], "--all-namespaces") {
				t.Errorf("azure-npm can %s %s: the ClusterRole grants more than get/list/watch on pods, namespaces, nodes, networkpolicies, clusternetworkpolicies, services, endpointslices", d[0], d[1])
			}
			if canI(d[0], d[1], "-n", "kube-system") {
				t.Errorf("azure-npm can %s %s in kube-system", d[0], d[1])
			}
		}

		// Everything it can do: only our three resources with get/list/watch,
		// plus what every authenticated identity gets (self reviews, discovery).
		out, err = runKubectl(t, k, kc, nil, "auth", "can-i", "--list", "--as="+sa, "-n", "default")
		if err != nil {
			t.Fatalf("kubectl auth can-i --list: %v\n%s", err, out)
		}
		basic := map[string]bool{
			"selfsubjectreviews.authentication.k8s.io":      true,
			"selfsubjectaccessreviews.authorization.k8s.io": true,
			"selfsubjectrulesreviews.authorization.k8s.io":  true,
		}
		ours := map[string]bool{"pods": true, "namespaces": true, "nodes": true, "networkpolicies.networking.k8s.io": true, "clusternetworkpolicies.policy.networking.k8s.io": true, "services": true, "endpointslices.discovery.k8s.io": true}
		seen := map[string]bool{}
		for _, line := range strings.Split(out, "\n")[1:] {
			// Resources  Non-Resource URLs  Resource Names  [verb verb ...]
			i := strings.LastIndex(line, "[")
			if i < 0 {
				continue
			}
			verbs, rest := line[i:], strings.Fields(line[:i])
			if len(rest) == 0 {
				t.Errorf("can-i --list: cannot parse %q", line)
				continue
			}
			res := rest[0]
			switch {
			case ours[res]:
				seen[res] = true
				if verbs != "[get list watch]" {
					t.Errorf("can-i --list: %s verbs %s, want [get list watch]", res, verbs)
				}
			case basic[res]:
				if verbs != "[create]" {
					t.Errorf("can-i --list: %s verbs %s, want [create]", res, verbs)
				}
			case strings.HasPrefix(res, "[/"):
				// non-resource URLs (discovery, /healthz...): get only.
				if verbs != "[get]" {
					t.Errorf("can-i --list: non-resource %s verbs %s, want [get]", line, verbs)
				}
			default:
				t.Errorf("can-i --list: unexpected permission %q", line)
			}
		}
		for r := range ours {
			if !seen[r] {
				t.Errorf("can-i --list does not show %s:\n%s", r, out)
			}
		}
	})

	t.Run("daemon as the service account", func(t *testing.T) {
		if out, err := runKubectl(t, k, kc, nil, "apply", "-f", filepath.Join(dir, "npm", "rbac.yaml")); err != nil {
			t.Fatalf("kubectl apply rbac.yaml: %v\n%s", err, out)
		}
		runDaemonAsServiceAccount(t, srv, k)
	})
}

// countingDataplane stands in for the kernel: the test checks the daemon's
// access to the API, not its rules.
type countingDataplane struct{ applies atomic.Int64 }

func (c *countingDataplane) Apply(context.Context, *policy.State, *policy.Changes) error {
	c.applies.Add(1)
	return nil
}
func (c *countingDataplane) Reconcile(context.Context) (int, error) { return 0, nil }
func (c *countingDataplane) Cleanup(context.Context) error          { return nil }
func (c *countingDataplane) Objects(string) []dataplane.Object      { return nil }
func (c *countingDataplane) RuleCount() int                         { return 0 }

// runDaemonAsServiceAccount runs the real daemon with the Linux ConfigMap's
// config and the credentials of a token of kube-system/azure-npm: with only
// the shipped RBAC it must sync its informers (/healthz), program the first
// full sync (/readyz) and follow a change by watch.
func runDaemonAsServiceAccount(t *testing.T, srv *kubetest.Server, k string) {
	kc := srv.Kubeconfig
	token, err := exec.Command(k, "--kubeconfig", kc, "-n", "kube-system", "create", "token", "azure-npm", "--duration=10m").Output()
	if err != nil {
		t.Fatalf("kubectl create token azure-npm: %v", err)
	}
	admin, err := srv.RestConfig()
	if err != nil {
		t.Fatal(err)
	}
	saCfg := rest.AnonymousClientConfig(admin)
	saCfg.BearerToken = strings.TrimSpace(string(token))
	client, err := kubernetes.NewForConfig(saCfg)
	if err != nil {
		t.Fatal(err)
	}

	var cm corev1.ConfigMap
	readObject(t, "npm/linux/configmap.yaml", &cm)
	path := filepath.Join(t.TempDir(), "azure-npm.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["azure-npm.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// The DaemonSet sets NODE_NAME (t.Setenv is not allowed in a parallel test).
	cfg.NodeName = "node-1"
	cfg.MetricsAddr = "127.0.0.1:0"                                // the test's own port, not the host's 10091
	cfg.SocketPath = filepath.Join(t.TempDir(), "run", "npm.sock") // nor the host's /run/azure-npm
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	dp := &countingDataplane{}
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), Client: client, Dataplane: dp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon.Run: %v", err)
		}
	}()
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	addr, err := d.Addr(actx)
	acancel()
	if err != nil {
		t.Fatalf("daemon did not listen: %v", err)
	}
	get := func(p string) int {
		resp, err := http.Get("http://" + addr + p)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for get("/healthz") != http.StatusOK || get("/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon, as the azure-npm service account, is not healthy and ready after 30s (/healthz %d, /readyz %d)", get("/healthz"), get("/readyz"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The policy selects no pod of this node, so the kernel does not
	// change (the dataplane sees no transaction): the daemon's record of
	// what it has taken in says whether it saw the policy.
	before := d.Status().AppliedResourceVersions["policy"]
	pol := filepath.Join(deployDir(t), "examples", "deny-all.yaml")
	if out, err := runKubectl(t, k, kc, nil, "apply", "-f", pol); err != nil {
		t.Fatalf("kubectl apply deny-all: %v\n%s", err, out)
	}
	for d.Status().AppliedResourceVersions["policy"] <= before {
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not see a NetworkPolicy created after its start (watch)")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// readObject decodes the one object of a manifest file.
func readObject(t testing.TB, rel string, into any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// configKeys lists the dotted JSON keys of config.Config: every key the
// daemon reads from its file.
func configKeys(typ reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, configKeys(f.Type, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

// flatKeys lists the dotted keys of a decoded YAML document.
func flatKeys(m map[string]any, prefix string) []string {
	var keys []string
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			keys = append(keys, flatKeys(sub, prefix+k+".")...)
			continue
		}
		keys = append(keys, prefix+k)
	}
	return keys
}

// loadConfigMap extracts azure-npm.yaml from a ConfigMap manifest, writes it
// to a file and loads it with the daemon's own loader.
func loadConfigMap(t *testing.T, rel string) (config.Config, []string) {
	t.Helper()
	var cm corev1.ConfigMap
	readObject(t, rel, &cm)
	if cm.Kind != "ConfigMap" || cm.Namespace != "kube-system" {
		t.Fatalf("%s: kind %q namespace %q, want a ConfigMap in kube-system", rel, cm.Kind, cm.Namespace)
	}
	if len(cm.Data) != 1 {
		t.Fatalf("%s: data keys %v, want exactly azure-npm.yaml", rel, cm.Data)
	}
	text, ok := cm.Data["azure-npm.yaml"]
	if !ok {
		t.Fatalf("%s: no data key azure-npm.yaml", rel)
	}
	path := filepath.Join(t.TempDir(), "azure-npm.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("%s: config.Load: %v", rel, err)
	}
	// Merge onto a zero Config too: the file alone must carry every value,
	// not lean on Default().
	var fromFile config.Config
	if err := config.Merge(&fromFile, []byte(text)); err != nil {
		t.Fatalf("%s: config.Merge: %v", rel, err)
	}
	if !reflect.DeepEqual(fromFile, cfg) {
		t.Errorf("%s: the file alone gives %+v, on the defaults %+v: a key is missing", rel, fromFile, cfg)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	keys := flatKeys(doc, "")
	sort.Strings(keys)
	want := configKeys(reflect.TypeOf(config.Config{}), "")
	sort.Strings(want)
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("%s: keys %v, want every key the daemon reads %v", rel, keys, want)
	}
	return cfg, keys
}

// TestConfigMapsLoadWithDaemonConfig parses each ConfigMap's file with
// npm/config and compares it to the defaults.
func TestConfigMapsLoadWithDaemonConfig(t *testing.T) {
	t.Run("linux", func(t *testing.T) {
		cfg, _ := loadConfigMap(t, "npm/linux/configmap.yaml")
		if want := config.Default(); !reflect.DeepEqual(cfg, want) {
			t.Errorf("linux ConfigMap differs from config.Default():\n got %+v\nwant %+v", cfg, want)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("linux ConfigMap does not validate: %v", err)
		}
	})
	t.Run("windows", func(t *testing.T) {
		cfg, _ := loadConfigMap(t, "npm/windows/configmap.yaml")
		// The documented deviations from the Linux defaults.
		want := config.Default()
		want.Dataplane = config.DataplaneHNS
		want.Log.File = `C:\k\azure-npm.log`
		want.SocketPath = `C:\ProgramData\azure-npm\npm.sock`
		if !reflect.DeepEqual(cfg, want) {
			t.Errorf("windows ConfigMap:\n got %+v\nwant %+v (Linux defaults with the documented deviations)", cfg, want)
		}
		// hns and a C:\ path only validate on Windows; everything else must here.
		cfg.Dataplane = config.DataplaneIPTables
		cfg.SocketPath = config.DefaultSocketPath()
		if err := cfg.Validate(); err != nil {
			t.Errorf("windows ConfigMap does not validate (dataplane aside): %v", err)
		}
	})
}

// TestDaemonSetsMatchDaemon checks the DaemonSets against what the daemon
// reads and serves: the config mount, the metrics port, the node name, the
// privileges, and the shared RBAC and Service.
func TestDaemonSetsMatchDaemon(t *testing.T) {
	metricsPort := func(cfgRel string) int32 {
		var cm corev1.ConfigMap
		readObject(t, cfgRel, &cm)
		var c config.Config
		if err := config.Merge(&c, []byte(cm.Data["azure-npm.yaml"])); err != nil {
			t.Fatal(err)
		}
		_, port, _ := strings.Cut(c.MetricsAddr, ":")
		var p int32
		if err := json.Unmarshal([]byte(port), &p); err != nil {
			t.Fatalf("%s: metricsAddr %q", cfgRel, c.MetricsAddr)
		}
		return p
	}
	var svc corev1.Service
	readObject(t, "npm/service.yaml", &svc)

	check := func(t *testing.T, dsRel, cfgRel, os, configArg string) *appsv1.DaemonSet {
		var ds appsv1.DaemonSet
		readObject(t, dsRel, &ds)
		var cm corev1.ConfigMap
		readObject(t, cfgRel, &cm)
		spec := ds.Spec.Template.Spec
		if ds.Namespace != "kube-system" {
			t.Errorf("namespace %q", ds.Namespace)
		}
		if spec.ServiceAccountName != "azure-npm" {
			t.Errorf("serviceAccountName %q, want azure-npm (bound by rbac.yaml)", spec.ServiceAccountName)
		}
		if !spec.HostNetwork {
			t.Error("hostNetwork must be true")
		}
		if spec.PriorityClassName != "system-node-critical" {
			t.Errorf("priorityClassName %q", spec.PriorityClassName)
		}
		if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" || spec.Tolerations[0].Effect != "" {
			t.Errorf("tolerations %+v, want one {operator: Exists} (every taint)", spec.Tolerations)
		}
		if spec.NodeSelector["kubernetes.io/os"] != os {
			t.Errorf("nodeSelector %v, want kubernetes.io/os: %s", spec.NodeSelector, os)
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%d containers", len(spec.Containers))
		}
		c := spec.Containers[0]
		if len(c.Args) == 0 || c.Args[0] != "start" || !contains(c.Args, configArg) {
			t.Errorf("args %v, want start ... %s", c.Args, configArg)
		}
		var nodeName bool
		for _, e := range c.Env {
			if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
				nodeName = true
			}
		}
		if !nodeName {
			t.Error("NODE_NAME is not set from spec.nodeName")
		}
		port := metricsPort(cfgRel)
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.LivenessProbe.HTTPGet.Port.IntVal != port {
			t.Errorf("livenessProbe %+v, want GET /healthz on %d", c.LivenessProbe, port)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port.IntVal != port {
			t.Errorf("readinessProbe %+v, want GET /readyz on %d", c.ReadinessProbe, port)
		}
		if len(c.Ports) != 1 || c.Ports[0].ContainerPort != port {
			t.Errorf("ports %+v, want %d", c.Ports, port)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
		}
		// GOMEMLIMIT (the Go runtime's soft limit) sits below the container's.
		var memLimit string
		for _, e := range c.Env {
			if e.Name == "GOMEMLIMIT" {
				memLimit = e.Value
			}
		}
		if q, err := resource.ParseQuantity(strings.Replace(memLimit, "iB", "i", 1)); err != nil || q.Cmp(*c.Resources.Limits.Memory()) >= 0 {
			t.Errorf("GOMEMLIMIT %q, want a size below the memory limit %s", memLimit, c.Resources.Limits.Memory())
		}
		// The config volume is the ConfigMap, mounted where --config points.
		var cfgVol string
		for _, v := range spec.Volumes {
			if v.ConfigMap != nil {
				if v.ConfigMap.Name != cm.Name {
					t.Errorf("config volume %q uses ConfigMap %q, want %q", v.Name, v.ConfigMap.Name, cm.Name)
				}
				cfgVol = v.Name
			}
		}
		var mounted bool
		for _, m := range c.VolumeMounts {
			if m.Name == cfgVol && m.MountPath == "/etc/azure-npm" && m.ReadOnly {
				mounted = true
			}
		}
		if cfgVol == "" || !mounted {
			t.Errorf("ConfigMap %s not mounted read-only at /etc/azure-npm: volumes %+v mounts %+v", cm.Name, spec.Volumes, c.VolumeMounts)
		}
		// The metrics Service selects these pods.
		for k, v := range svc.Spec.Selector {
			if ds.Spec.Template.Labels[k] != v {
				t.Errorf("service selector %v does not select the pods (labels %v)", svc.Spec.Selector, ds.Spec.Template.Labels)
			}
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.IntVal != port {
			t.Errorf("service ports %+v, want target %d", svc.Spec.Ports, port)
		}
		return &ds
	}

	t.Run("linux", func(t *testing.T) {
		ds := check(t, "npm/linux/daemonset.yaml", "npm/linux/configmap.yaml", "linux", "--config=/etc/azure-npm/azure-npm.yaml")
		if ds.Name != "azure-npm" {
			t.Errorf("name %q, want azure-npm", ds.Name)
		}
		c := ds.Spec.Template.Spec.Containers[0]
		sc := c.SecurityContext
		if sc == nil {
			t.Fatal("no securityContext")
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Error("privileged: NET_ADMIN and NET_RAW are enough")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("readOnlyRootFilesystem must be true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation must be false")
		}
		if sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("capabilities %+v, want drop ALL, add NET_ADMIN NET_RAW", sc.Capabilities)
		}
		hostPaths := map[string]corev1.HostPathVolumeSource{}
		for _, v := range ds.Spec.Template.Spec.Volumes {
			if v.HostPath != nil {
				hostPaths[v.Name] = *v.HostPath
			}
		}
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = m.Name
		}
		// The log file's directory and the xtables lock, nothing else of the host.
		var cm corev1.ConfigMap
		readObject(t, "npm/linux/configmap.yaml", &cm)
		var cfg config.Config
		if err := config.Merge(&cfg, []byte(cm.Data["azure-npm.yaml"])); err != nil {
			t.Fatal(err)
		}
		for path, typ := range map[string]corev1.HostPathType{filepath.Dir(cfg.Log.File): corev1.HostPathDirectory, "/run/xtables.lock": corev1.HostPathFileOrCreate} {
			hp, ok := hostPaths[mounts[path]]
			if !ok || hp.Path != path || hp.Type == nil || *hp.Type != typ {
				t.Errorf("host path %s not mounted at %s with type %s (volumes %+v, mounts %v)", path, path, typ, hostPaths, mounts)
			}
		}
		if len(hostPaths) != 2 {
			t.Errorf("host paths %v, want only the log directory and /run/xtables.lock", hostPaths)
		}
		// The root file system is read-only: the local socket's directory
		// is an emptyDir of the pod (not of the host), reached with
		// kubectl exec.
		sockDir := filepath.Dir(cfg.SocketPath)
		emptyDir := false
		for _, v := range ds.Spec.Template.Spec.Volumes {
			if v.Name == mounts[sockDir] && v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory {
				emptyDir = true
			}
		}
		if !emptyDir {
			t.Errorf("the socket directory %s is not an in-memory emptyDir (mounts %v)", sockDir, mounts)
		}
	})
	t.Run("windows", func(t *testing.T) {
		ds := check(t, "npm/windows/daemonset.yaml", "npm/windows/configmap.yaml", "windows", `--config=%CONTAINER_SANDBOX_MOUNT_POINT%\etc\azure-npm\azure-npm.yaml`)
		spec := ds.Spec.Template.Spec
		wo := spec.SecurityContext
		if wo == nil || wo.WindowsOptions == nil || wo.WindowsOptions.HostProcess == nil || !*wo.WindowsOptions.HostProcess ||
			wo.WindowsOptions.RunAsUserName == nil || *wo.WindowsOptions.RunAsUserName != `NT AUTHORITY\SYSTEM` {
			t.Errorf("pod securityContext %+v, want windowsOptions hostProcess true, runAsUserName NT AUTHORITY\\SYSTEM", wo)
		}
		if spec.OS == nil || spec.OS.Name != corev1.Windows {
			t.Errorf("os %+v, want windows", spec.OS)
		}
		if !contains(spec.Containers[0].Args, "--dataplane=hns") {
			t.Errorf("args %v, want --dataplane=hns", spec.Containers[0].Args)
		}
		if ds.Spec.Selector.MatchLabels["k8s-app"] == "azure-npm" {
			t.Error("the Windows DaemonSet's selector overlaps the Linux one's")
		}
	})
}
