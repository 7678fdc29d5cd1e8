// Package winplugin holds the command handlers of azure-vnet and
// azure-vnet-ipam on Windows nodes: ADD, DEL, CHECK, GC and STATUS over
// the Host Networking Service (VERSION is skel's).
//
// It is plain Go with no Windows dependency: HNS is the hns.HNS interface
// (the real one in cni/hns/hcn_windows.go, hns.Fake in tests), and the
// platform-neutral parts are those of the Linux plugins: config parses,
// ipam chooses the address from the same sources and state file, store
// keeps the state crash-safe under the node-wide file lock.
package winplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/cnicmd"
	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/failpoint"
	"github.com/open-acn/acn/cni/hns"
	"github.com/open-acn/acn/cni/ipam"
)

// SupportedVersions are the CNI spec versions both plugins speak.
var SupportedVersions = version.PluginSupports(config.SpecVersions...)

// Steps where the failpoint hook fires, in the order an ADD, DEL or GC
// passes them.
var (
	AddSteps = []string{"add:allocated", "add:network", "add:endpoint", "add:attached", "add:committed"}
	DelSteps = []string{"del:hns", "del:released"}
	GCSteps  = []string{"gc:hns"}
)

// Plugin is one of the two binaries with its dependencies.
type Plugin struct {
	// Name is config.VnetPlugin or config.IPAMPlugin.
	Name string
	// HNS is the Host Networking Service (hns.HCN{} on Windows).
	HNS hns.HNS
	// NewLogger builds the logger for a parsed configuration (nil: nop).
	NewLogger func(cfg *config.NetConf) *zap.Logger
	// Stdout receives the result JSON (nil: os.Stdout).
	Stdout io.Writer
	// HTTPClient queries the Azure host (nil: 10 s timeout client).
	HTTPClient *http.Client
	// Hook runs at each step (nil: failpoint.FromEnv()).
	Hook failpoint.Hook
}

// Funcs returns the skel callbacks.
func (p *Plugin) Funcs() skel.CNIFuncs {
	if p.Name == config.IPAMPlugin {
		return skel.CNIFuncs{
			Add:    p.wrap("ADD", (*runner).ipamAdd),
			Del:    p.wrap("DEL", (*runner).ipamDel),
			Check:  p.wrap("CHECK", (*runner).ipamCheck),
			GC:     p.wrap("GC", (*runner).ipamGC),
			Status: p.wrap("STATUS", (*runner).status),
		}
	}
	return skel.CNIFuncs{
		Add:    p.wrap("ADD", (*runner).vnetAdd),
		Del:    p.wrap("DEL", (*runner).vnetDel),
		Check:  p.wrap("CHECK", (*runner).vnetCheck),
		GC:     p.wrap("GC", (*runner).vnetGC),
		Status: p.wrap("STATUS", (*runner).status),
	}
}

// About is printed by skel when the binary runs without CNI_COMMAND.
func About(name, ver string) string {
	return fmt.Sprintf("CNI plugin %s %s (Windows, HNS)", name, ver)
}

// runner is the state of one invocation.
type runner struct {
	p        *Plugin
	cmd      string
	cfg      *config.NetConf
	win      *WinConf
	args     *skel.CmdArgs
	log      *zap.Logger
	h        hns.HNS
	paths    paths
	needVnet bool
	hook     failpoint.Hook
	now      time.Time
	notes    []zap.Field

	podName, podNamespace string
}

func (p *Plugin) wrap(cmd string, f func(r *runner) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		start := time.Now()
		r := &runner{p: p, cmd: cmd, args: args, h: p.HNS, now: start, needVnet: p.Name == config.VnetPlugin, hook: p.Hook}
		if r.hook == nil {
			r.hook = failpoint.FromEnv()
		}
		cfg, err := config.Parse(args.StdinData, p.Name)
		if err == nil && p.Name == config.VnetPlugin {
			r.cfg = cfg
			r.win, err = ParseWin(cfg)
		} else if err == nil {
			err = ipamOnly(cfg)
		}
		if err != nil {
			r.log = p.logger(nil)
			defer func() { _ = r.log.Sync() }()
			if cmd == "DEL" && p.Name == config.VnetPlugin {
				// DEL always succeeds: what ADD made is found by the
				// container ID alone (the endpoint's name).
				r.log.Warn(cmd+": configuration rejected; removing the container's endpoint by name", zap.String("containerID", args.ContainerID), zap.Error(err))
				if derr := r.delByContainer(); derr != nil {
					return toCNIError(derr, false)
				}
				return nil
			}
			r.log.Error(cmd, zap.String("containerID", args.ContainerID), zap.Error(err))
			return err
		}
		r.cfg = cfg
		r.log = p.logger(cfg)
		defer func() { _ = r.log.Sync() }()
		r.paths = pathsOf(cfg)
		r.podNamespace, r.podName = cnicmd.K8sArgs(args.Args)
		err = f(r)
		fields := []zap.Field{
			zap.String("plugin", p.Name),
			zap.String("containerID", args.ContainerID),
			zap.String("ifName", args.IfName),
			zap.String("netns", args.Netns),
			zap.String("network", cfg.Name),
			zap.String("cniVersion", cfg.CNIVersion),
			zap.Duration("total", time.Since(start)),
		}
		if r.podName != "" {
			fields = append(fields, zap.String("pod", r.podNamespace+"/"+r.podName))
		}
		fields = append(fields, r.notes...)
		if err != nil {
			cerr := toCNIError(err, cfg.IPAM.Environment == config.EnvAzure)
			r.log.Error(cmd, append(fields, zap.Uint("code", cerr.Code), zap.String("error", cerr.Msg))...)
			return cerr
		}
		r.log.Info(cmd, fields...)
		return nil
	}
}

// delByContainer is DEL without a usable configuration: the endpoint is
// found by its name, the state in the state directory of the environment
// (ACN_CNI_STATE_DIR) or the default one.
func (r *runner) delByContainer() error {
	a := r.args
	if _, err := r.removeEndpoint(hns.EndpointName(a.ContainerID, a.IfName)); err != nil {
		return err
	}
	r.cfg = &config.NetConf{StateDir: os.Getenv(config.EnvStateDir), LockTimeout: config.Duration(config.DefaultLockTimeout)}
	if r.cfg.StateDir == "" {
		r.cfg.StateDir = config.DefaultStateDir
	}
	r.paths = pathsOf(r.cfg)
	vs, _ := readVnet(r.paths)
	is, ierr := readIPAM(r.paths)
	if vs.Endpoints[cnicmd.Key(a.ContainerID, a.IfName)] == nil && ierr == nil && is.Find(a.ContainerID, a.IfName) == nil {
		return nil
	}
	return r.locked(func(t *tx) error { t.Release(a.ContainerID, a.IfName); return nil })
}

// ipamOnly checks what azure-vnet-ipam on Windows supports.
func ipamOnly(cfg *config.NetConf) error {
	if cfg.IPAM.Environment == config.EnvOverlay {
		return config.Invalid("ipam.environment %q is not supported on Windows nodes", config.EnvOverlay)
	}
	if len(cfg.IPAM.IPFamilies) != 1 || cfg.IPAM.IPFamilies[0] != config.IPv4 {
		return config.Invalid("ipam.ipFamilies %v: Windows nodes support [\"IPv4\"] only", cfg.IPAM.IPFamilies)
	}
	return nil
}

func (p *Plugin) logger(cfg *config.NetConf) *zap.Logger {
	if p.NewLogger == nil {
		return zap.NewNop()
	}
	if l := p.NewLogger(cfg); l != nil {
		return l
	}
	return zap.NewNop()
}

func (r *runner) note(f zap.Field) { r.notes = append(r.notes, f) }

func (r *runner) at(step string) error {
	if r.hook == nil {
		return nil
	}
	return r.hook(step)
}

func (r *runner) stdout() io.Writer {
	if r.p.Stdout != nil {
		return r.p.Stdout
	}
	return os.Stdout
}

// print writes res converted to the configuration's spec version.
func (r *runner) print(res *types100.Result) error {
	return cnicmd.Print(r.stdout(), res, r.cfg.CNIVersion)
}

func (r *runner) printStored(raw json.RawMessage) error {
	return cnicmd.PrintStored(r.stdout(), raw, r.cfg.CNIVersion)
}

// pool reads the address source (outside any lock) and picks the IPv4
// pool. maxAge < 0 uses the configured TTL; 0 forces a fresh query.
func (r *runner) pool(maxAge time.Duration) (*ipam.Pool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ifs, err := ipam.Source(ctx, r.cfg, maxAge, r.p.HTTPClient)
	if err != nil {
		return nil, err
	}
	p, err := ipam.SelectPool(ifs, r.cfg, config.IPv4)
	if err != nil {
		return nil, config.Invalid("%v", err)
	}
	return p, nil
}

// allocate runs f under the lock; an exhausted pool from the Azure host
// is refreshed once (the NIC may have got more addresses) and f retried.
func (r *runner) allocate(f func(t *tx, pool *ipam.Pool) error) (*ipam.Pool, error) {
	pool, err := r.pool(-1)
	if err != nil {
		return nil, err
	}
	err = r.locked(func(t *tx) error { return f(t, pool) })
	var ex *ipam.ExhaustedError
	if errors.As(err, &ex) && r.cfg.IPAM.Environment == config.EnvAzure {
		if pool, err = r.pool(0); err != nil {
			return nil, err
		}
		err = r.locked(func(t *tx) error { return f(t, pool) })
	}
	return pool, err
}

// namespaceGUID is CNI_NETNS on Windows: the GUID of the pod's HNS
// namespace, which the runtime created. GUIDs are compared ignoring case
// (HNS may answer in upper case what the runtime passed in lower case).
var namespaceGUID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (r *runner) namespace() (string, error) {
	ns := r.args.Netns
	if !namespaceGUID.MatchString(ns) {
		return "", types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_NETNS %q: want the GUID of the pod's HNS namespace", ns), "")
	}
	return ns, nil
}

// checkIfName refuses interface names that would make the endpoint's
// name ambiguous (see hns.EndpointName).
func (r *runner) checkIfName() error {
	if n := r.args.IfName; n == "" || strings.ContainsAny(n, "_/\\") || len(n) > 64 {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_IFNAME %q: want 1-64 characters without '_', '/' or '\\'", n), "")
	}
	return nil
}

// macToColons turns HNS's 00-15-5D-.. into the result's 00:15:5d:...
func macToColons(m string) string {
	if hw, err := net.ParseMAC(strings.ReplaceAll(m, "-", ":")); err == nil {
		return hw.String()
	}
	return m
}

// resultFor builds the ADD result of an endpoint.
func (r *runner) resultFor(ep *hns.Endpoint, nsID, ifName string) *types100.Result {
	idx := 0
	ip := net.ParseIP(ep.IP).To4()
	gw := net.ParseIP(ep.Gateway).To4()
	res := &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{{Name: ifName, Mac: macToColons(ep.MAC), Sandbox: nsID}},
		IPs:        []*types100.IPConfig{{Interface: &idx, Address: net.IPNet{IP: ip, Mask: net.CIDRMask(int(ep.PrefixLength), 32)}, Gateway: gw}},
		Routes:     []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw}},
		DNS:        ResultDNS(ep.DNS),
	}
	return res
}

// prevResult decodes the prevResult of CHECK into the current types.
func (r *runner) prevResult() (*types100.Result, error) {
	if r.cfg.RawPrevResult == nil {
		return nil, config.Invalid("prevResult: missing (CHECK needs the result of ADD)")
	}
	b, err := json.Marshal(r.cfg.RawPrevResult)
	if err != nil {
		return nil, err
	}
	res, err := version.NewResult(r.cfg.CNIVersion, b)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	return types100.NewResultFromResult(res)
}

// status answers STATUS for both plugins: the state files are readable,
// HNS answers, and the pool has a free address.
func (r *runner) status() error {
	if r.needVnet {
		if _, err := readVnet(r.paths); err != nil {
			return types.NewError(cnicmd.ErrPluginNotAvailable, "endpoint state unreadable: "+err.Error(), "")
		}
		if _, err := r.h.NetworkByName(r.cfg.Name); err != nil && !errors.Is(err, hns.ErrNotFound) {
			return types.NewError(cnicmd.ErrPluginNotAvailable, "HNS: "+err.Error(), "")
		}
	}
	is, err := readIPAM(r.paths)
	if err != nil {
		return types.NewError(cnicmd.ErrPluginNotAvailable, "address state unreadable: "+err.Error(), "")
	}
	pool, err := r.pool(-1)
	if err != nil {
		return types.NewError(cnicmd.ErrPluginNotAvailable, "address source: "+err.Error(), "")
	}
	free := is.Free(pool)
	r.note(zap.Uint64("free", free))
	if free == 0 {
		return types.NewError(cnicmd.ErrPluginNotAvailable, fmt.Sprintf("address pool %s has no free address (%d in use)", pool.Name(), pool.Size()), "")
	}
	return nil
}

// ErrHNSRejected: HNS refused a request (a policy it does not accept, an
// address or host port in use); the message is HNS's. The other codes
// are those of the Linux plugins, cnicmd's.
const ErrHNSRejected uint = 105

// netnsError is a pod namespace HNS does not know (code 8).
type netnsError struct{ err error }

func (e *netnsError) Error() string { return e.err.Error() }
func (e *netnsError) Unwrap() error { return e.err }

// toCNIError maps an error to a CNI error with the right code
// (cnicmd.ToError's, plus the pod namespace's and HNS's).
func toCNIError(err error, remoteSource bool) *types.Error {
	if cerr, ok := cnicmd.ToError(err, remoteSource); ok {
		return cerr
	}
	var ne *netnsError
	var rj *hns.RejectedError
	switch {
	case errors.As(err, &ne):
		return types.NewError(types.ErrInvalidNetNS, err.Error(), "")
	case errors.As(err, &rj):
		return types.NewError(ErrHNSRejected, err.Error(), "")
	}
	return types.NewError(types.ErrInternal, err.Error(), "")
}
