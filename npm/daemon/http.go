package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/explain"
	"github.com/open-acn/acn/npm/localsock"
)

// networkMux is what the network listener (metricsAddr, on every address
// of the node) serves: the kubelet's probes and Prometheus. Nothing here
// names a pod, namespace or policy, and nothing costs the worker anything.
func (d *Daemon) networkMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		// Alive, and the informers have connected and listed once.
		if !d.synced.Load() {
			http.Error(w, "informers not synced", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.ready.Load() {
			http.Error(w, "first full sync not programmed yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}

// StatusPath is the local socket's status endpoint; with ?object=KEY it
// answers for one object (ObjectStatus).
const StatusPath = "/status"

// localMux is what the local socket serves: everything that reveals the
// cluster's contents or costs work. Queries read the published view.
func (d *Daemon) localMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+StatusPath, d.serveStatus)
	mux.HandleFunc("GET "+explain.Path, d.serveExplain)
	if d.cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (d *Daemon) serveStatus(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !q.Has("object") {
		writeJSON(w, d.Status())
		return
	}
	key := q.Get("object")
	if err := validKey(key); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, d.Object(key))
}

// validKey checks an object key of /status?object=. Services and
// EndpointSlices are watched too (their Remote endpoints, services.go):
// a caller can wait until a slice's version is enforced.
func validKey(key string) error {
	kind, rest, ok := strings.Cut(key, "/")
	ns, name, ok2 := strings.Cut(rest, "/")
	namespaced := kind == kindPod || kind == kindPolicy || kind == kindService || kind == kindEndpointSlice
	switch {
	case !ok || !ok2 || name == "" || strings.Contains(name, "/"):
		return fmt.Errorf("object %q: want pod/NAMESPACE/NAME, policy/NAMESPACE/NAME, service/NAMESPACE/NAME, endpointslice/NAMESPACE/NAME, namespace//NAME, clusternetworkpolicy//NAME or node//NAME", key)
	case (kind == kindNamespace || kind == kindClusterPolicy || kind == kindNode) && ns != "":
		return fmt.Errorf("object %q: a %s has no namespace: %s//NAME", key, kind, kind)
	case namespaced && ns == "":
		return fmt.Errorf("object %q: %s/NAMESPACE/NAME needs the namespace", key, kind)
	case !namespaced && kind != kindNamespace && kind != kindClusterPolicy && kind != kindNode:
		return fmt.Errorf("object %q: kind %q: want pod, policy, service, endpointslice, namespace, clusternetworkpolicy or node", key, kind)
	}
	return nil
}

func (d *Daemon) serveExplain(w http.ResponseWriter, r *http.Request) {
	d.metrics.explainQueries.Inc()
	req, err := explain.RequestFromValues(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	v := d.view.Load()
	resp, err := explain.Evaluate(d.cfg.NodeName, v.state,
		func(k string) []dataplane.Object { return d.objects(v, k) }, req, d.resolvePod)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	writeJSON(w, resp)
}

// resolvePod finds a pod's IP in the informer cache (safe for concurrent
// use; no daemon lock).
func (d *Daemon) resolvePod(ns, name string) (netip.Addr, error) {
	obj, exists, err := d.podInf.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !exists {
		return netip.Addr{}, fmt.Errorf("pod %s/%s not found", ns, name)
	}
	pod, ok := obj.(*cachedPod)
	if !ok {
		return netip.Addr{}, fmt.Errorf("pod %s/%s not found", ns, name)
	}
	a, err := netip.ParseAddr(pod.podIP)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("pod %s/%s has no IP yet", ns, name)
	}
	return a, nil
}

func writeJSON(w http.ResponseWriter, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		zap.L().Debug("write response", zap.Error(err))
	}
}

// serve starts the network listener and the local socket. Either failing
// is a startup error.
func (d *Daemon) serve() ([]*http.Server, error) {
	addr := d.cfg.MetricsAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on metrics address %s: %w", addr, err)
	}
	local, err := localsock.Listen(d.cfg.SocketPath)
	if err != nil {
		ln.Close()
		return nil, err
	}
	network := d.start(ln, d.networkMux())
	socket := d.start(local, d.localMux())
	d.addr <- ln.Addr().String()
	d.log.Info("serving /healthz /readyz /metrics on the network; /status /explain on the local socket",
		zap.String("addr", ln.Addr().String()), zap.String("socket", d.cfg.SocketPath), zap.Bool("pprof", d.cfg.EnablePprof))
	return []*http.Server{network, socket}, nil
}

func (d *Daemon) start(ln net.Listener, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 64 << 10}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("HTTP server stopped", zap.String("listener", ln.Addr().String()), zap.Error(err))
		}
	}()
	return srv
}
