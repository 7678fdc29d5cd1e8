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
	cnicmd.Invocation
	p        *Plugin
	win      *WinConf
	h        hns.HNS
	paths    paths
	needVnet bool
	now      time.Time
}

func (p *Plugin) wrap(cmd string, f func(r *runner) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		start := time.Now()
		r := &runner{p: p, h: p.HNS, now: start, needVnet: p.Name == config.VnetPlugin}
		r.Cmd, r.Args, r.Stdout, r.Hook = cmd, args, p.Stdout, p.Hook
		if r.Hook == nil {
			r.Hook = failpoint.FromEnv()
		}
		cfg, err := config.Parse(args.StdinData, p.Name)
		if err == nil && p.Name == config.VnetPlugin {
			r.Cfg = cfg
			r.win, err = ParseWin(cfg)
		} else if err == nil {
			err = ipamOnly(cfg)
		}
		if err != nil {
			r.Log = cnicmd.NewLogger(p.NewLogger, nil)
			defer func() { _ = r.Log.Sync() }()
			if cmd == "DEL" && p.Name == config.VnetPlugin {
				// DEL always succeeds: what ADD made is found by the
				// container ID alone (the endpoint's name).
				r.Log.Warn(cmd+": configuration rejected; removing the container's endpoint by name", zap.String("containerID", args.ContainerID), zap.Error(err))
				if derr := r.delByContainer(); derr != nil {
					return toCNIError(derr, false)
				}
				return nil
			}
			r.Log.Error(cmd, zap.String("containerID", args.ContainerID), zap.Error(err))
			return err
		}
		r.Cfg = cfg
		r.Log = cnicmd.NewLogger(p.NewLogger, cfg)
		defer func() { _ = r.Log.Sync() }()
		r.paths = pathsOf(cfg)
		r.PodNamespace, r.PodName = cnicmd.K8sArgs(args.Args)
		err = f(r)
		fields := append(r.LogFields(p.Name), zap.Duration("total", time.Since(start)))
		fields = append(fields, r.Notes...)
		if err != nil {
			cerr := toCNIError(err, cfg.IPAM.Environment == config.EnvAzure)
			r.Log.Error(cmd, append(fields, zap.Uint("code", cerr.Code), zap.String("error", cerr.Msg))...)
			return cerr
		}
		r.Log.Info(cmd, fields...)
		return nil
	}
}

// delByContainer is DEL without a usable configuration: the endpoint is
// found by its name, the state in the state directory of the environment
// (ACN_CNI_STATE_DIR) or the default one.
func (r *runner) delByContainer() error {
	a := r.Args
	if _, err := r.removeEndpoint(hns.EndpointName(a.ContainerID, a.IfName)); err != nil {
		return err
	}
	r.Cfg = &config.NetConf{StateDir: os.Getenv(config.EnvStateDir), LockTimeout: config.Duration(config.DefaultLockTimeout)}
	if r.Cfg.StateDir == "" {
		r.Cfg.StateDir = config.DefaultStateDir
	}
	r.paths = pathsOf(r.Cfg)
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

// pool reads the address source (outside any lock) and picks the IPv4
// pool. maxAge < 0 uses the configured TTL; 0 forces a fresh query.
func (r *runner) pool(maxAge time.Duration) (*ipam.Pool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ifs, err := ipam.Source(ctx, r.Cfg, maxAge, r.p.HTTPClient)
	if err != nil {
		return nil, err
	}
	p, err := ipam.SelectPool(ifs, r.Cfg, config.IPv4)
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
	if errors.As(err, &ex) && r.Cfg.IPAM.Environment == config.EnvAzure {
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
	ns := r.Args.Netns
	if !namespaceGUID.MatchString(ns) {
		return "", types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_NETNS %q: want the GUID of the pod's HNS namespace", ns), "")
	}
	return ns, nil
}

// checkIfName refuses interface names that would make the endpoint's
// name ambiguous (see hns.EndpointName).
func (r *runner) checkIfName() error {
	if n := r.Args.IfName; n == "" || strings.ContainsAny(n, "_/\\") || len(n) > 64 {
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

// status answers STATUS for both plugins: the state files are readable,
// HNS answers, and the pool has a free address.
func (r *runner) status() error {
	if r.needVnet {
		if _, err := readVnet(r.paths); err != nil {
			return types.NewError(cnicmd.ErrPluginNotAvailable, "endpoint state unreadable: "+err.Error(), "")
		}
		if _, err := r.h.NetworkByName(r.Cfg.Name); err != nil && !errors.Is(err, hns.ErrNotFound) {
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
	r.Note(zap.Uint64("free", free))
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
