package daemon

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/labelset"
)

// cachedPod is what the pod informer keeps per pod of the cluster: only
// what translation reads. Every azure-npm caches every pod (a selector can
// name any of them), so this is the agent's largest cost: a corev1.Pod is
// 1,168 bytes before any of its contents and each container 408 more, and
// even an ObjectMeta alone is ~280 bytes; a cachedPod is ~170 bytes plus
// its labels (a labelset.Set: one slice of interned strings, not a map),
// and nothing else of the pod is kept.
type cachedPod struct {
	name, namespace string // namespace interned
	resourceVersion string
	labels          labelset.Set
	nodeName        string // interned
	hostNetwork     bool
	phase           corev1.PodPhase
	podIP           string
	podIPs          []string // status.podIPs beyond podIP
	ports           []namedPort
}

// namedPort is a named container port (unnamed ones cannot be referenced
// by a policy).
type namedPort struct {
	name     string
	port     int32
	protocol corev1.Protocol
}

// GetObjectKind and DeepCopyObject make cachedPod a runtime.Object, which
// the informer's store and handlers expect; cached objects are never
// modified, so a shallow copy is a deep one for our purposes.
func (p *cachedPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (p *cachedPod) DeepCopyObject() runtime.Object {
	c := *p
	return &c
}

// GetObjectMeta makes cachedPod a metav1.ObjectMetaAccessor, which
// meta.Accessor (the informer's key function, the event handlers) accepts:
// a short-lived ObjectMeta of the name, namespace and resourceVersion,
// built per call rather than kept per pod. It has no labels: nothing that
// reads metadata through it needs them (translation reads pod()), and
// building a map per event would be the informer's largest garbage.
func (p *cachedPod) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, ResourceVersion: p.resourceVersion}
}

// pod rebuilds the corev1.Pod translation reads (a short-lived copy).
func (p *cachedPod) pod() *corev1.Pod {
	pod := p.podWithoutLabels()
	pod.Labels = p.labels.Map()
	return pod
}

// podWithoutLabels is pod without its labels, for
// translate.Engine.UpsertPodLabels (which shares p.labels).
func (p *cachedPod) podWithoutLabels() *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, ResourceVersion: p.resourceVersion}}
	pod.Spec.NodeName, pod.Spec.HostNetwork = p.nodeName, p.hostNetwork
	pod.Status.Phase, pod.Status.PodIP = p.phase, p.podIP
	if p.podIP != "" {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: p.podIP})
	}
	for _, ip := range p.podIPs {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(p.ports) > 0 {
		c := corev1.Container{Name: "ports", Ports: make([]corev1.ContainerPort, len(p.ports))}
		for i, np := range p.ports {
			c.Ports[i] = corev1.ContainerPort{Name: np.name, ContainerPort: np.port, Protocol: np.protocol}
		}
		pod.Spec.Containers = []corev1.Container{c}
	}
	return pod
}

// slimPod is the pod informer's transform: a cachedPod.
func slimPod(obj interface{}) (interface{}, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // DeletedFinalStateUnknown and friends pass through
	}
	c := &cachedPod{
		name: pod.Name, namespace: labelset.Intern(pod.Namespace), resourceVersion: pod.ResourceVersion,
		labels:   labelset.New(pod.Labels),
		nodeName: labelset.Intern(pod.Spec.NodeName), hostNetwork: pod.Spec.HostNetwork,
		phase: corev1.PodPhase(labelset.Intern(string(pod.Status.Phase))), podIP: pod.Status.PodIP,
	}
	for _, ip := range pod.Status.PodIPs {
		if ip.IP != pod.Status.PodIP {
			c.podIPs = append(c.podIPs, ip.IP)
		}
	}
	// Restartable init containers (sidecars) serve named ports too.
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, ctr := range cs {
			for _, cp := range ctr.Ports {
				if cp.Name != "" {
					c.ports = append(c.ports, namedPort{name: labelset.Intern(cp.Name), port: cp.ContainerPort, protocol: corev1.Protocol(labelset.Intern(string(cp.Protocol)))})
				}
			}
		}
	}
	return c, nil
}

// slimMeta keeps what translation reads of a namespace or a policy: it
// drops managedFields, annotations (kubectl's last-applied copy of the
// whole object among them), owner references and status.
func slimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, ResourceVersion: m.ResourceVersion, Labels: m.Labels}
}

func slimNamespace(obj interface{}) (interface{}, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	m := slimMeta(ns.ObjectMeta)
	if v, ok := ns.Annotations[flowlog.Annotation]; ok {
		m.Annotations = map[string]string{flowlog.Annotation: v} // the one annotation translation reads
	}
	return &corev1.Namespace{ObjectMeta: m}, nil
}

func slimPolicy(obj interface{}) (interface{}, error) {
	np, ok := obj.(*networkingv1.NetworkPolicy)
	if !ok {
		return obj, nil
	}
	return &networkingv1.NetworkPolicy{ObjectMeta: slimMeta(np.ObjectMeta), Spec: np.Spec}, nil
}
