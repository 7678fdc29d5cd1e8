package daemon

import (
	"fmt"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	cnpv1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	cnpinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"

	"github.com/open-acn/acn/npm/flowlog"
)

// ClusterNetworkPolicies (policy.networking.k8s.io/v1beta1, the newest API
// version of sigs.k8s.io/network-policy-api v0.3.0) come through the
// typed clientset and informer of that module. Their keys are
// "clusternetworkpolicy//name".
//
// With them comes a Node informer (read-only, slimmed to labels and
// addresses): a ClusterNetworkPolicy `nodes` peer matches the addresses of
// the Nodes it selects. Keys "node//name".
const (
	kindClusterPolicy = "clusternetworkpolicy"
	kindNode          = "node"
)

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
	d.nodeInf = d.factory.Core().V1().Nodes().Informer()
	if err := d.nodeInf.SetTransform(slimNode); err != nil {
		return err
	}
	if reg, err = d.nodeInf.AddEventHandler(d.handler(kindNode)); err != nil {
		return err
	}
	d.registrations = append(d.registrations, reg)
	for kind, inf := range map[string]cache.SharedIndexInformer{kindClusterPolicy: d.cnpInf, kindNode: d.nodeInf} {
		kind := kind
		if err := inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
			d.log.Warn("watch failed; keeping the last programmed state and reconnecting with backoff", zap.String("kind", kind), zap.Error(err))
		}); err != nil {
			return err
		}
	}
	return nil
}

// slimNode keeps what translation reads: name, labels, addresses.
func slimNode(obj interface{}) (interface{}, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, ResourceVersion: n.ResourceVersion, UID: n.UID},
		Status: corev1.NodeStatus{Addresses: n.Status.Addresses}}, nil
}

// translateNode feeds one Node (nil: deleted) to the engine.
func (d *Daemon) translateNode(name string, obj interface{}) {
	if n, ok := obj.(*corev1.Node); ok && n != nil {
		d.engine.UpsertNode(n)
		return
	}
	d.engine.DeleteNode(name)
}

// slimClusterPolicy drops what translation never reads: every annotation
// but the flow-log one.
func slimClusterPolicy(obj interface{}) (interface{}, error) {
	if p, ok := obj.(*cnpv1.ClusterNetworkPolicy); ok {
		v, logged := p.Annotations[flowlog.Annotation]
		p.ManagedFields, p.Annotations = nil, nil
		if logged {
			p.Annotations = map[string]string{flowlog.Annotation: v}
		}
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
	d.checkFlowLogAnnotation(kindClusterPolicy, p.Name, p.Annotations)
	if problems := d.engine.UpsertClusterPolicy(p); len(problems) > 0 {
		d.metrics.invalidResources.WithLabelValues(kindClusterPolicy).Inc()
	}
}
