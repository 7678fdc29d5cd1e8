//go:build linux

package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/cnicmd"
	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/failpoint"
	"github.com/open-acn/acn/cni/ipam"
	"github.com/open-acn/acn/cni/network"
)

// SupportedVersions are the CNI spec versions both plugins speak.
var SupportedVersions = version.PluginSupports(config.SpecVersions...)

// Steps where the hook fires, in the order an ADD or DEL passes them.
var (
	AddSteps = []string{"add:allocated", "add:veth", "add:pod", "add:host", "add:committed"}
	DelSteps = []string{"del:kernel", "del:released"}
)

// Plugin is one of the two binaries with its dependencies.
type Plugin struct {
	// Name is config.VnetPlugin or config.IPAMPlugin.
	Name string
	// NewLogger builds the logger for a parsed configuration (nil: nop).
	NewLogger func(cfg *config.NetConf) *zap.Logger
	// Stdout receives the result JSON (nil: os.Stdout).
	Stdout io.Writer
	// HTTPClient queries the Azure host (nil: 10 s timeout client).
	HTTPClient *http.Client
	// Hook runs at each step (nil: failpoint.FromEnv, which is nil in a
	// release build).
	Hook network.Hook
	// Now is the clock (nil: time.Now).
	Now func() time.Time
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
	return fmt.Sprintf("CNI plugin %s %s", name, ver)
}

// runner is the state of one invocation: what both platforms have
// (cnicmd.Invocation) and the Linux plugins' own.
type runner struct {
	cnicmd.Invocation
	p        *Plugin
	nl       *netlink.Handle
	paths    paths
	needVnet bool
	now      time.Time

	start    time.Time
	last     time.Time
	timings  []zap.Field
	lockWait time.Duration
	lockHeld time.Duration
}

func (p *Plugin) wrap(cmd string, f func(r *runner) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		r := &runner{p: p, start: time.Now(), needVnet: p.Name == config.VnetPlugin}
		r.Cmd, r.Args, r.Stdout = cmd, args, p.Stdout
		r.last = r.start
		cfg, err := config.Parse(args.StdinData, p.Name)
		if err != nil && cmd != "DEL" {
			// No config, no log destination from it: log with defaults.
			r.Log = cnicmd.NewLogger(p.NewLogger, nil)
			r.Log.Error(cmd, zap.String("containerID", args.ContainerID), zap.Error(err))
			_ = r.Log.Sync()
			return err
		}
		if err != nil {
			// Runtimes call DEL on every sandbox teardown, also after an
			// ADD this configuration made fail: DEL cleans up by
			// container ID from the plugin's own state whatever the
			// configuration says (a DEL that fails leaves the pod stuck
			// terminating until someone fixes the conflist).
			cfg = config.ForCleanup(args.StdinData)
			r.Note(zap.String("configError", err.Error()))
		}
		r.Cfg = cfg
		r.Log = cnicmd.NewLogger(p.NewLogger, cfg)
		defer func() { _ = r.Log.Sync() }()
		if err != nil {
			r.Log.Warn("DEL with a configuration that does not parse: cleaning up by container ID",
				zap.String("containerID", args.ContainerID), zap.String("ifName", args.IfName), zap.Error(err))
		}
		r.paths = pathsOf(cfg)
		r.Hook = p.Hook
		if r.Hook == nil {
			r.Hook = failpoint.FromEnv()
		}
		r.now = time.Now()
		if p.Now != nil {
			r.now = p.Now()
		}
		r.PodNamespace, r.PodName = cnicmd.K8sArgs(args.Args)
		if p.Name == config.VnetPlugin {
			if r.nl, err = netlinkHandle(); err != nil {
				return toCNIError(err, false)
			}
			defer r.nl.Close()
		}
		err = f(r)
		fields := append(r.LogFields(p.Name),
			zap.Duration("total", time.Since(r.start)),
			zap.Duration("lockWait", r.lockWait),
			zap.Duration("lockHeld", r.lockHeld),
			zap.Dict("steps", r.timings...))
		fields = append(fields, r.Notes...)
		if err != nil {
			cerr := toCNIError(err, remoteSource(cfg))
			r.Log.Error(cmd, append(fields, zap.Uint("code", cerr.Code), zap.String("error", cerr.Msg))...)
			return cerr
		}
		r.Log.Info(cmd, fields...)
		return nil
	}
}

// mark records the time since the previous mark under name.
func (r *runner) mark(name string) {
	now := time.Now()
	r.timings = append(r.timings, zap.Duration(name, now.Sub(r.last)))
	r.Log.Debug("step", zap.String("cmd", r.Cmd), zap.String("containerID", r.Args.ContainerID), zap.String("step", name), zap.Duration("took", now.Sub(r.last)))
	r.last = now
}

// pools reads the address source (outside any lock) and picks one pool
// per family of ipam.ipFamilies, in that order (primary first). A family
// the source has no pool for is a configuration error, before anything
// is allocated or created. maxAge < 0 uses the configured TTL; 0 forces
// a fresh query.
func (r *runner) pools(maxAge time.Duration) ([]*ipam.Pool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if r.Cfg.IPAM.Environment == config.EnvOverlay {
		blocks, err := ipam.OverlayBlocks(ctx, r.Cfg, maxAge, r.p.HTTPClient)
		if err != nil {
			return nil, err
		}
		var out []*ipam.Pool
		for _, b := range blocks {
			out = append(out, ipam.OverlayPool(b, r.p.Name == config.IPAMPlugin))
		}
		return out, nil
	}
	ifs, err := ipam.Source(ctx, r.Cfg, maxAge, r.p.HTTPClient)
	if err != nil {
		return nil, err
	}
	var out []*ipam.Pool
	for _, fam := range r.Cfg.IPAM.IPFamilies {
		p, err := ipam.SelectPool(ifs, r.Cfg, fam)
		if err != nil {
			return nil, config.Invalid("%v", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// allocate runs f under the lock; if a pool is exhausted and the source
// is the Azure host, the cache may be stale (the NIC may have got more
// addresses), so it is refreshed once and f retried.
func (r *runner) allocate(f func(t *tx, pools []*ipam.Pool) error) ([]*ipam.Pool, error) {
	pools, err := r.pools(-1)
	if err != nil {
		return nil, err
	}
	r.mark("source")
	err = r.locked(func(t *tx) error { return f(t, pools) })
	var ex *ipam.ExhaustedError
	if errors.As(err, &ex) && r.Cfg.IPAM.Environment == config.EnvAzure {
		if pools, err = r.pools(0); err != nil {
			return nil, err
		}
		err = r.locked(func(t *tx) error { return f(t, pools) })
	}
	return pools, err
}

// remoteSource says whether the address source is a remote service (the
// Azure host, the Kubernetes API server): failing to reach it is
// transient (code 11), unlike a missing local file.
func remoteSource(cfg *config.NetConf) bool {
	return cfg.IPAM.Environment == config.EnvAzure || (cfg.IPAM.Environment == config.EnvOverlay && cfg.IPAM.Kubeconfig != "")
}

// podAddress is the address as configured in the pod: the subnet's
// prefix in bridge mode (the pod is on the subnet's L2), a host prefix
// (/32, /128) in transparent mode (everything goes through the node).
func podAddress(ip string, pool *ipam.Pool, mode string) *net.IPNet {
	a := net.ParseIP(ip)
	if v4 := a.To4(); v4 != nil {
		a = v4
	}
	if mode == network.ModeTransparent {
		return &net.IPNet{IP: a, Mask: net.CIDRMask(len(a)*8, len(a)*8)}
	}
	return &net.IPNet{IP: a, Mask: pool.Subnet.Mask}
}

// resultFor builds the complete ADD result: interfaces (bridge, host veth,
// pod interface with its sandbox), the addresses on the pod interface
// (primary family first) with their gateways, routes and DNS.
func (r *runner) resultFor(containerID, ifName, netnsPath, mode string, ips []*net.IPNet, gws []net.IP, br *network.Bridge) *types100.Result {
	hostMAC, podMAC := network.MACs(containerID, ifName)
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion, DNS: r.Cfg.DNS}
	if mode == network.ModeBridge && br != nil {
		res.Interfaces = append(res.Interfaces, &types100.Interface{Name: br.Name, Mac: br.MAC.String()})
	}
	res.Interfaces = append(res.Interfaces,
		&types100.Interface{Name: network.HostVethName(containerID, ifName), Mac: hostMAC.String()},
		&types100.Interface{Name: ifName, Mac: podMAC.String(), Sandbox: netnsPath})
	idx := len(res.Interfaces) - 1
	for i, ip := range ips {
		res.IPs = append(res.IPs, &types100.IPConfig{Interface: &idx, Address: *ip, Gateway: gws[i]})
	}
	spec := network.Spec{Mode: mode, IPs: ips, Gateways: gws, ViaHost: r.Cfg.RoutedViaHost}
	if br != nil {
		spec.HostIP = br.HostIP
	}
	res.Routes = network.ResultRoutes(spec)
	return res
}

// status answers STATUS for both plugins: the state files are readable
// and the pool has a free address.
func (r *runner) status() error {
	if r.needVnet {
		if _, err := readVnet(r.paths); err != nil {
			return types.NewError(ErrPluginNotAvailable, "endpoint state unreadable: "+err.Error(), "")
		}
	}
	is, err := readIPAM(r.paths)
	if err != nil {
		return types.NewError(ErrPluginNotAvailable, "address state unreadable: "+err.Error(), "")
	}
	pools, err := r.pools(-1)
	if err != nil {
		return types.NewError(ErrPluginNotAvailable, "address source: "+err.Error(), "")
	}
	for _, pool := range pools {
		free := is.Free(pool)
		r.Note(zap.Uint64("free"+pool.Family(), free))
		r.Note(zap.String("pool"+pool.Family(), pool.Name()))
		if free == 0 {
			return types.NewError(ErrPluginNotAvailable, fmt.Sprintf("%s address pool %s has no free address (%d in use)", pool.Family(), pool.Name(), pool.Size()), "")
		}
	}
	return nil
}
