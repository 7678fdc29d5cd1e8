//go:build linux

package winplugin_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/open-acn/acn/cni/cnitest"
	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/hns"
	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/winplugin"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// binDir holds azure-vnet and azure-vnet-ipam: the fakehns command built
// with the failpoints tag, under both names.
var binDir string

// conflistPath is the shipped Windows conflist every test starts from.
const conflistPath = "../../deploy/cni/10-azure-windows.conflist"

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "acn-winplugin-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	cmd := exec.Command(cnitest.GoTool(), "build", "-tags", "failpoints", "-o", filepath.Join(dir, config.VnetPlugin), "github.com/open-acn/acn/cni/winplugin/fakehns")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err == nil {
		err = os.Link(filepath.Join(dir, config.VnetPlugin), filepath.Join(dir, config.IPAMPlugin))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "build the fake-HNS plugins:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// node is a simulated Windows node: a fake HNS in a file that every
// plugin process shares, the state directory, the interfaces file, and
// libcni running the plugins.
type node struct {
	t       testing.TB
	dir     string
	ff      hns.FileFake
	cni     *libcni.CNIConfig
	mu      sync.Mutex
	envNext []string
}

// tmpRoot is where node directories go: tmpfs when there is one (state
// writes fsync; on Windows the state dir is a disk, here speed matters
// more than realism).
func tmpRoot() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return ""
}

func newNode(t testing.TB, secondaries int) *node {
	dir, err := os.MkdirTemp(tmpRoot(), "acn-winplugin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := cnitest.WriteInterfacesDual(filepath.Join(dir, "interfaces.json"), secondaries, 0); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, dir: dir, ff: hns.FileFake{Path: filepath.Join(dir, "hns.json")}}
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{binDir}, filepath.Join(dir, "cache"), &execEnv{n: n})
	return n
}

// execEnv runs the plugins with the node's fake HNS, state and log.
type execEnv struct {
	n *node
	version.PluginDecoder
}

func (e *execEnv) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	environ = append(environ, "ACN_FAKE_HNS_FILE="+e.n.ff.Path, config.EnvStateDir+"="+e.n.dir,
		config.EnvLogFile+"="+filepath.Join(e.n.dir, "plugin.log"))
	e.n.mu.Lock()
	environ = append(environ, e.n.envNext...)
	e.n.mu.Unlock()
	return (&invoke.RawExec{Stderr: os.Stderr}).ExecPlugin(ctx, path, stdin, environ)
}

func (e *execEnv) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// setEnv sets extra environment for the following runs (failpoints).
func (n *node) setEnv(kv ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.envNext = kv
}

// conf is the shipped Windows conflist at cniVersion v, with the file
// address source of this node and mutate applied to the plugin.
func (n *node) conf(v string, mutate func(p map[string]interface{})) *libcni.NetworkConfigList {
	n.t.Helper()
	raw, err := os.ReadFile(conflistPath)
	if err != nil {
		n.t.Fatal(err)
	}
	var l map[string]interface{}
	if err := json.Unmarshal(raw, &l); err != nil {
		n.t.Fatal(err)
	}
	l["cniVersion"] = v
	p := l["plugins"].([]interface{})[0].(map[string]interface{})
	ip := p["ipam"].(map[string]interface{})
	ip["environment"] = config.EnvFile
	ip["interfacesFile"] = filepath.Join(n.dir, "interfaces.json")
	if mutate != nil {
		mutate(p)
	}
	b, err := json.Marshal(l)
	if err != nil {
		n.t.Fatal(err)
	}
	cl, err := libcni.ConfListFromBytes(b)
	if err != nil {
		n.t.Fatal(err)
	}
	return cl
}

type pod struct {
	name, id, ns string
	caps         map[string]interface{}
}

// guid derives a GUID-shaped namespace ID from a name.
func guid(name string) string {
	h := sha256.Sum256([]byte(name))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// newPod is a pod whose HNS namespace exists (the runtime made it).
func (n *node) newPod(name string) *pod {
	p := &pod{name: name, id: fmt.Sprintf("%x", sha256.Sum256([]byte("container/"+name))), ns: guid("ns/" + name)}
	if err := n.ff.Update(func(f *hns.Fake) error { return f.CreateNamespace(p.ns) }); err != nil {
		n.t.Fatal(err)
	}
	return p
}

func (p *pod) rt() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: p.id, NetNS: p.ns, IfName: "eth0", CapabilityArgs: p.caps,
		Args: [][2]string{{"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", p.name}}}
}

func (n *node) add(l *libcni.NetworkConfigList, p *pod) (*types100.Result, error) {
	r, err := n.cni.AddNetworkList(context.Background(), l, p.rt())
	if err != nil {
		return nil, err
	}
	return types100.NewResultFromResult(r)
}

func (n *node) mustAdd(l *libcni.NetworkConfigList, p *pod) *types100.Result {
	n.t.Helper()
	r, err := n.add(l, p)
	if err != nil {
		n.t.Fatalf("ADD %s: %v", p.name, err)
	}
	return r
}

func (n *node) del(l *libcni.NetworkConfigList, p *pod) error {
	return n.cni.DelNetworkList(context.Background(), l, p.rt())
}

func (n *node) mustDel(l *libcni.NetworkConfigList, p *pod) {
	n.t.Helper()
	if err := n.del(l, p); err != nil {
		n.t.Fatalf("DEL %s: %v", p.name, err)
	}
}

func (n *node) gc(l *libcni.NetworkConfigList, valid ...*pod) error {
	args := &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}}
	for _, p := range valid {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: p.id, IfName: "eth0"})
	}
	return n.cni.GCNetworkList(context.Background(), l, args)
}

// fake is the HNS as the plugins left it.
func (n *node) fake() *hns.Fake {
	n.t.Helper()
	f, err := n.ff.Load()
	if err != nil {
		n.t.Fatal(err)
	}
	return f
}

// state reads the plugins' state files.
func (n *node) state() (*winplugin.VnetState, *ipam.State) {
	n.t.Helper()
	vs := &winplugin.VnetState{}
	if b, err := os.ReadFile(filepath.Join(n.dir, winplugin.VnetStateFile)); err == nil {
		if err := json.Unmarshal(b, vs); err != nil {
			n.t.Fatal(err)
		}
	}
	is := ipam.NewState()
	if b, err := os.ReadFile(filepath.Join(n.dir, winplugin.IPAMStateFile)); err == nil {
		if err := json.Unmarshal(b, is); err != nil {
			n.t.Fatal(err)
		}
	}
	return vs, is
}

// assertEmpty: no endpoint in HNS or the state, no address held, and the
// network (if made) still there, once.
func (n *node) assertEmpty(what string) {
	n.t.Helper()
	f := n.fake()
	if eps := f.AllEndpoints(); len(eps) != 0 {
		n.t.Fatalf("%s: HNS still has %d endpoints, first %s", what, len(eps), eps[0].Name)
	}
	vs, is := n.state()
	if len(vs.Endpoints) != 0 || len(is.Allocations) != 0 {
		n.t.Fatalf("%s: state still has %d endpoints, %d allocations", what, len(vs.Endpoints), len(is.Allocations))
	}
	if nws := f.Networks(); len(nws) > 1 {
		n.t.Fatalf("%s: %d HNS networks, want at most one", what, len(nws))
	}
	for _, ns := range f.Snapshot().Namespaces {
		if len(ns) != 0 {
			n.t.Fatalf("%s: a namespace still holds endpoints %v", what, ns)
		}
	}
}

// cniCode is the CNI error code of err (0 if it is not a CNI error).
func cniCode(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}
