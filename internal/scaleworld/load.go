package scaleworld

import (
	"context"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// CreatePod creates p through the API and sets its status as a kubelet
// would (a create drops the status); it returns the pod's resourceVersion.
func CreatePod(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod) (uint64, error) {
	status := p.Status
	created, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return 0, err
	}
	created.Status = status
	updated, err := cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return 0, err
	}
	rv, _ := strconv.ParseUint(updated.ResourceVersion, 10, 64)
	return rv, nil
}

// Load creates the world through the API with parallel clients: nodes and
// namespaces first, then pods (a create and a status update each) and
// policies.
func Load(ctx context.Context, cs kubernetes.Interface, w *World, parallel int) error {
	var mu sync.Mutex
	var firstErr error
	run := func(jobs []func() error) error {
		work := make(chan func() error)
		var wg sync.WaitGroup
		for i := 0; i < max(parallel, 1); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for f := range work {
					if err := f(); err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
				}
			}()
		}
		for _, j := range jobs {
			work <- j
		}
		close(work)
		wg.Wait()
		return firstErr
	}
	var first []func() error
	for _, n := range w.Nodes {
		first = append(first, func() error { _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); return err })
	}
	for _, ns := range w.Namespaces {
		first = append(first, func() error { _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); return err })
	}
	if err := run(first); err != nil {
		return err
	}
	var rest []func() error
	for _, p := range w.Pods {
		rest = append(rest, func() error { _, err := CreatePod(ctx, cs, p); return err })
	}
	for _, np := range w.Policies {
		rest = append(rest, func() error {
			_, err := cs.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
			return err
		})
	}
	return run(rest)
}
