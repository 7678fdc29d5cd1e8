package daemon

import (
	"fmt"

	"go.uber.org/zap"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	cnpinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"
)

// ClusterNetworkPolicies (policy.networking.k8s.io/v1beta1, the newest API
// version of sigs.k8s.io/network-policy-api v0.3.0) come through the
// typed clientset and informer of that module. Their keys are
// "clusternetworkpolicy//name".
const kindClusterPolicy = "clusternetworkpolicy"

// newClusterPolicyClient returns the ClusterNetworkPolicy client, or nil
// (with a warning) when the API server does not serve the CRD: the agent
// then enforces NetworkPolicies only, and must be restarted once the CRD
// is installed (deploy/npm installs it).
func newClusterPolicyClient(cfg *rest.Config, log *zap.Logger) (cnpclient.Interface, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	gv := cnpv1.SchemeGroupVersion.String()
	res, err := dc.ServerResourcesForGroupVersion(gv)
	served := false
	if err == nil {
		for _, r := range res.APIResources {
			served = served || r.Name == "clusternetworkpolicies"
		}
	}
	if !served {
		log.Warn("the API server does not serve ClusterNetworkPolicy; enforcing NetworkPolicies only (install the CRD of deploy/network-policy-api and restart azure-npm)",
			zap.String("groupVersion", gv), zap.Error(err))
		return nil, nil
	}
	c, err := cnpclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("ClusterNetworkPolicy client: %w", err)
	}
	return c, nil
}

// setupClusterPolicies builds the ClusterNetworkPolicy informer (nothing
// when client is nil).
func (d *Daemon) setupClusterPolicies(client cnpclient.Interface) error {
	if client == nil {
		return nil
	}
	d.cnpFactory = cnpinformers.NewSharedInformerFactory(client, d.cfg.ResyncPeriod.D())
	d.cnpInf = d.cnpFactory.Policy().V1beta1().ClusterNetworkPolicies().Informer()
	if err := d.cnpInf.SetTransform(slimClusterPolicy); err != nil {
		return err
	}
	reg, err := d.cnpInf.AddEventHandler(d.handler(kindClusterPolicy))
	if err != nil {
		return err
	}
	d.registrations = append(d.registrations, reg)
	return d.cnpInf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		d.log.Warn("watch failed; keeping the last programmed state and reconnecting with backoff", zap.String("kind", kindClusterPolicy), zap.Error(err))
	})
}

// slimClusterPolicy drops what translation never reads.
func slimClusterPolicy(obj interface{}) (interface{}, error) {
	if p, ok := obj.(*cnpv1.ClusterNetworkPolicy); ok {
		p.ManagedFields, p.Annotations = nil, nil
		p.Status = cnpv1.ClusterNetworkPolicyStatus{}
	}
	return obj, nil
}

// translateClusterPolicy feeds one ClusterNetworkPolicy (nil: deleted) to
// the engine; one that fails closed, wholly or in part, is counted in
// npm_invalid_objects_total{kind="clusternetworkpolicy"} (the engine logs
// each reason with the policy and its tier).
func (d *Daemon) translateClusterPolicy(name string, obj interface{}) {
	p, ok := obj.(*cnpv1.ClusterNetworkPolicy)
	if !ok || p == nil {
		d.engine.DeleteClusterPolicy(name)
		return
	}
	if problems := d.engine.UpsertClusterPolicy(p); len(problems) > 0 {
		d.metrics.invalidResources.WithLabelValues(kindClusterPolicy).Inc()
	}
}
