//go:build linux

// Package e2e runs NetworkPolicy conformance cases on the simulated cluster
// (test/cluster): the 230 cases of cyclonus's generator (or cases from a
// file), pods spread across nodes, real TCP/UDP/SCTP probes between pod
// namespaces, and cyclonus's matcher (input corrected, internal/policyoracle)
// as the judge. On a dual-stack cluster every case runs once per family,
// probing the pods' addresses of that family. On a cluster with kube-proxy
// every pod also gets a Service
// (cyclonus's s-<namespace>-<pod>, as the upstream e2e makes), and each
// step is probed in every probe mode asked for: to the pod's address
// (pod-ip) and to its Service's ClusterIP (service-ip).
package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattfenwick/cyclonus/pkg/connectivity"
	"github.com/mattfenwick/cyclonus/pkg/connectivity/probe"
	"github.com/mattfenwick/cyclonus/pkg/generator"
	"github.com/mattfenwick/cyclonus/pkg/matcher"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/open-acn/acn/internal/policyoracle"
	"github.com/open-acn/acn/test/cluster"
)

// Base layout of every case, as cyclonus's: namespaces x, y, z with pods
// a, b, c each, labelled ns=<ns> and pod=<pod>.
var (
	BaseNamespaces = []string{"x", "y", "z"}
	BasePods       = []string{"a", "b", "c"}
)

// Options of a conformance run.
type Options struct {
	// Cases to run; nil = every generated case.
	Cases []*generator.TestCase
	// Only runs the cases with these indexes (0-based) of Cases; nil = all.
	Only []int
	// Families to probe over, each a pass over the cases ("IPv4",
	// "IPv6"); nil = every family of the cluster's pods.
	Families []string
	// ProbeTimeout bounds one probe (a denied probe costs this long).
	ProbeTimeout time.Duration
	// RetryTimeout bounds the one retry of a probe the oracle allows but
	// that was blocked (default 2 s): up to 96 probes run at once, and on
	// a loaded machine a connection or an SCTP INIT to an unrestricted pod
	// sometimes misses the short timeout. A probe the oracle denies is
	// never retried, so no leak can hide behind a retry; a kernel that
	// really blocks an allowed connection blocks the retry too.
	RetryTimeout time.Duration
	// Workers probe in parallel.
	Workers int
	// Out receives per-case lines and failure tables.
	Out io.Writer
	// ProbeModes are cyclonus's probe modes each step is probed in:
	// ProbeModePodIP and ProbeModeServiceIP (which needs a cluster with
	// kube-proxy); default pod-ip only.
	ProbeModes []generator.ProbeMode
}

// Probe modes (cyclonus's names).
const (
	ProbeModePodIP     = generator.ProbeModePodIP
	ProbeModeServiceIP = generator.ProbeModeServiceIP
)

// Report is the outcome of a run: every count is over (case, probe mode)
// pairs; Modes has them per probe mode.
type Report struct {
	Family         string
	Passed, Failed int
	Failures       []string
	Modes          map[generator.ProbeMode]*ModeReport
	// StepEnforce are the times from the last API write of a step until
	// every node's azure-npm enforced it.
	StepEnforce []time.Duration
	Wall        time.Duration
	// Retried counts the probes the oracle allows that were blocked at
	// first and probed once more (RetryTimeout); Recovered those that got
	// through the second time. A probe the oracle denies is never retried.
	Retried, Recovered int
}

// ModeReport is the outcome of a run in one probe mode.
type ModeReport struct {
	Passed, Failed int
	Failures       []string
}

// Runner drives one cluster through cases.
type Runner struct {
	c    *cluster.Cluster
	opts Options
	out  io.Writer
	// podNode places base pods: pod i of the base layout on node i % N, so
	// every case has same-node and cross-node pairs.
	podNode map[string]int
}

// NewRunner prepares the base layout on c.
func NewRunner(ctx context.Context, c *cluster.Cluster, opts Options) (*Runner, error) {
	if opts.ProbeTimeout == 0 {
		opts.ProbeTimeout = 400 * time.Millisecond
	}
	if opts.RetryTimeout == 0 {
		opts.RetryTimeout = 2 * time.Second
	}
	if opts.Workers == 0 {
		opts.Workers = 48
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Families == nil {
		opts.Families = c.Families()
	}
	if len(opts.ProbeModes) == 0 {
		opts.ProbeModes = []generator.ProbeMode{ProbeModePodIP}
	}
	for _, m := range opts.ProbeModes {
		switch m {
		case ProbeModePodIP:
		case ProbeModeServiceIP:
			if !c.HasServices() {
				return nil, fmt.Errorf("probe mode %s needs a cluster with kube-proxy", m)
			}
		default:
			return nil, fmt.Errorf("probe mode %q: want %s or %s", m, ProbeModePodIP, ProbeModeServiceIP)
		}
	}
	r := &Runner{c: c, opts: opts, out: opts.Out, podNode: map[string]int{}}
	i := 0
	var writes []cluster.Write
	var svcs []cluster.ServiceBackend
	for _, ns := range BaseNamespaces {
		w, err := c.CreateNamespace(ctx, ns, map[string]string{"ns": ns})
		if err != nil {
			return nil, err
		}
		writes = append(writes, w)
		for _, p := range BasePods {
			r.podNode[ns+"/"+p] = i % len(c.Nodes)
			i++
			w, sb, err := r.createPod(ctx, c.Nodes[r.podNode[ns+"/"+p]], ns, p, map[string]string{"pod": p})
			if err != nil {
				return nil, err
			}
			writes = append(writes, w)
			svcs = append(svcs, sb...)
		}
	}
	if err := r.wait(ctx, writes, svcs, time.Minute); err != nil {
		return nil, err
	}
	return r, nil
}

// ServiceLabel is the label a pod's Service selects it by on a cluster
// with kube-proxy. The harness keeps it on the pod whatever labels a case
// sets, and hides it from the oracle: no case's policy names it, so it
// changes no policy's meaning, and a case that relabels a pod does not take
// it out of its Service (cyclonus selects by the labels the pod was created
// with, which a relabel can drop: its service-IP probes would then test
// kube-proxy's reject of a Service without endpoints, not the policy).
const ServiceLabel = "acn-e2e-service"

// podLabels are the labels the harness gives a pod a case labels with l.
func (r *Runner) podLabels(ns, name string, l map[string]string) map[string]string {
	if !r.c.HasServices() {
		return l
	}
	out := maps.Clone(l)
	if out == nil {
		out = map[string]string{}
	}
	out[ServiceLabel] = cluster.PodServiceName(ns, name)
	return out
}

// createPod creates a pod and, on a cluster with kube-proxy, its Service
// (selecting it by ServiceLabel). It returns what to wait for.
func (r *Runner) createPod(ctx context.Context, node *cluster.Node, ns, name string, labels map[string]string) (cluster.Write, []cluster.ServiceBackend, error) {
	p, w, err := r.c.CreatePod(ctx, node, ns, name, r.podLabels(ns, name, labels), cluster.DefaultPorts())
	if err != nil || !r.c.HasServices() {
		return w, nil, err
	}
	svcName := cluster.PodServiceName(ns, name)
	svc, err := r.c.CreateService(ctx, cluster.PodService(ns, name, map[string]string{ServiceLabel: svcName}, cluster.DefaultPorts()))
	if err != nil {
		return w, nil, fmt.Errorf("service of %s/%s: %w", ns, name, err)
	}
	return w, []cluster.ServiceBackend{cluster.PodServiceBackend(svc, p)}, nil
}

// deletePod deletes a pod and its Service.
func (r *Runner) deletePod(ctx context.Context, ns, name string) (cluster.Write, error) {
	if r.c.HasServices() {
		if err := r.c.DeleteService(ctx, ns, cluster.PodServiceName(ns, name)); err != nil {
			return cluster.Write{}, err
		}
	}
	return r.c.DeletePod(ctx, ns, name)
}

// wait waits until every node's azure-npm enforces writes and every
// node's kube-proxy reaches the new Services' pods.
func (r *Runner) wait(ctx context.Context, writes []cluster.Write, svcs []cluster.ServiceBackend, timeout time.Duration) error {
	if _, err := r.c.WaitEnforced(ctx, writes, timeout); err != nil {
		return err
	}
	return r.c.WaitServicesProgrammed(ctx, svcs, timeout)
}

// GeneratedCases are cyclonus's 230 cases for the pods' first family.
func (r *Runner) GeneratedCases() []*generator.TestCase {
	return r.GeneratedCasesFor(r.c.Families()[0])
}

// GeneratedCasesFor are cyclonus's 230 cases for probes over family,
// built around z/c's address of that family: the generator derives its
// ipBlock CIDRs from it, as cyclonus does (an IPv6 address gives /120
// with a /124 except where an IPv4 one gives /24 and /28). The few CIDRs
// it writes literally (0.0.0.0/0 to allow every address, 0.0.0.0/31 to
// match none of the pods) become their IPv6 counterparts (::/0, ::/127).
func (r *Runner) GeneratedCasesFor(family string) []*generator.TestCase {
	zc := r.c.Pod("z", "c")
	cases := generator.NewTestCaseGenerator(false, zc.IPFor(family).String(), BaseNamespaces, nil, nil).GenerateTestCases()
	if family == cluster.IPv6 {
		for _, tc := range cases {
			for _, st := range tc.Steps {
				for _, a := range st.Actions {
					// Copies: the generator shares some ipBlocks
					// between cases (package variables).
					switch {
					case a.CreatePolicy != nil:
						a.CreatePolicy.Policy = ipv6Blocks(a.CreatePolicy.Policy)
					case a.UpdatePolicy != nil:
						a.UpdatePolicy.Policy = ipv6Blocks(a.UpdatePolicy.Policy)
					}
				}
			}
		}
	}
	return cases
}

// ipv6Blocks returns a copy of np whose literal IPv4 ipBlocks of the zero
// address (0.0.0.0/n) are the IPv6 zero address with as many host bits
// (::/0 for /0): what the generator writes for IPv4 without a pod's
// address.
func ipv6Blocks(np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	np = np.DeepCopy()
	conv := func(cidr string) string {
		p, err := netip.ParsePrefix(cidr)
		if err != nil || !p.Addr().Is4() || !p.Addr().IsUnspecified() {
			return cidr
		}
		bits := 0
		if p.Bits() > 0 {
			bits = 128 - (32 - p.Bits())
		}
		return netip.PrefixFrom(netip.IPv6Unspecified(), bits).String()
	}
	peers := func(ps []networkingv1.NetworkPolicyPeer) {
		for i := range ps {
			if b := ps[i].IPBlock; b != nil {
				b.CIDR = conv(b.CIDR)
				for j := range b.Except {
					b.Except[j] = conv(b.Except[j])
				}
			}
		}
	}
	for i := range np.Spec.Ingress {
		peers(np.Spec.Ingress[i].From)
	}
	for i := range np.Spec.Egress {
		peers(np.Spec.Egress[i].To)
	}
	return np
}

// caseState is what a case changed, to drive probes and the reset.
type caseState struct {
	policies []*networkingv1.NetworkPolicy
}

// resources is cyclonus's view of the cluster as it is now.
func (r *Runner) resources(ctx context.Context, family string) (*probe.Resources, error) {
	res := &probe.Resources{Namespaces: map[string]map[string]string{}}
	nss, err := r.c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	inScope := map[string]bool{}
	for _, n := range nss.Items {
		if n.DeletionTimestamp != nil || strings.HasPrefix(n.Name, "kube-") || n.Name == "default" {
			continue
		}
		res.Namespaces[n.Name] = n.Labels
		inScope[n.Name] = true
	}
	var containers []*probe.Container
	for _, p := range cluster.DefaultPorts() {
		containers = append(containers, &probe.Container{Name: "cont-" + strings.TrimPrefix(p.Name, "serve-"), Port: int(p.Port), Protocol: p.Protocol, PortName: p.Name})
	}
	pods := r.c.Pods()
	sort.Slice(pods, func(i, j int) bool { return pods[i].Key() < pods[j].Key() })
	for _, p := range pods {
		if !inScope[p.Namespace] {
			continue
		}
		kp, err := r.c.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		labels := maps.Clone(kp.Labels)
		delete(labels, ServiceLabel)
		pp := probe.NewPod(p.Namespace, p.Name, labels, p.IPFor(family).String(), containers)
		if r.c.HasServices() {
			vip, err := r.c.ServiceClusterIP(ctx, p.Namespace, cluster.PodServiceName(p.Namespace, p.Name))
			if err != nil {
				return nil, fmt.Errorf("service of %s: %w", p.Key(), err)
			}
			pp.ServiceIP = vip.String()
		}
		res.Pods = append(res.Pods, pp)
	}
	return res, nil
}

// realRunner is cyclonus's JobRunner backed by real probes between pod
// namespaces.
type realRunner struct {
	r *Runner
	// oracle decides which blocked probes are retried (allowed ones).
	oracle             *matcher.Policy
	retried, recovered *atomic.Int64
}

func (rr *realRunner) RunJobs(jobs []*probe.Job) []*probe.JobResult {
	results := make([]*probe.JobResult, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, rr.r.opts.Workers)
	for i, job := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, job *probe.Job) {
			defer func() { <-sem; wg.Done() }()
			conn := probe.ConnectivityBlocked
			src := rr.r.c.Pod(job.FromNamespace, job.FromPod)
			_, toName, _ := strings.Cut(job.ToKey, "/")
			dstPod := rr.r.c.Pod(job.ToNamespace, toName)
			// ToHost: the pod's address or its Service's, by probe mode.
			dst, err := netip.ParseAddr(job.ToHost)
			if src != nil && dstPod != nil && err == nil {
				through := rr.r.c.ProbeTo(src, dstPod, dst, job.ResolvedPort, string(job.Protocol), rr.r.opts.ProbeTimeout)
				if !through && rr.oracle.IsTrafficAllowed(job.Traffic()).IsAllowed() {
					rr.retried.Add(1)
					if through = rr.r.c.ProbeTo(src, dstPod, dst, job.ResolvedPort, string(job.Protocol), rr.r.opts.RetryTimeout); through {
						rr.recovered.Add(1)
					}
				}
				if through {
					conn = probe.ConnectivityAllowed
				}
			}
			results[i] = &probe.JobResult{Job: job, Combined: conn}
		}(i, job)
	}
	wg.Wait()
	return results
}

// RunCase executes one case, probing each step in every probe mode, and
// reports per mode whether it passed.
func (r *Runner) RunCase(ctx context.Context, tc *generator.TestCase, rep *Report) (map[generator.ProbeMode]bool, error) {
	st := &caseState{}
	defer func() {
		if err := r.reset(ctx); err != nil {
			fmt.Fprintf(r.out, "  reset failed: %v\n", err)
		}
	}()
	initial, err := r.resources(ctx, rep.Family)
	if err != nil {
		return nil, err
	}
	results := map[generator.ProbeMode]*connectivity.Result{}
	for _, m := range r.opts.ProbeModes {
		results[m] = &connectivity.Result{InitialResources: initial, TestCase: tc}
	}
	jb := &probe.JobBuilder{TimeoutSeconds: 1}
	var enforce []time.Duration
	var retried, recovered atomic.Int64
	defer func() { rep.Retried += int(retried.Load()); rep.Recovered += int(recovered.Load()) }()
	for si, step := range tc.Steps {
		writes, svcs, err := r.apply(ctx, st, step.Actions)
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", si+1, err)
		}
		t0 := time.Now()
		took, err := r.c.WaitEnforced(ctx, writes, 30*time.Second)
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", si+1, err)
		}
		enforce = append(enforce, took)
		if err := r.c.WaitServicesProgrammed(ctx, svcs, 30*time.Second-time.Since(t0)); err != nil {
			return nil, fmt.Errorf("step %d: %w", si+1, err)
		}
		res, err := r.resources(ctx, rep.Family)
		if err != nil {
			return nil, err
		}
		oracle := matcher.BuildNetworkPolicies(true, policyoracle.CorrectInput(st.policies))
		// The modes probe at the same time: a probe mostly waits (a denied
		// one for its whole timeout), so overlapping them halves the wall
		// time of a step.
		srs := make([]*connectivity.StepResult, len(r.opts.ProbeModes))
		var wg sync.WaitGroup
		for i, m := range r.opts.ProbeModes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cfg := *step.Probe
				cfg.Mode = m
				sim := probe.NewSimulatedRunner(oracle, jb).RunProbeForConfig(&cfg, res)
				sr := connectivity.NewStepResult(sim, oracle, st.policies)
				real := &realRunner{r: r, oracle: oracle, retried: &retried, recovered: &recovered}
				sr.AddKubeProbe((&probe.Runner{JobRunner: real, JobBuilder: jb}).RunProbeForConfig(&cfg, res))
				srs[i] = sr
			}()
		}
		wg.Wait()
		for i, m := range r.opts.ProbeModes {
			results[m].Steps = append(results[m].Steps, srs[i])
		}
	}
	rep.StepEnforce = append(rep.StepEnforce, enforce...)
	passed := map[generator.ProbeMode]bool{}
	for _, m := range r.opts.ProbeModes {
		result := results[m]
		passed[m] = result.Passed(true)
		if passed[m] {
			continue
		}
		fmt.Fprintf(r.out, "--- expected (oracle) vs observed over %s for %q, probe mode %s:\n", rep.Family, tc.Description, m)
		for i, sr := range result.Steps {
			fmt.Fprintf(r.out, "step %d expected:\n%s\nobserved:\n%s\ndifferences:\n%s\n", i+1,
				sr.SimulatedProbe.RenderTable(), sr.LastKubeProbe().RenderTable(), sr.LastComparison().RenderSuccessTable())
		}
		for _, p := range st.policies {
			y, _ := yaml.Marshal(p)
			fmt.Fprintf(r.out, "policy:\n%s\n", y)
		}
	}
	return passed, nil
}

// apply performs a step's actions and returns the writes to wait for.
func (r *Runner) apply(ctx context.Context, st *caseState, actions []*generator.Action) ([]cluster.Write, []cluster.ServiceBackend, error) {
	var writes []cluster.Write
	var svcs []cluster.ServiceBackend
	add := func(w cluster.Write, err error) error {
		if err == nil {
			writes = append(writes, w)
		}
		return err
	}
	for _, a := range actions {
		var err error
		switch {
		case a.CreatePolicy != nil:
			st.policies = append(st.policies, a.CreatePolicy.Policy)
			err = add(r.c.CreatePolicy(ctx, a.CreatePolicy.Policy))
		case a.UpdatePolicy != nil:
			p := a.UpdatePolicy.Policy
			st.policies = slices.DeleteFunc(st.policies, func(q *networkingv1.NetworkPolicy) bool { return q.Namespace == p.Namespace && q.Name == p.Name })
			st.policies = append(st.policies, p)
			err = add(r.c.UpdatePolicy(ctx, p))
		case a.DeletePolicy != nil:
			d := a.DeletePolicy
			st.policies = slices.DeleteFunc(st.policies, func(q *networkingv1.NetworkPolicy) bool { return q.Namespace == d.Namespace && q.Name == d.Name })
			err = add(r.c.DeletePolicy(ctx, d.Namespace, d.Name))
		case a.CreateNamespace != nil:
			err = add(r.c.CreateNamespace(ctx, a.CreateNamespace.Namespace, a.CreateNamespace.Labels))
		case a.SetNamespaceLabels != nil:
			err = add(r.c.SetNamespaceLabels(ctx, a.SetNamespaceLabels.Namespace, a.SetNamespaceLabels.Labels))
		case a.DeleteNamespace != nil:
			ns := a.DeleteNamespace.Namespace
			st.policies = slices.DeleteFunc(st.policies, func(q *networkingv1.NetworkPolicy) bool { return q.Namespace == ns })
			var ws []cluster.Write
			ws, err = r.c.DeleteNamespace(ctx, ns)
			writes = append(writes, ws...)
		case a.CreatePod != nil:
			cp := a.CreatePod
			node := r.c.Nodes[len(r.c.Pods())%len(r.c.Nodes)]
			var w cluster.Write
			var sb []cluster.ServiceBackend
			w, sb, err = r.createPod(ctx, node, cp.Namespace, cp.Pod, cp.Labels)
			svcs = append(svcs, sb...)
			err = add(w, err)
		case a.SetPodLabels != nil:
			sp := a.SetPodLabels
			err = add(r.c.SetPodLabels(ctx, sp.Namespace, sp.Pod, r.podLabels(sp.Namespace, sp.Pod, sp.Labels)))
		case a.DeletePod != nil:
			err = add(r.deletePod(ctx, a.DeletePod.Namespace, a.DeletePod.Pod))
		case a.ReadNetworkPolicies != nil:
			// Nothing to do: the harness already knows the policies.
		default:
			err = fmt.Errorf("unsupported action %+v", a)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return writes, svcs, nil
}

// reset returns the cluster to the base layout, touching only what a case
// changed, and waits until every node enforces it.
func (r *Runner) reset(ctx context.Context) error {
	var writes []cluster.Write
	var svcs []cluster.ServiceBackend
	base := map[string]bool{}
	for _, ns := range BaseNamespaces {
		base[ns] = true
	}
	nss, err := r.c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range nss.Items {
		switch {
		case strings.HasPrefix(n.Name, "kube-") || n.Name == "default":
		case !base[n.Name]:
			ws, err := r.c.DeleteNamespace(ctx, n.Name)
			if err != nil {
				return err
			}
			writes = append(writes, ws...)
		default:
			want := map[string]string{"ns": n.Name, "kubernetes.io/metadata.name": n.Name}
			if !maps.Equal(n.Labels, want) {
				w, err := r.c.SetNamespaceLabels(ctx, n.Name, map[string]string{"ns": n.Name})
				if err != nil {
					return err
				}
				writes = append(writes, w)
			}
			nps, err := r.c.Client.NetworkingV1().NetworkPolicies(n.Name).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, np := range nps.Items {
				w, err := r.c.DeletePolicy(ctx, n.Name, np.Name)
				if err != nil {
					return err
				}
				writes = append(writes, w)
			}
		}
	}
	for _, ns := range BaseNamespaces {
		if _, err := r.c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			w, err := r.c.CreateNamespace(ctx, ns, map[string]string{"ns": ns})
			if err != nil {
				return err
			}
			writes = append(writes, w)
		}
	}
	existing := map[string]bool{}
	for _, p := range r.c.Pods() {
		existing[p.Key()] = true
		if _, isBase := r.podNode[p.Key()]; !isBase {
			w, err := r.deletePod(ctx, p.Namespace, p.Name)
			if err != nil {
				return err
			}
			writes = append(writes, w)
			continue
		}
		kp, err := r.c.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if want := r.podLabels(p.Namespace, p.Name, map[string]string{"pod": p.Name}); !maps.Equal(kp.Labels, want) {
			w, err := r.c.SetPodLabels(ctx, p.Namespace, p.Name, want)
			if err != nil {
				return err
			}
			writes = append(writes, w)
		}
	}
	for key, node := range r.podNode {
		if !existing[key] {
			ns, name, _ := strings.Cut(key, "/")
			w, sb, err := r.createPod(ctx, r.c.Nodes[node], ns, name, map[string]string{"pod": name})
			if err != nil {
				return err
			}
			writes = append(writes, w)
			svcs = append(svcs, sb...)
		}
	}
	return r.wait(ctx, writes, svcs, time.Minute)
}

// Run executes the cases once per family of Options.Families, printing
// one line per case and the failures' truth tables, and returns one
// report per family, in that order.
func (r *Runner) Run(ctx context.Context) ([]*Report, error) {
	var reps []*Report
	for _, f := range r.opts.Families {
		if err := ctx.Err(); err != nil {
			return reps, err
		}
		rep, err := r.runFamily(ctx, f)
		reps = append(reps, rep)
		if err != nil {
			return reps, err
		}
	}
	return reps, nil
}

func (r *Runner) runFamily(ctx context.Context, family string) (*Report, error) {
	start := time.Now()
	cases := r.opts.Cases
	if cases == nil {
		cases = r.GeneratedCasesFor(family)
	}
	idx := r.opts.Only
	if idx == nil {
		for i := range cases {
			idx = append(idx, i)
		}
	}
	rep := &Report{Family: family, Modes: map[generator.ProbeMode]*ModeReport{}}
	for _, m := range r.opts.ProbeModes {
		rep.Modes[m] = &ModeReport{}
	}
	for _, i := range idx {
		if i >= len(cases) {
			continue
		}
		tc := cases[i]
		t0 := time.Now()
		passed, err := r.RunCase(ctx, tc, rep)
		var status []string
		for _, m := range r.opts.ProbeModes {
			mr := rep.Modes[m]
			st := "PASS"
			if err != nil || !passed[m] {
				st = "FAIL"
				rep.Failed++
				mr.Failed++
				f := fmt.Sprintf("#%d %s", i+1, tc.Description)
				rep.Failures = append(rep.Failures, f+" ("+string(m)+")")
				mr.Failures = append(mr.Failures, f)
			} else {
				rep.Passed++
				mr.Passed++
			}
			status = append(status, st)
			if len(r.opts.ProbeModes) > 1 {
				status[len(status)-1] += "(" + string(m) + ")"
			}
		}
		fmt.Fprintf(r.out, "%s %s #%d %s (%d steps, %.1fs) [%s]\n", strings.Join(status, " "), family, i+1, tc.Description, len(tc.Steps), time.Since(t0).Seconds(), strings.Join(tc.Tags.Keys(), ","))
		if err != nil {
			fmt.Fprintf(r.out, "  error: %v\n", err)
		}
	}
	rep.Wall = time.Since(start)
	return rep, nil
}

// LoadCases reads cases written elsewhere: a YAML or JSON list of
// cyclonus TestCases (Description, Tags, Steps{Probe, Actions}), run
// unchanged on the base layout.
func LoadCases(path string) ([]*generator.TestCase, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file struct {
		Cases []*generator.TestCase `json:"cases"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil || len(file.Cases) == 0 {
		var list []*generator.TestCase
		if err2 := yaml.Unmarshal(data, &list); err2 != nil {
			return nil, fmt.Errorf("%s: want a list of cases or {cases: [...]}: %v", path, err2)
		}
		file.Cases = list
	}
	for i, c := range file.Cases {
		if len(c.Steps) == 0 {
			return nil, fmt.Errorf("%s: case %d (%q) has no steps", path, i+1, c.Description)
		}
		for j, s := range c.Steps {
			if s.Probe == nil {
				return nil, fmt.Errorf("%s: case %d step %d has no probe", path, i+1, j+1)
			}
		}
	}
	return file.Cases, nil
}
