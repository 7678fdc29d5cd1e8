package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	"github.com/open-acn/acn/npm/dataplane"
	"github.com/open-acn/acn/npm/explain"
)

func (d *Daemon) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		// Alive, and the informers have connected and listed once.
		if !d.synced.Load() {
			http.Error(w, "informers not synced", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.ready.Load() {
			http.Error(w, "first full sync not programmed yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(d.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		// /status?object=policy/NS/NAME answers for one object: the e2e
		// harness waits on it after each write instead of sleeping.
		if key := r.URL.Query().Get("object"); key != "" {
			writeJSON(w, d.Object(key))
			return
		}
		writeJSON(w, d.Status())
	})
	mux.HandleFunc(explain.Path, d.serveExplain)
	if d.cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (d *Daemon) serveExplain(w http.ResponseWriter, r *http.Request) {
	d.metrics.explainQueries.Inc()
	req, err := explain.RequestFromValues(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d.mu.Lock()
	resp, err := explain.Evaluate(d.cfg.NodeName, d.engine.State(),
		func(k string) []dataplane.Object { return d.dp.Objects(k) }, req, d.resolvePod)
	d.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	writeJSON(w, resp)
}

// resolvePod finds a pod's IP in the informer cache.
func (d *Daemon) resolvePod(ns, name string) (netip.Addr, error) {
	obj, exists, err := d.podInf.GetStore().GetByKey(ns + "/" + name)
	if err != nil || !exists {
		return netip.Addr{}, fmt.Errorf("pod %s/%s not found", ns, name)
	}
	pod := obj.(*corev1.Pod)
	a, err := netip.ParseAddr(pod.Status.PodIP)
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
