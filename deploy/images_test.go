//go:build linux

package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	cniconfig "github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/internal/imagespec"
)

// imageSpec loads images/<name>/image.json.
func imageSpec(t *testing.T, name string) *imagespec.Spec {
	t.Helper()
	s, err := imagespec.LoadSpec(filepath.Join(filepath.Dir(deployDir(t)), "images", name))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// specPaths is every path the image spec creates (files, dirs, content,
// symlinks), absolute, with their parent directories.
func specPaths(s *imagespec.Spec) map[string]bool {
	paths := map[string]bool{"/": true}
	add := func(p string) {
		for ; p != "/"; p = path.Dir(p) {
			paths[p] = true
		}
	}
	for _, f := range s.Files {
		add(f.Dst)
	}
	for _, d := range s.Dirs {
		add(d.Path)
	}
	for _, c := range s.Content {
		add(c.Dst)
	}
	for _, l := range s.Symlinks {
		add(l.Path)
	}
	return paths
}

// checkRunsFromImage checks that a container runs from the image as built:
// the image's repository, a command the image has on its PATH, mount points
// under directories the image has (a read-only root cannot get new ones
// except from the runtime).
func checkRunsFromImage(t *testing.T, c corev1.Container, s *imagespec.Spec) {
	t.Helper()
	repo, _, _ := strings.Cut(c.Image, ":")
	if repo != s.Name {
		t.Errorf("container %s: image %s, want %s (images/*/image.json)", c.Name, c.Image, s.Name)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("container %s: imagePullPolicy %q, want IfNotPresent (images imported on the node are used)", c.Name, c.ImagePullPolicy)
	}
	if len(c.Command) == 0 {
		t.Fatalf("container %s: no command", c.Name)
	}
	if c.Command[0] != s.Entrypoint[0] {
		t.Errorf("container %s: command %v does not start with the image's entrypoint %v", c.Name, c.Command, s.Entrypoint)
	}
	onPath := false
	for _, f := range s.Files {
		if path.Base(f.Dst) == c.Command[0] && slices.Contains([]string{"/usr/bin", "/usr/sbin", "/bin", "/sbin"}, path.Dir(f.Dst)) && f.Mode == "0755" {
			onPath = true
		}
	}
	if !onPath {
		t.Errorf("container %s: %s is not an executable on the image's PATH", c.Name, c.Command[0])
	}
	paths := specPaths(s)
	for _, m := range c.VolumeMounts {
		if !paths[path.Dir(m.MountPath)] {
			t.Errorf("container %s: mount %s is not under a directory of the image", c.Name, m.MountPath)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("container %s: want a read-only root file system and runAsUser 0 (the image's user %q)", c.Name, s.User)
	}
}

// TestNPMDaemonSetFitsImage: the Linux azure-npm DaemonSet runs the
// azure-npm image as built.
func TestNPMDaemonSetFitsImage(t *testing.T) {
	s := imageSpec(t, "azure-npm")
	var ds appsv1.DaemonSet
	readObject(t, "npm/linux/daemonset.yaml", &ds)
	c := ds.Spec.Template.Spec.Containers[0]
	checkRunsFromImage(t, c, s)
	if got := strings.Join(append(c.Command, c.Args...), " "); !strings.HasPrefix(got, strings.Join(s.Entrypoint, " ")+" ") {
		t.Errorf("command+args %q, want the image's entrypoint %v and its flags", got, s.Entrypoint)
	}
	// What the DaemonSet mounts must be where the image expects it.
	paths := specPaths(s)
	for _, m := range c.VolumeMounts {
		if m.MountPath != "/run/xtables.lock" && !paths[m.MountPath] {
			t.Errorf("mount %s: no such directory in the image", m.MountPath)
		}
	}
}

// TestCNIDaemonSet checks the azure-cni DaemonSet: on every node before it
// has a network, the installer as init container writing the host's CNI
// directories, the installer's sleep keeping the pod alive.
func TestCNIDaemonSet(t *testing.T) {
	s := imageSpec(t, "azure-cni")
	var ds appsv1.DaemonSet
	readObject(t, "cni/daemonset.yaml", &ds)
	spec := ds.Spec.Template.Spec
	if ds.Name != "azure-cni" || ds.Namespace != "kube-system" {
		t.Errorf("%s/%s, want kube-system/azure-cni", ds.Namespace, ds.Name)
	}
	if !spec.HostNetwork {
		t.Error("hostNetwork must be true: the node has no pod network before the plugins are installed")
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	if spec.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Errorf("nodeSelector %v, want kubernetes.io/os: linux", spec.NodeSelector)
	}
	// A not-ready node carries these taints until its network is there.
	for _, taint := range []corev1.Taint{
		{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoExecute},
		{Key: "node.kubernetes.io/network-unavailable", Effect: corev1.TaintEffectNoSchedule},
		{Key: "node.cloudprovider.kubernetes.io/uninitialized", Value: "true", Effect: corev1.TaintEffectNoSchedule},
	} {
		tolerated := false
		for _, tol := range spec.Tolerations {
			tolerated = tolerated || tol.ToleratesTaint(klog.Background(), &taint, false)
		}
		if !tolerated {
			t.Errorf("taint %s:%s not tolerated: the pod that gives the node its network would never run", taint.Key, taint.Effect)
		}
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken must be false: the installer reads no API object")
	}
	if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
		t.Fatalf("%d init containers and %d containers, want 1 and 1", len(spec.InitContainers), len(spec.Containers))
	}
	init, main := spec.InitContainers[0], spec.Containers[0]
	checkRunsFromImage(t, init, s)
	checkRunsFromImage(t, main, s)
	if init.Image != main.Image {
		t.Errorf("init image %s, main image %s: want one image", init.Image, main.Image)
	}
	if got := strings.Join(append(init.Command, init.Args...), " "); got != "azure-cni-install install" {
		t.Errorf("init container runs %q, want azure-cni-install install", got)
	}
	if got := strings.Join(append(main.Command, main.Args...), " "); got != "azure-cni-install sleep" {
		t.Errorf("main container runs %q, want azure-cni-install sleep", got)
	}
	for _, c := range []corev1.Container{init, main} {
		sc := c.SecurityContext
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %s: capabilities %+v, want drop ALL and none added", c.Name, sc.Capabilities)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || (sc.Privileged != nil && *sc.Privileged) {
			t.Errorf("container %s: want allowPrivilegeEscalation false, not privileged", c.Name)
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: no memory limit", c.Name)
		}
	}
	if len(main.VolumeMounts) != 0 {
		t.Errorf("the sleeping container mounts %v: it needs nothing of the host", main.VolumeMounts)
	}

	// The installer's directories (env) are the hostPath mounts of the
	// host's CNI directories; the conflist is one the image has.
	env := map[string]string{}
	for _, e := range init.Env {
		env[e.Name] = e.Value
	}
	hostPaths := map[string]corev1.HostPathVolumeSource{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = *v.HostPath
		}
	}
	mounts := map[string]string{}
	for _, m := range init.VolumeMounts {
		mounts[m.MountPath] = m.Name
		if m.ReadOnly {
			t.Errorf("mount %s is read-only: the installer writes there", m.MountPath)
		}
	}
	for envName, host := range map[string]string{"CNI_BIN_DIR": "/opt/cni/bin", "CNI_CONF_DIR": "/etc/cni/net.d"} {
		hp, ok := hostPaths[mounts[env[envName]]]
		if !ok || hp.Path != host || hp.Type == nil || *hp.Type != corev1.HostPathDirectoryOrCreate {
			t.Errorf("%s=%q is not the hostPath %s (DirectoryOrCreate): volumes %v, mounts %v", envName, env[envName], host, hostPaths, mounts)
		}
	}
	if len(hostPaths) != 2 {
		t.Errorf("host paths %v, want only /opt/cni/bin and /etc/cni/net.d", hostPaths)
	}
	conflist := env["CNI_CONFLIST"]
	inImage := false
	for _, f := range s.Files {
		inImage = inImage || (path.Base(f.Dst) == conflist && f.Src == "deploy/cni/"+conflist)
	}
	if !inImage {
		t.Errorf("CNI_CONFLIST=%q is not a conflist of deploy/cni the image carries", conflist)
	}
	if env["CNI_FORCE_CONFLIST"] != "false" {
		t.Errorf("CNI_FORCE_CONFLIST=%q, want false (an operator's conflist is kept)", env["CNI_FORCE_CONFLIST"])
	}
	// Every Linux conflist of deploy/cni is in the image (the Windows one
	// goes to the Windows archive: TestWindowsArchive).
	conflists, _ := filepath.Glob(filepath.Join(deployDir(t), "cni", "*.conflist"))
	for _, c := range conflists {
		if strings.HasSuffix(c, "-windows.conflist") {
			continue
		}
		found := false
		for _, f := range s.Files {
			found = found || f.Src == "deploy/cni/"+filepath.Base(c)
		}
		if !found {
			t.Errorf("%s is not in the azure-cni image (images/azure-cni/image.json)", filepath.Base(c))
		}
	}
}

// TestCNIFileIPAMExample: deploy/cni-file-ipam mounts its ConfigMap's
// conflist where CNI_CONFLIST_FILE points, and that conflist is one
// azure-vnet accepts (the plugin's own parser) chained with portmap.
func TestCNIFileIPAMExample(t *testing.T) {
	k := kubectl(t)
	out, err := exec.Command(k, "kustomize", filepath.Join(deployDir(t), "cni-file-ipam")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/cni-file-ipam: %v", err)
	}
	var ds appsv1.DaemonSet
	var cm corev1.ConfigMap
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var meta struct{ Kind string }
		_ = yaml.Unmarshal([]byte(doc), &meta)
		switch meta.Kind {
		case "DaemonSet":
			if err := yaml.Unmarshal([]byte(doc), &ds); err != nil {
				t.Fatal(err)
			}
		case "ConfigMap":
			if err := yaml.Unmarshal([]byte(doc), &cm); err != nil {
				t.Fatal(err)
			}
		}
	}
	init := ds.Spec.Template.Spec.InitContainers[0]
	env := map[string]string{}
	for _, e := range init.Env {
		env[e.Name] = e.Value
	}
	file := env["CNI_CONFLIST_FILE"]
	var mountVol string
	for _, m := range init.VolumeMounts {
		if strings.HasPrefix(file, m.MountPath+"/") {
			mountVol = m.Name
		}
	}
	var fromCM string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == mountVol && v.ConfigMap != nil {
			fromCM = v.ConfigMap.Name
		}
	}
	if file == "" || fromCM == "" || fromCM != cm.Name {
		t.Fatalf("CNI_CONFLIST_FILE %q is not on a mount of the generated ConfigMap %q (volume %q, ConfigMap %q)", file, cm.Name, mountVol, fromCM)
	}
	data, ok := cm.Data[path.Base(file)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", cm.Name, path.Base(file))
	}
	list, err := libcni.ConfListFromBytes([]byte(data))
	if err != nil {
		t.Fatalf("the example conflist: %v", err)
	}
	if len(list.Plugins) != 2 || list.Plugins[0].Network.Type != cniconfig.VnetPlugin || list.Plugins[1].Network.Type != "portmap" {
		t.Fatalf("plugins %v, want azure-vnet then portmap", list.Plugins)
	}
	// As the runtime hands it to the plugin: name and cniVersion injected.
	var vnet map[string]any
	if err := json.Unmarshal(list.Plugins[0].Bytes, &vnet); err != nil {
		t.Fatal(err)
	}
	vnet["name"], vnet["cniVersion"] = list.Name, list.CNIVersion
	conf, _ := json.Marshal(vnet)
	nc, err := cniconfig.Parse(conf, cniconfig.VnetPlugin)
	if err != nil {
		t.Fatalf("azure-vnet rejects the example conflist: %v", err)
	}
	if nc.IPAM.Environment != "file" {
		t.Errorf("ipam environment %q, want file", nc.IPAM.Environment)
	}
}

// TestKustomizeSelectsVersion: each kustomization names its image, and the
// overlay make images writes retags every container (init containers too)
// to the build's version.
func TestKustomizeSelectsVersion(t *testing.T) {
	k := kubectl(t)
	const version = "v9.9.9-test"
	for _, tc := range []struct{ dir, image string }{
		{"npm", "ghcr.io/open-acn/azure-npm"},
		{"cni", "ghcr.io/open-acn/azure-cni"},
		{"cni-file-ipam", "ghcr.io/open-acn/azure-cni"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			overlay := filepath.Join(t.TempDir(), tc.dir)
			if err := imagespec.Overlay(filepath.Join(deployDir(t), tc.dir), overlay, version); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(k, "kustomize", overlay).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", overlay, err, out)
			}
			images := 0
			for _, doc := range strings.Split(string(out), "\n---\n") {
				var ds appsv1.DaemonSet
				if err := yaml.Unmarshal([]byte(doc), &ds); err != nil || ds.Kind != "DaemonSet" {
					continue
				}
				for _, c := range append(ds.Spec.Template.Spec.InitContainers, ds.Spec.Template.Spec.Containers...) {
					images++
					if c.Image != tc.image+":"+version {
						t.Errorf("%s container %s: image %s, want %s:%s", ds.Name, c.Name, c.Image, tc.image, version)
					}
				}
			}
			if images == 0 {
				t.Errorf("no DaemonSet container in the rendered overlay:\n%s", out)
			}
		})
	}
	if err := imagespec.Overlay(t.TempDir(), filepath.Join(t.TempDir(), "x"), version); err == nil || !os.IsNotExist(err) {
		t.Errorf("overlay of a directory without kustomization.yaml: %v", err)
	}
}
