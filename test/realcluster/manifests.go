//go:build linux

package realcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// InstallProduct installs the CNI and NPM exactly as an operator would:
// `kubectl apply -k` of an overlay over deploy/cni and deploy/npm with the
// image tags of this build (out/deploy/*, written by `make images`) that
// picks the conflist and sets NPM's dataplane in its ConfigMap. It waits until the nodes are Ready
// (the CNI installer put the conflist in place) and NPM's DaemonSet is
// ready on every node (its readinessProbe: first sync programmed).
func (c *Cluster) InstallProduct(ctx context.Context) error {
	cniOverlay, err := c.writeOverlay("cni", c.cniPatches())
	if err != nil {
		return err
	}
	if out, err := c.Kubectl(ctx, "apply", "-k", cniOverlay); err != nil {
		return fmt.Errorf("install the CNI: %w\n%s", err, out)
	}
	if err := c.WaitNodesReady(ctx, 3*time.Minute); err != nil {
		return fmt.Errorf("after applying deploy/cni: %w", err)
	}
	npmPatches, err := c.npmPatches()
	if err != nil {
		return err
	}
	npmOverlay, err := c.writeOverlay("npm", npmPatches)
	if err != nil {
		return err
	}
	if out, err := c.Kubectl(ctx, "apply", "-k", npmOverlay); err != nil {
		return fmt.Errorf("install NPM: %w\n%s", err, out)
	}
	return c.WaitDaemonSet(ctx, "kube-system", "azure-npm", 3*time.Minute)
}

// WaitDaemonSet waits until the DaemonSet's current generation runs and is
// ready on every node.
func (c *Cluster) WaitDaemonSet(ctx context.Context, namespace, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var ds *appsv1.DaemonSet
	var err error
	for {
		ds, err = c.Client.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil && ds.Status.ObservedGeneration >= ds.Generation && ds.Status.DesiredNumberScheduled == int32(len(c.Nodes)) &&
			ds.Status.NumberReady == ds.Status.DesiredNumberScheduled && ds.Status.UpdatedNumberScheduled == ds.Status.DesiredNumberScheduled {
			return nil
		}
		if time.Now().After(deadline) {
			pods, _ := c.Kubectl(ctx, "get", "pods", "-n", namespace, "-o", "wide")
			if err != nil {
				return fmt.Errorf("daemonset %s/%s: %w", namespace, name, err)
			}
			return fmt.Errorf("daemonset %s/%s not ready after %s: %d/%d ready\n%s", namespace, name, timeout, ds.Status.NumberReady, ds.Status.DesiredNumberScheduled, pods)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// cniPatches picks the conflist the installer puts on the nodes (its
// CNI_CONFLIST): none for the default, transparent mode.
func (c *Cluster) cniPatches() []map[string]any {
	if c.cfg.CNIMode == "transparent" {
		return nil
	}
	return []map[string]any{{
		"apiVersion": "apps/v1", "kind": "DaemonSet",
		"metadata": map[string]any{"name": "azure-cni", "namespace": "kube-system"},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"initContainers": []any{map[string]any{
			"name": "install",
			"env":  []any{map[string]any{"name": "CNI_CONFLIST", "value": "10-azure-" + c.cfg.CNIMode + ".conflist"}},
		}}}}},
	}}
}

// npmPatches sets the dataplane in NPM's ConfigMap: the whole config file
// of deploy/npm with that one key changed, as an operator edits it.
func (c *Cluster) npmPatches() ([]map[string]any, error) {
	data, err := os.ReadFile(filepath.Join(c.cfg.Root, "deploy", "npm", "linux", "configmap.yaml"))
	if err != nil {
		return nil, err
	}
	var cm struct {
		Metadata map[string]any    `json:"metadata"`
		Data     map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		return nil, fmt.Errorf("deploy/npm/linux/configmap.yaml: %w", err)
	}
	file := cm.Data["azure-npm.yaml"]
	if !strings.Contains(file, "\ndataplane: iptables\n") {
		return nil, fmt.Errorf("deploy/npm/linux/configmap.yaml: no `dataplane: iptables` line to set")
	}
	file = strings.Replace(file, "\ndataplane: iptables\n", "\ndataplane: "+c.cfg.Dataplane+"\n", 1)
	return []map[string]any{{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": cm.Metadata["name"], "namespace": cm.Metadata["namespace"]},
		"data":     map[string]string{"azure-npm.yaml": file},
	}}, nil
}

// writeOverlay writes <Dir>/overlays/<name>/kustomization.yaml: the
// strategic-merge patches over out/deploy/<name> (deploy/<name> with this
// build's image tags, from `make images`).
func (c *Cluster) writeOverlay(name string, patches []map[string]any) (string, error) {
	base := filepath.Join(c.cfg.Root, "out", "deploy", name)
	if _, err := os.Stat(filepath.Join(base, "kustomization.yaml")); err != nil {
		return "", fmt.Errorf("%s: run `make images` (it pins deploy/%s to this build's images): %w", base, name, err)
	}
	dir := filepath.Join(c.cfg.Dir, "overlays", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		return "", err
	}
	k := map[string]any{"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": []string{rel}}
	var patchFiles []map[string]string
	for i, p := range patches {
		data, err := yaml.Marshal(p)
		if err != nil {
			return "", err
		}
		f := fmt.Sprintf("patch-%d.yaml", i)
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			return "", err
		}
		patchFiles = append(patchFiles, map[string]string{"path": f})
	}
	if len(patchFiles) > 0 {
		k["patches"] = patchFiles
	}
	data, err := yaml.Marshal(k)
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), data, 0o644)
}
