package daemon

import (
	"fmt"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/labelset"
)

// cachedPod is what the pod informer keeps per pod of the cluster: only
// what translation reads. Every azure-npm caches every pod (a selector can
// name any of them), so this is the agent's largest cost: a corev1.Pod is
// 1,168 bytes before any of its contents and each container 408 more, and
// even an ObjectMeta alone is ~280 bytes; a cachedPod is 112 bytes plus
// its labels (a labelset.Set: one slice of interned strings, not a map)
// and a few strings, and nothing else of the pod is kept.
type cachedPod struct {
	name, namespace string // namespace interned
	resourceVersion string
	labels          labelset.Set
	podIP           string
	podIPs          *[]string    // status.podIPs beyond podIP (nil: none)
	ports           *[]namedPort // named container ports, shared by every pod with the same ones (nil: none)
	hostNetwork     bool
	// onNode: the pod runs on this agent's node (its nodeName is the
	// agent's); translation reads nothing else of the node name
	onNode bool
	phase  phase
}

// phase is a pod's phase as translation reads it: the terminal ones
// (Succeeded, Failed) count, the others are kept for what they are.
type phase uint8

var phases = []corev1.PodPhase{"", corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown}

func phaseOf(p corev1.PodPhase) phase {
	for i, v := range phases {
		if v == p {
			return phase(i)
		}
	}
	return 0 // an unknown phase is not a terminal one
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

// pod rebuilds the corev1.Pod translation reads (a short-lived copy) on
// the agent's node, node: the node name is node when the pod runs there,
// "" otherwise.
func (p *cachedPod) pod(node string) *corev1.Pod {
	pod := p.podWithoutLabels(node)
	pod.Labels = p.labels.Map()
	return pod
}

// podWithoutLabels is pod without its labels, for
// translate.Engine.UpsertPodLabels (which shares p.labels).
func (p *cachedPod) podWithoutLabels(node string) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, ResourceVersion: p.resourceVersion}}
	if p.onNode {
		pod.Spec.NodeName = node
	}
	pod.Spec.HostNetwork = p.hostNetwork
	pod.Status.Phase, pod.Status.PodIP = phases[p.phase], p.podIP
	if p.podIP != "" {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: p.podIP})
	}
	if p.podIPs != nil {
		for _, ip := range *p.podIPs {
			pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
	if p.ports != nil {
		c := corev1.Container{Name: "ports", Ports: make([]corev1.ContainerPort, len(*p.ports))}
		for i, np := range *p.ports {
			c.Ports[i] = corev1.ContainerPort{Name: np.name, ContainerPort: np.port, Protocol: np.protocol}
		}
		pod.Spec.Containers = []corev1.Container{c}
	}
	return pod
}

// slimPodFor is the pod informer's transform on node: a cachedPod.
func slimPodFor(node string) cache.TransformFunc {
	return func(obj interface{}) (interface{}, error) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return obj, nil // DeletedFinalStateUnknown and friends pass through
		}
		c := &cachedPod{
			name: pod.Name, namespace: labelset.Intern(pod.Namespace), resourceVersion: pod.ResourceVersion,
			labels: labelset.New(pod.Labels), podIP: pod.Status.PodIP,
			hostNetwork: pod.Spec.HostNetwork, onNode: node != "" && pod.Spec.NodeName == node, phase: phaseOf(pod.Status.Phase),
		}
		var more []string
		for _, ip := range pod.Status.PodIPs {
			if ip.IP != pod.Status.PodIP {
				more = append(more, ip.IP)
			}
		}
		if more != nil {
			c.podIPs = &more
		}
		// Restartable init containers (sidecars) serve named ports too.
		var ports []namedPort
		for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for _, ctr := range cs {
				for _, cp := range ctr.Ports {
					if cp.Name != "" {
						ports = append(ports, namedPort{name: cp.Name, port: cp.ContainerPort, protocol: cp.Protocol})
					}
				}
			}
		}
		c.ports = sharedPorts(ports)
		return c, nil
	}
}

// sharedPorts returns the one shared copy of a list of named ports (nil
// for none): the pods of a workload have the same ones. The table is
// bounded like labelset.Intern's.
func sharedPorts(ports []namedPort) *[]namedPort {
	if len(ports) == 0 {
		return nil
	}
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%s/%s/%d,", p.name, p.protocol, p.port)
	}
	key := b.String()
	portLists.Lock()
	defer portLists.Unlock()
	if l, ok := portLists.m[key]; ok {
		return l
	}
	if len(portLists.m) >= maxPortLists {
		portLists.m = map[string]*[]namedPort{}
	}
	for i := range ports {
		ports[i].name, ports[i].protocol = labelset.Intern(ports[i].name), corev1.Protocol(labelset.Intern(string(ports[i].protocol)))
	}
	l := &ports
	portLists.m[key] = l
	return l
}

const maxPortLists = 4096

var portLists = struct {
	sync.Mutex
	m map[string]*[]namedPort
}{m: map[string]*[]namedPort{}}

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
