package ipam

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Kubeconfig is the part of a kubeconfig file overlay mode needs to read
// one Node: the current context's server, CA and credentials. It is read
// without client-go so the plugin (a new process per call) stays small
// and starts fast. Supported: token, tokenFile, client certificate and key
// (files or -data), certificate-authority(-data), insecure-skip-tls-verify.
// exec and auth-provider credentials are not (a configuration error).
type Kubeconfig struct {
	Server    string
	Token     string
	TLSConfig *tls.Config
}

type kubeconfigFile struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server                   string `json:"server"`
			CertificateAuthority     string `json:"certificate-authority"`
			CertificateAuthorityData string `json:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
			TLSServerName            string `json:"tls-server-name"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			Token                 string          `json:"token"`
			TokenFile             string          `json:"tokenFile"`
			ClientCertificate     string          `json:"client-certificate"`
			ClientCertificateData string          `json:"client-certificate-data"`
			ClientKey             string          `json:"client-key"`
			ClientKeyData         string          `json:"client-key-data"`
			Exec                  json.RawMessage `json:"exec"`
			AuthProvider          json.RawMessage `json:"auth-provider"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
}

// LoadKubeconfig reads path (relative file references resolve against
// its directory, as kubectl does).
func LoadKubeconfig(path string) (*Kubeconfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f kubeconfigFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a kubeconfig: %w", err)
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	ctxName := f.CurrentContext
	if ctxName == "" && len(f.Contexts) == 1 {
		ctxName = f.Contexts[0].Name
	}
	var clusterName, userName string
	found := false
	for _, c := range f.Contexts {
		if c.Name == ctxName {
			clusterName, userName, found = c.Context.Cluster, c.Context.User, true
		}
	}
	if !found {
		return nil, fmt.Errorf("no context %q", ctxName)
	}
	kc := &Kubeconfig{TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	found = false
	for _, c := range f.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		kc.Server = strings.TrimRight(c.Cluster.Server, "/")
		kc.TLSConfig.InsecureSkipVerify = c.Cluster.InsecureSkipTLSVerify
		kc.TLSConfig.ServerName = c.Cluster.TLSServerName
		ca, err := fileOrData(rel(c.Cluster.CertificateAuthority), c.Cluster.CertificateAuthorityData)
		if err != nil {
			return nil, fmt.Errorf("cluster %q certificate-authority: %w", clusterName, err)
		}
		if ca != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				return nil, fmt.Errorf("cluster %q certificate-authority: no PEM certificate", clusterName)
			}
			kc.TLSConfig.RootCAs = pool
		}
	}
	if !found || kc.Server == "" {
		return nil, fmt.Errorf("no cluster %q with a server", clusterName)
	}
	if _, err := url.Parse(kc.Server); err != nil {
		return nil, fmt.Errorf("cluster %q server: %w", clusterName, err)
	}
	for _, u := range f.Users {
		if u.Name != userName {
			continue
		}
		if len(u.User.Exec) > 0 || len(u.User.AuthProvider) > 0 {
			return nil, fmt.Errorf("user %q: exec and auth-provider credentials are not supported; use a token, tokenFile or client certificate", userName)
		}
		kc.Token = u.User.Token
		if kc.Token == "" && u.User.TokenFile != "" {
			t, err := os.ReadFile(rel(u.User.TokenFile))
			if err != nil {
				return nil, fmt.Errorf("user %q tokenFile: %w", userName, err)
			}
			kc.Token = strings.TrimSpace(string(t))
		}
		cert, err := fileOrData(rel(u.User.ClientCertificate), u.User.ClientCertificateData)
		if err != nil {
			return nil, fmt.Errorf("user %q client-certificate: %w", userName, err)
		}
		key, err := fileOrData(rel(u.User.ClientKey), u.User.ClientKeyData)
		if err != nil {
			return nil, fmt.Errorf("user %q client-key: %w", userName, err)
		}
		if cert != nil || key != nil {
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("user %q client certificate: %w", userName, err)
			}
			kc.TLSConfig.Certificates = []tls.Certificate{pair}
		}
	}
	return kc, nil
}

func fileOrData(path, data string) ([]byte, error) {
	if data != "" {
		return base64.StdEncoding.DecodeString(data)
	}
	if path == "" {
		return nil, nil
	}
	return os.ReadFile(path)
}

// NodePodCIDRs reads spec.podCIDRs (or the older spec.podCIDR) of a Node:
// one GET of /api/v1/nodes/<name>. client, if set, is used as is (tests).
func (kc *Kubeconfig) NodePodCIDRs(ctx context.Context, node string, client *http.Client) ([]string, error) {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: kc.TLSConfig, Proxy: http.ProxyFromEnvironment}}
	}
	u := kc.Server + "/api/v1/nodes/" + url.PathEscape(node)
	header := http.Header{"Accept": {"application/json"}}
	if kc.Token != "" {
		header.Set("Authorization", "Bearer "+kc.Token)
	}
	body, err := get(ctx, client, u, header, 4<<20)
	if err != nil {
		return nil, err
	}
	var n struct {
		Spec struct {
			PodCIDR  string   `json:"podCIDR"`
			PodCIDRs []string `json:"podCIDRs"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	if len(cidrs) == 0 {
		return nil, fmt.Errorf("node %s has no spec.podCIDRs yet (the node IPAM controller has not assigned a block)", node)
	}
	return cidrs, nil
}
