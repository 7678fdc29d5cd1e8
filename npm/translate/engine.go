package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/labelset"
	"github.com/open-acn/acn/npm/policy"
)

// NamespaceNameLabel is set by the API server on every namespace; the
// engine synthesises it so selectors on it work even before the Namespace
// object is known.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// Engine is the incremental translator. It is not safe for concurrent use:
// the daemon calls it from one goroutine (or under a mutex).
type Engine struct {
	opts Options
	log  *zap.Logger

	namespaces map[string]*nsInfo
	policies   map[string]*compiled // ns/name

	selectors map[string]*selector // by key
	sets      map[string]*setEntry // by set ID

	// indexes: selectors scoped to one namespace, cluster-wide ones (with a
	// namespaceSelector), policies by namespace.
	selByNS    map[string]map[string]*selector
	selCluster map[string]*selector
	// clusterGen changes whenever selCluster does: a namespace's list of
	// the cluster-wide selectors matching it is current while its
	// clusterGen equals this.
	clusterGen uint64
	polByNS    map[string]map[string]*compiled
	// cluster-wide policies (ClusterNetworkPolicy) by key
	clusterPols map[string]*compiled
	// nodes (their labels and addresses) and the sets of node addresses
	// (ClusterNetworkPolicy nodes peers), see nodes.go
	nodes    map[string]*nodeInfo
	nodeSets map[string]*setEntry

	// extBackends: keys of pods backing a NodePort or LoadBalancer service
	// with externalTrafficPolicy Cluster (SetExternalBackends); those on
	// other nodes become Remote endpoints.
	extBackends map[string]struct{}

	// portLists: the shared lists of named ports (sharedPorts)
	portLists map[string][]podPort

	// cands: by namespace, the pods that can be Endpoints (pods of this
	// node and Remote ones: extBackends). Only their selection by a
	// policy's target matters, so targets are matched against these and
	// keep no map of the pods they select.
	cands map[string]map[string]*podInfo

	state   *policy.State
	changes *policy.Changes
	full    map[string]bool // set IDs changed arbitrarily in the current change record
}

type podInfo struct {
	key, ns, name string
	labels        labelset.Set // compact: the engine keeps one per pod of the cluster
	ips           []netip.Addr
	local         bool
	ports         []podPort // named ports, first of each name/protocol; nil when none
}

// podPort is a named port of a pod. A slice, not a map: a pod has a few
// named ports at most, and the engine keeps one podInfo per pod of the
// cluster.
type podPort struct {
	key  string // "name/PROTO"
	port uint16
}

func (p *podInfo) port(key string) (uint16, bool) {
	for _, pp := range p.ports {
		if pp.key == key {
			return pp.port, true
		}
	}
	return 0, false
}

type nsInfo struct {
	name    string
	labels  labels.Set
	known   bool
	pods    map[string]*podInfo
	flowLog policy.FlowLog // its policies' flow-log mode
	// clusterSels: the cluster-wide selectors whose namespace selector
	// matches this namespace, as of clusterGen (a pod event visits these,
	// not every cluster-wide selector of the cluster)
	clusterSels []*selector
	clusterGen  uint64
}

// selector is a pod selector within a namespace scope, shared by every
// policy target, peer set and named-port scope with the same key.
type selector struct {
	key      string
	readable string
	nsName   string          // scope: one namespace, or
	nsSel    labels.Selector // scope: namespaces matching (when nsName == "")
	podSel   labels.Selector
	refs     int
	// pods it selects and deps, the live sets computed from it: both nil
	// while no live set is (see live.go), so a selector that only targets
	// a policy or feeds sets nobody here uses costs no entry per pod.
	pods map[string]*podInfo
	deps map[string]*setEntry
}

func (s *selector) matches(p *podInfo, ns *nsInfo) bool {
	if s.nsName != "" {
		if p.ns != s.nsName {
			return false
		}
	} else if !s.nsSel.Matches(ns.labels) {
		return false
	}
	return s.podSel.Matches(p.labels)
}

type setSpec struct {
	id, key, readable string
	kind              policy.SetKind
	sels              []string        // SetIP: one selector; SetIPPort: scope selectors
	static            []policy.Member // SetNet
	nodeSel           labels.Selector // SetIP of node addresses (ClusterNetworkPolicy nodes peer)
	portName          string          // SetIPPort
	proto             policy.Protocol // SetIPPort
}

type setEntry struct {
	spec setSpec
	refs int
	set  *policy.Set
	// live: its members are computed (see live.go); active counts the
	// references to it from policies that apply to an Endpoint.
	live   bool
	active int
	// contrib: pod key -> the pod whose members (its addresses, with the
	// port for a SetIPPort) the set holds. A pointer to the pod's own
	// immutable podInfo, not a slice of members per pod and set: the
	// engine keeps one entry per member of every set of the cluster.
	contrib map[string]*podInfo
	// nodeContrib: node key -> members (ClusterNetworkPolicy nodes peers)
	nodeContrib map[string][]policy.Member
	// extra counts the contributors of a member beyond its first (a member
	// is in set.Members while it has one): almost every member has exactly
	// one, so a count per member would be an entry per member of every set
	// for nothing.
	extra map[policy.Member]int
}

type compiled struct {
	pol    *policy.Policy
	target string    // selector key
	sels   []string  // every selector referenced (target included)
	sets   []setSpec // every set referenced
	// active: the Endpoints listing the policy (its sets are live while
	// it is non-zero)
	active int
}

// NewEngine returns an empty engine.
func NewEngine(opts Options) *Engine {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &Engine{
		opts:        opts,
		log:         log,
		namespaces:  map[string]*nsInfo{},
		policies:    map[string]*compiled{},
		selectors:   map[string]*selector{},
		sets:        map[string]*setEntry{},
		selByNS:     map[string]map[string]*selector{},
		selCluster:  map[string]*selector{},
		polByNS:     map[string]map[string]*compiled{},
		clusterPols: map[string]*compiled{},
		nodes:       map[string]*nodeInfo{},
		nodeSets:    map[string]*setEntry{},
		portLists:   map[string][]podPort{},
		cands:       map[string]map[string]*podInfo{},
		state:       policy.NewState(),
		changes:     policy.NewChanges(),
		full:        map[string]bool{},
	}
}

// State returns the engine's current desired state. It is owned by the
// engine and updated in place by the next Upsert/Delete: read it (or pass it
// to Dataplane.Apply, which copies what it needs) before mutating the engine
// again, or Clone it.
func (e *Engine) State() *policy.State { return e.state }

// TakeChanges returns what changed in State since the previous call and
// starts a new change record.
func (e *Engine) TakeChanges() *policy.Changes {
	c := e.changes
	e.changes = policy.NewChanges()
	e.full = map[string]bool{}
	return c
}

// ---- namespaces ----

func (e *Engine) nsFor(name string) *nsInfo {
	n := e.namespaces[name]
	if n == nil {
		n = &nsInfo{name: name, labels: labels.Set{NamespaceNameLabel: name}, pods: map[string]*podInfo{}, flowLog: e.opts.FlowLog}
		e.namespaces[name] = n
	}
	return n
}

// UpsertNamespace adds or updates a namespace (its labels).
func (e *Engine) UpsertNamespace(ns *corev1.Namespace) {
	n := e.nsFor(ns.Name)
	l := labels.Set{}
	for k, v := range ns.Labels {
		l[k] = v
	}
	l[NamespaceNameLabel] = ns.Name
	// A malformed annotation leaves the namespace at the default; the
	// daemon logs and counts it (flowlog.Mode's error).
	fl, _ := flowlog.Mode(ns.Annotations, e.opts.FlowLog)
	e.setFlowLog(n, fl)
	changed := !n.known || !labels.Equals(l, n.labels)
	n.known = true
	if !changed {
		return
	}
	n.labels = l
	n.clusterGen = 0
	e.refreshNamespace(n)
}

// DeleteNamespace forgets a namespace's labels (its pods are deleted by
// their own events).
func (e *Engine) DeleteNamespace(name string) {
	n := e.namespaces[name]
	if n == nil {
		return
	}
	n.known = false
	old := n.labels
	n.labels = labels.Set{NamespaceNameLabel: name}
	n.clusterGen = 0
	e.setFlowLog(n, e.opts.FlowLog)
	if len(n.pods) == 0 {
		delete(e.namespaces, name)
		return
	}
	if !labels.Equals(old, n.labels) {
		e.refreshNamespace(n)
	}
}

// setFlowLog changes a namespace's flow-log mode and with it its policies'
// (a policy object is shared with readers of earlier states, so it is
// replaced, never modified).
func (e *Engine) setFlowLog(n *nsInfo, fl policy.FlowLog) {
	if n.flowLog == fl {
		return
	}
	n.flowLog = fl
	for key, c := range e.polByNS[n.name] {
		p := c.pol.Clone()
		p.FlowLog = fl
		c.pol = p
		e.state.Policies[key] = p
		e.changes.Policies[key] = struct{}{}
	}
}

// refreshNamespace re-evaluates its pods after its labels changed: against
// every cluster-wide selector, since one that matched the old labels may
// hold its pods.
func (e *Engine) refreshNamespace(n *nsInfo) {
	for _, p := range n.pods {
		e.refreshPodIn(p, n, p, e.allSelectors)
	}
}

// ---- pods ----

func podKey(ns, name string) string { return ns + "/" + name }

// pod returns the pod of key (namespace/name), nil when unknown. Pods are
// kept by namespace only (one map entry per pod of the cluster, not two).
func (e *Engine) pod(key string) *podInfo {
	ns, _, _ := strings.Cut(key, "/")
	if n := e.namespaces[ns]; n != nil {
		return n.pods[key]
	}
	return nil
}

func (e *Engine) podCount() int {
	c := 0
	for _, n := range e.namespaces {
		c += len(n.pods)
	}
	return c
}

// UpsertPod adds or updates a pod. Host-network pods and pods without an
// IP are treated as absent.
func (e *Engine) UpsertPod(pod *corev1.Pod) { e.UpsertPodLabels(pod, labelset.New(pod.Labels)) }

// UpsertPodLabels is UpsertPod with the pod's labels as a labelset.Set
// (pod.Labels is not read): a caller that keeps its pods' labels as Sets
// shares them with the engine rather than each keeping a copy.
func (e *Engine) UpsertPodLabels(pod *corev1.Pod, podLabels labelset.Set) {
	key := podKey(pod.Namespace, pod.Name)
	ips := podIPs(pod)
	if pod.Spec.HostNetwork || len(ips) == 0 || isTerminal(pod) {
		e.DeletePod(pod.Namespace, pod.Name)
		return
	}
	local := false
	if e.opts.IsLocal != nil {
		local = e.opts.IsLocal(pod)
	} else {
		local = e.opts.NodeName != "" && pod.Spec.NodeName == e.opts.NodeName
	}
	np := &podInfo{key: key, ns: pod.Namespace, name: pod.Name, labels: podLabels, ips: ips, local: local}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				if cp.Name == "" || cp.ContainerPort <= 0 || cp.ContainerPort > 65535 {
					continue
				}
				proto := policy.Protocol(cp.Protocol)
				if proto == "" {
					proto = policy.TCP
				}
				k := cp.Name + "/" + string(proto)
				if _, dup := np.port(k); !dup {
					np.ports = append(np.ports, podPort{key: k, port: uint16(cp.ContainerPort)})
				}
			}
		}
	}
	np.ports = e.sharedPorts(np.ports)
	n := e.nsFor(pod.Namespace)
	old := n.pods[key]
	if old != nil && podEqual(old, np) {
		return
	}
	n.pods[key] = np
	e.setCandidate(np)
	e.refreshPod(np, n, old)
}

// sharedPorts returns the engine's one copy of a pod's named ports (the
// pods of a workload have the same ones; a podInfo's ports are never
// modified). The table is forgotten when it reaches maxPortLists.
func (e *Engine) sharedPorts(ports []podPort) []podPort {
	if len(ports) == 0 {
		return nil
	}
	var b strings.Builder
	for _, p := range ports {
		b.WriteString(p.key)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(int(p.port)))
		b.WriteByte(',')
	}
	k := b.String()
	if l, ok := e.portLists[k]; ok {
		return l
	}
	if len(e.portLists) >= maxPortLists {
		e.portLists = map[string][]podPort{}
	}
	e.portLists[k] = ports
	return ports
}

const maxPortLists = 4096

func isTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func podEqual(a, b *podInfo) bool {
	return a.local == b.local && a.labels.Equal(b.labels) && sameAddrPorts(a, b)
}

func podIPs(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		a = a.Unmap()
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	add(p.Status.PodIP)
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// DeletePod removes a pod.
func (e *Engine) DeletePod(namespace, name string) {
	key := podKey(namespace, name)
	n := e.namespaces[namespace]
	if n == nil || n.pods[key] == nil {
		return
	}
	p := n.pods[key]
	delete(n.pods, key)
	e.dropCandidate(namespace, key)
	affected := map[string]*setEntry{}
	e.eachSelector(namespace, n, func(s *selector) {
		if s.pods[key] != nil {
			delete(s.pods, key)
			for id, se := range s.deps {
				affected[id] = se
			}
		}
	})
	for _, se := range affected {
		e.setContrib(se, key, nil)
	}
	e.setEndpoint(p, nil)
	if n != nil && !n.known && len(n.pods) == 0 {
		delete(e.namespaces, namespace)
	}
}

// eachSelector calls f for every selector that can select a pod of ns
// (n is its nsInfo, nil when unknown): its own, and the cluster-wide ones
// whose namespace selector matches it.
func (e *Engine) eachSelector(ns string, n *nsInfo, f func(*selector)) {
	for _, s := range e.selByNS[ns] {
		f(s)
	}
	if n == nil {
		for _, s := range e.selCluster {
			f(s)
		}
		return
	}
	if n.clusterGen != e.clusterGen || n.clusterGen == 0 {
		n.clusterSels = n.clusterSels[:0]
		for _, s := range e.selCluster {
			if s.nsSel.Matches(n.labels) {
				n.clusterSels = append(n.clusterSels, s)
			}
		}
		n.clusterGen = e.clusterGen
		if n.clusterGen == 0 {
			n.clusterGen = e.bumpClusterGen()
		}
	}
	for _, s := range n.clusterSels {
		f(s)
	}
}

// allSelectors calls f for every selector that can select a pod of ns,
// or could before its namespace's labels changed.
func (e *Engine) allSelectors(ns string, _ *nsInfo, f func(*selector)) {
	for _, s := range e.selByNS[ns] {
		f(s)
	}
	for _, s := range e.selCluster {
		f(s)
	}
}

// bumpClusterGen marks every namespace's list of cluster-wide selectors
// stale (never 0, which means "not computed").
func (e *Engine) bumpClusterGen() uint64 {
	e.clusterGen++
	if e.clusterGen == 0 {
		e.clusterGen = 1
	}
	return e.clusterGen
}

// refreshPod re-evaluates the selectors that can select a pod whose
// labels, IPs, ports or namespace labels changed (old is its previous
// version, nil if new), then the sets computed from the selectors whose
// result changed, then its endpoint.
func (e *Engine) refreshPod(p *podInfo, n *nsInfo, old *podInfo) {
	e.refreshPodIn(p, n, old, e.eachSelector)
}

// refreshPodIn is refreshPod over the selectors each visits.
func (e *Engine) refreshPodIn(p *podInfo, n *nsInfo, old *podInfo, each func(string, *nsInfo, func(*selector))) {
	attrs := old == nil || old != p && !sameAddrPorts(old, p)
	affected := map[string]*setEntry{}
	each(p.ns, n, func(s *selector) {
		if s.pods == nil {
			return // no live set is computed from it
		}
		was := s.pods[p.key] != nil
		now := s.matches(p, n)
		if now {
			s.pods[p.key] = p
		} else {
			delete(s.pods, p.key)
		}
		if was != now || now && attrs {
			for id, se := range s.deps {
				affected[id] = se
			}
		} else if now && old != p {
			// Same members, new version of the pod: the sets point to
			// it, so the old version (its old labels) is not kept.
			for _, se := range s.deps {
				if se.contrib[p.key] != nil {
					se.contrib[p.key] = p
				}
			}
		}
	})
	for _, se := range affected {
		e.setContrib(se, p.key, e.contribution(se, p))
	}
	e.refreshEndpoint(p)
}

func sameAddrPorts(a, b *podInfo) bool {
	return slices.Equal(a.ips, b.ips) && slices.Equal(a.ports, b.ports)
}

// ---- sets ----

// contribution is p when it contributes members to se (it is selected,
// and has the port of a SetIPPort), else nil.
func (e *Engine) contribution(se *setEntry, p *podInfo) *podInfo {
	if len(p.ips) == 0 {
		return nil
	}
	if se.spec.kind == policy.SetIPPort {
		if _, ok := p.port(se.spec.portName + "/" + string(se.spec.proto)); !ok {
			return nil
		}
	}
	// a SetIP has one selector, a SetIPPort the selectors of its scope
	selected := slices.ContainsFunc(se.spec.sels, func(k string) bool {
		s := e.selectors[k]
		return s != nil && s.pods[p.key] != nil
	})
	if !selected {
		return nil
	}
	return p
}

// members are the members pod p contributes to se when selected: its
// addresses, with the named port for a SetIPPort (none without it).
func (se *setEntry) members(p *podInfo) []policy.Member {
	if p == nil {
		return nil
	}
	var port uint16
	if se.spec.kind == policy.SetIPPort {
		var ok bool
		if port, ok = p.port(se.spec.portName + "/" + string(se.spec.proto)); !ok {
			return nil
		}
	}
	out := make([]policy.Member, len(p.ips))
	for i, a := range p.ips {
		out[i] = policy.AddrMember(a)
		if se.spec.kind == policy.SetIPPort {
			out[i].Protocol, out[i].Port = se.spec.proto, port
		}
	}
	return out
}

// setContrib makes p (nil: none) the contributor of pod key to a set.
func (e *Engine) setContrib(se *setEntry, key string, p *podInfo) {
	old := se.contrib[key]
	if old == p {
		return
	}
	if p == nil {
		delete(se.contrib, key)
	} else {
		se.contrib[key] = p
	}
	e.replaceMembers(se, se.members(old), se.members(p))
}

// setNodeContrib replaces the members node key contributes to a set.
func (e *Engine) setNodeContrib(se *setEntry, key string, ms []policy.Member) {
	old := se.nodeContrib[key]
	if len(ms) == 0 {
		delete(se.nodeContrib, key)
	} else {
		if se.nodeContrib == nil {
			se.nodeContrib = map[string][]policy.Member{}
		}
		se.nodeContrib[key] = ms
	}
	e.replaceMembers(se, old, ms)
}

// replaceMembers releases one contributor's old members and holds its
// new ones.
func (e *Engine) replaceMembers(se *setEntry, old, ms []policy.Member) {
	if slices.Equal(old, ms) {
		return
	}
	changed := false
	for _, m := range old {
		if se.release(m) {
			changed = true
			e.hint(se.spec.id, m)
		}
	}
	for _, m := range ms {
		if se.hold(m) {
			changed = true
			e.hint(se.spec.id, m)
		}
	}
	if changed {
		e.changes.Sets[se.spec.id] = struct{}{}
	}
}

// hold adds a contributor of m; true when m is new in the set.
func (se *setEntry) hold(m policy.Member) bool {
	if _, ok := se.set.Members[m]; ok {
		se.extra[m]++
		return false
	}
	se.set.Members[m] = struct{}{}
	return true
}

// release removes a contributor of m; true when m left the set.
func (se *setEntry) release(m policy.Member) bool {
	if n := se.extra[m]; n > 0 {
		if n == 1 {
			delete(se.extra, m)
		} else {
			se.extra[m] = n - 1
		}
		return false
	}
	if _, ok := se.set.Members[m]; !ok {
		return false
	}
	delete(se.set.Members, m)
	return true
}

// hint records a member that may have changed in a set, unless the set
// changed arbitrarily in this change record.
func (e *Engine) hint(id string, m policy.Member) {
	if e.full[id] {
		return
	}
	h := e.changes.Members[id]
	if h == nil {
		h = map[policy.Member]struct{}{}
		e.changes.Members[id] = h
	}
	h[m] = struct{}{}
}

// fullChange marks a set as changed arbitrarily (created or deleted).
func (e *Engine) fullChange(id string) {
	e.full[id] = true
	delete(e.changes.Members, id)
	e.changes.Sets[id] = struct{}{}
}

func (e *Engine) refSelector(spec selSpec) *selector {
	s := e.selectors[spec.key]
	if s == nil {
		s = &selector{key: spec.key, readable: spec.readable, nsName: spec.nsName, nsSel: spec.nsSel, podSel: spec.podSel}
		e.selectors[spec.key] = s
		if s.nsName != "" {
			if e.selByNS[s.nsName] == nil {
				e.selByNS[s.nsName] = map[string]*selector{}
			}
			e.selByNS[s.nsName][s.key] = s
		} else {
			e.selCluster[s.key] = s
			e.bumpClusterGen()
		}
	}
	s.refs++
	return s
}

func (e *Engine) unrefSelector(key string) {
	s := e.selectors[key]
	if s == nil {
		return
	}
	s.refs--
	if s.refs <= 0 {
		delete(e.selectors, key)
		if _, ok := e.selCluster[key]; ok {
			delete(e.selCluster, key)
			e.bumpClusterGen()
		}
		if m := e.selByNS[s.nsName]; m != nil {
			delete(m, key)
			if len(m) == 0 {
				delete(e.selByNS, s.nsName)
			}
		}
	}
}

func (e *Engine) refSet(spec setSpec) {
	se := e.sets[spec.id]
	if se == nil {
		se = &setEntry{spec: spec, contrib: map[string]*podInfo{}, extra: map[policy.Member]int{},
			set: &policy.Set{ID: spec.id, Kind: spec.kind, Key: spec.key, Comment: spec.readable, Members: map[policy.Member]struct{}{}}}
		e.sets[spec.id] = se
		e.state.Sets[spec.id] = se.set
		e.fullChange(spec.id)
		for _, m := range spec.static {
			se.hold(m)
		}
		if e.opts.AllSets {
			e.makeLive(se)
		}
	}
	se.refs++
}

func (e *Engine) unrefSet(id string) {
	se := e.sets[id]
	if se == nil {
		return
	}
	se.refs--
	if se.refs <= 0 {
		if se.live {
			e.unlive(se)
		}
		delete(e.sets, id)
		delete(e.state.Sets, id)
		e.fullChange(id)
	}
}

// ---- policies ----

// UpsertPolicy adds or replaces a NetworkPolicy.
func (e *Engine) UpsertPolicy(np *networkingv1.NetworkPolicy) {
	key := podKey(np.Namespace, np.Name)
	c, sels, err := compile(np)
	if err == nil {
		err = e.checkCollisions(c)
	}
	if err != nil {
		e.log.Error("network policy cannot be translated; failing closed for the pods it selects",
			zap.String("policy", key), zap.String("reason", err.Error()))
		c, sels = failClosed(np, err)
	}
	c.pol.FlowLog = e.opts.FlowLog
	if n := e.namespaces[np.Namespace]; n != nil {
		c.pol.FlowLog = n.flowLog
	}
	e.install(key, c, sels)
}

// install makes c (with the selectors it references) the compiled version
// of policy key, replacing the previous one.
func (e *Engine) install(key string, c *compiled, sels []selSpec) {
	old := e.policies[key]
	// Reference the new selectors and sets before releasing the old ones so
	// shared ones are not recomputed.
	for _, s := range sels {
		e.refSelector(s)
	}
	for _, s := range c.sets {
		e.refSet(s)
	}
	if old != nil && old.active > 0 {
		// the Endpoints listing the key list this version now
		c.active = old.active
		e.useSets(c.sets, 1)
	}
	e.policies[key] = c
	if c.pol.Tier.Cluster() {
		e.clusterPols[key] = c
	} else {
		if e.polByNS[c.pol.Namespace] == nil {
			e.polByNS[c.pol.Namespace] = map[string]*compiled{}
		}
		e.polByNS[c.pol.Namespace][key] = c
	}
	if old != nil {
		if old.active > 0 {
			e.useSets(old.sets, -1)
		}
		for _, k := range old.sels {
			e.unrefSelector(k)
		}
		for _, s := range old.sets {
			e.unrefSet(s.id)
		}
	}
	if old == nil || !policy.EqualPolicy(old.pol, c.pol) {
		e.changes.Policies[key] = struct{}{}
	}
	e.state.Policies[key] = c.pol
	e.refreshTargets(old, c)
}

// DeletePolicy removes a NetworkPolicy.
func (e *Engine) DeletePolicy(namespace, name string) { e.uninstall(podKey(namespace, name)) }

// uninstall removes the policy key.
func (e *Engine) uninstall(key string) {
	old := e.policies[key]
	if old == nil {
		return
	}
	delete(e.policies, key)
	if old.pol.Tier.Cluster() {
		delete(e.clusterPols, key)
	} else {
		namespace := old.pol.Namespace
		delete(e.polByNS[namespace], key)
		if len(e.polByNS[namespace]) == 0 {
			delete(e.polByNS, namespace)
		}
	}
	delete(e.state.Policies, key)
	e.changes.Policies[key] = struct{}{}
	// Endpoints first, while the target selector still exists (they no
	// longer count as uses: the policy is gone).
	e.refreshTargets(old, nil)
	if old.active > 0 {
		e.useSets(old.sets, -1)
	}
	for _, k := range old.sels {
		e.unrefSelector(k)
	}
	for _, s := range old.sets {
		e.unrefSet(s.id)
	}
}

// checkCollisions refuses set IDs that already name a different key.
func (e *Engine) checkCollisions(c *compiled) error {
	for _, s := range c.sets {
		if se := e.sets[s.id]; se != nil && se.spec.key != s.key {
			return fmt.Errorf("set name collision: %s names both %q and %q", s.id, se.spec.key, s.key)
		}
	}
	return nil
}

// refreshTargets recomputes the endpoints of the pods that can be
// Endpoints and that the new version of a policy selects or whose
// endpoint lists the policy (selected by the old version).
func (e *Engine) refreshTargets(old, cur *compiled) {
	c := cur
	if c == nil {
		c = old
	}
	var target *selector
	if cur != nil {
		target = e.selectors[cur.target]
	}
	key := c.pol.Key()
	visit := func(ns string, pods map[string]*podInfo) {
		n := e.namespaces[ns]
		for k, p := range pods {
			ep := e.state.Endpoints[k]
			listed := ep != nil && (slices.Contains(ep.Ingress, key) || slices.Contains(ep.Egress, key))
			if listed || target != nil && target.matches(p, n) {
				e.refreshEndpoint(p)
			}
		}
	}
	if c.pol.Tier.Cluster() {
		for ns, pods := range e.cands {
			visit(ns, pods)
		}
	} else {
		visit(c.pol.Namespace, e.cands[c.pol.Namespace])
	}
}

func contains(l []string, s string) bool {
	i := sort.SearchStrings(l, s)
	return i < len(l) && l[i] == s
}

// SetExternalBackends replaces the set of pods (keys "namespace/name")
// that back a NodePort or LoadBalancer service with externalTrafficPolicy
// Cluster. Such a pod on another node becomes a Remote endpoint (ingress
// only), so this node enforces its ingress policies on the traffic it
// receives for it and DNATs to it, by the client's address, before
// kube-proxy's SNAT to this node's address hides the client from the
// pod's node. The caller owns keys no more after the call.
func (e *Engine) SetExternalBackends(keys map[string]struct{}) {
	old := e.extBackends
	e.extBackends = keys
	for _, m := range []map[string]struct{}{old, keys} {
		for k := range m {
			_, was := old[k]
			_, is := keys[k]
			if p := e.pod(k); p != nil && was != is && !p.local {
				e.setCandidate(p)
				e.refreshEndpoint(p)
			}
		}
	}
}

func (e *Engine) isExtBackend(key string) bool {
	_, ok := e.extBackends[key]
	return ok
}

// refreshEndpoint recomputes one pod's endpoint (local pods, and Remote
// endpoints for external service backends on other nodes).
func (e *Engine) refreshEndpoint(p *podInfo) {
	remote := !p.local && e.isExtBackend(p.key)
	if !p.local && !remote {
		e.setEndpoint(p, nil)
		return
	}
	var in, eg []string
	npIn, npEg := false, false
	n := e.namespaces[p.ns]
	for _, m := range []map[string]*compiled{e.polByNS[p.ns], e.clusterPols} {
		for k, c := range m {
			s := e.selectors[c.target]
			if s == nil || !s.matches(p, n) {
				continue
			}
			np := !c.pol.Tier.Cluster()
			if c.pol.Ingress {
				in = append(in, k)
				npIn = npIn || np
			}
			if c.pol.Egress && !remote {
				eg = append(eg, k)
				npEg = npEg || np
			}
		}
	}
	// A NetworkPolicy isolating the pod decides for that direction: the
	// Baseline tier is never consulted, so it is left out (fewer groups).
	in, eg = withoutBaseline(e.state, in, npIn), withoutBaseline(e.state, eg, npEg)
	if len(in) == 0 && len(eg) == 0 {
		e.setEndpoint(p, nil)
		return
	}
	e.state.Order(in)
	e.state.Order(eg)
	e.setEndpoint(p, &policy.Endpoint{Namespace: p.ns, Name: p.name, IPs: append([]netip.Addr(nil), p.ips...), Ingress: in, Egress: eg, Remote: remote})
}

func (e *Engine) setEndpoint(p *podInfo, ep *policy.Endpoint) {
	old := e.state.Endpoints[p.key]
	if policy.EqualEndpoint(old, ep) {
		return
	}
	if ep == nil {
		delete(e.state.Endpoints, p.key)
	} else {
		e.state.Endpoints[p.key] = ep
	}
	e.changes.Endpoints[p.key] = struct{}{}
	e.usePolicies(ep, old)
}

// failClosed is the translation of a policy that cannot be translated: it
// isolates its pods in both directions with no rules. Its target is its pod
// selector when that parses, else every pod of its namespace.
func failClosed(np *networkingv1.NetworkPolicy, err error) (*compiled, []selSpec) {
	t, terr := podSelectorSpec(np.Namespace, &np.Spec.PodSelector)
	if terr != nil {
		t = selSpec{key: fmt.Sprintf("pods{ns=%s}{}", np.Namespace), readable: "all pods in namespace " + np.Namespace + " (selector invalid)",
			nsName: np.Namespace, podSel: labels.Everything()}
	}
	pol := &policy.Policy{Namespace: np.Namespace, Name: np.Name, Selector: t.readable, Ingress: true, Egress: true, Error: err.Error()}
	return &compiled{pol: pol, target: t.key, sels: []string{t.key}}, []selSpec{t}
}

// Stats summarises the engine's content (for metrics).
type Stats struct {
	Pods, Namespaces, Policies, Selectors, Sets, Members, Endpoints int
}

// Stats returns counts of the engine's objects.
func (e *Engine) Stats() Stats {
	st := Stats{Pods: e.podCount(), Namespaces: len(e.namespaces), Policies: len(e.policies), Selectors: len(e.selectors), Sets: len(e.sets), Endpoints: len(e.state.Endpoints)}
	for _, se := range e.sets {
		st.Members += len(se.set.Members)
	}
	return st
}

// Sizes is the number of entries of every map the engine keeps (the soak
// test checks none grows while the cluster returns to the same state).
func (e *Engine) Sizes() map[string]int {
	sz := map[string]int{
		"engine.pods": e.podCount(), "engine.namespaces": len(e.namespaces), "engine.policies": len(e.policies),
		"engine.selectors": len(e.selectors), "engine.sets": len(e.sets), "engine.selectorsByNamespace": len(e.selByNS),
		"engine.clusterSelectors": len(e.selCluster), "engine.candidateNamespaces": len(e.cands), "engine.policiesByNamespace": len(e.polByNS), "engine.clusterPolicies": len(e.clusterPols), "engine.nodes": len(e.nodes), "engine.portLists": len(e.portLists), "engine.nodeSets": len(e.nodeSets), "engine.fullChanges": len(e.full),
		"engine.state.sets": len(e.state.Sets), "engine.state.policies": len(e.state.Policies), "engine.state.endpoints": len(e.state.Endpoints),
	}
	for _, n := range e.namespaces {
		sz["engine.namespacePods"] += len(n.pods)
	}
	for _, m := range e.selByNS {
		sz["engine.selectorsByNamespace.entries"] += len(m)
	}
	for _, m := range e.cands {
		sz["engine.candidates"] += len(m)
	}
	for _, m := range e.polByNS {
		sz["engine.policiesByNamespace.entries"] += len(m)
	}
	for _, s := range e.selectors {
		sz["engine.selectorPods"] += len(s.pods)
		sz["engine.selectorDeps"] += len(s.deps)
	}
	for _, se := range e.sets {
		sz["engine.setContributions"] += len(se.contrib) + len(se.nodeContrib)
		sz["engine.setExtraContributors"] += len(se.extra)
	}
	return sz
}
