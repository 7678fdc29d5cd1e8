//go:build linux

package plugin_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// azureHost serves the getinterfaceinfov1 XML from inside the node
// namespace (where the plugin runs), counting requests.
type azureHost struct {
	url      string
	requests atomic.Int32
	body     atomic.Value // string
}

func (n *node) startAzureHost(secondaries []string) *azureHost {
	n.t.Helper()
	var ln net.Listener
	if err := n.ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		n.t.Fatal(err)
	}
	h := &azureHost{url: "http://" + ln.Addr().String() + "/machine/plugins?comp=nmagent&type=getinterfaceinfov1"}
	h.set(secondaries)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		if r.URL.Query().Get("type") != "getinterfaceinfov1" {
			http.Error(w, "bad query", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprint(w, h.body.Load().(string))
	})}
	go func() { _ = srv.Serve(ln) }()
	n.t.Cleanup(func() { _ = srv.Close() })
	return h
}

// set replaces the document: the node's primary address plus secondaries,
// and a second NIC whose subnet must not be used by default.
func (h *azureHost) set(secondaries []string) {
	var b strings.Builder
	b.WriteString(`<Interfaces><Interface MacAddress="000D3A6E2B4C" IsPrimary="true"><IPSubnet Prefix="10.240.0.0/16">`)
	b.WriteString(`<IPAddress Address="10.240.0.4" IsPrimary="true"/>`)
	for _, a := range secondaries {
		fmt.Fprintf(&b, `<IPAddress Address="%s" IsPrimary="false"/>`, a)
	}
	b.WriteString(`</IPSubnet></Interface>`)
	b.WriteString(`<Interface MacAddress="000D3A6E2B4D" IsPrimary="false"><IPSubnet Prefix="10.50.0.0/24"><IPAddress Address="10.50.0.4" IsPrimary="true"/><IPAddress Address="10.50.0.5" IsPrimary="false"/></IPSubnet></Interface>`)
	b.WriteString(`</Interfaces>`)
	h.body.Store(b.String())
}

// TestAzureSourceIsCachedAndRefreshedWhenExhausted: with the Azure host
// as the address source, consecutive ADDs within queryInterval query it
// once; primary addresses are never handed out; when the cached pool is
// exhausted the plugin asks the host again (the NIC may have got new
// addresses) before failing.
func TestAzureSourceIsCachedAndRefreshedWhenExhausted(t *testing.T) {
	n := newNode(t, 0)
	host := n.startAzureHost([]string{"10.240.0.10", "10.240.0.11"})
	conf := n.netConf("transparent", nil)
	conf["ipam"] = map[string]interface{}{"type": "azure-vnet-ipam", "environment": "azure", "queryUrl": host.url, "queryInterval": "1h"}
	l := n.list("1.1.0", conf)

	a, b, c := n.newPod("az-a"), n.newPod("az-b"), n.newPod("az-c")
	ra, rb := n.mustAdd(l, a), n.mustAdd(l, b)
	got := map[string]bool{ra.IPs[0].Address.IP.String(): true, rb.IPs[0].Address.IP.String(): true}
	if !got["10.240.0.10"] || !got["10.240.0.11"] {
		t.Errorf("pods got %v, want the two secondary addresses", got)
	}
	if r := host.requests.Load(); r != 1 {
		t.Errorf("%d requests to the host for two ADDs within queryInterval, want 1", r)
	}
	host.set([]string{"10.240.0.10", "10.240.0.11", "10.240.0.12"})
	rc := n.mustAdd(l, c)
	if ip := rc.IPs[0].Address.IP.String(); ip != "10.240.0.12" {
		t.Errorf("third pod got %s, want the newly assigned 10.240.0.12", ip)
	}
	if r := host.requests.Load(); r != 2 {
		t.Errorf("%d requests, want 2 (one refresh on exhaustion)", r)
	}
	for _, p := range []*pod{a, b, c} {
		n.mustDel(l, p)
	}
}

// TestAzureSourceDownIsTryAgain: the host endpoint failing is transient,
// so ADD says 11 (try again later) and creates nothing.
func TestAzureSourceDownIsTryAgain(t *testing.T) {
	n := newNode(t, 0)
	conf := n.netConf("transparent", nil)
	conf["ipam"] = map[string]interface{}{"type": "azure-vnet-ipam", "environment": "azure", "queryUrl": "http://127.0.0.1:1/nothing"}
	l := n.list("1.1.0", conf)
	p := n.newPod("az-down")
	_, err := n.add(l, p)
	if cniCode(err) != types.ErrTryAgainLater {
		t.Fatalf("want code %d, got %v", types.ErrTryAgainLater, err)
	}
	n.assertGone(p, nil)
}

// TestIPAMPluginWithReferenceBridge: azure-vnet-ipam on its own, as the
// IPAM of another network plugin (the reference bridge): ADD, CHECK, DEL
// through libcni; then GC and STATUS (1.1.0) on an IPAM-only list.
func TestIPAMPluginWithReferenceBridge(t *testing.T) {
	n := newNode(t, 5)
	ipamConf := map[string]interface{}{"type": "azure-vnet-ipam", "environment": "file", "interfacesFile": n.ifsFile}
	// The reference plugins speak up to 1.0.0. The IPAM plugin gets the
	// whole config, so the top-level stateDir is the one it uses.
	l := n.list("1.0.0", map[string]interface{}{"type": "bridge", "bridge": "cni-ref0", "ipam": ipamConf, "stateDir": n.dir})
	a, b := n.newPod("ref-a"), n.newPod("ref-b")
	ra := n.mustAdd(l, a)
	// CHECK before the second pod: the reference bridge (Debian's v1.1)
	// fails its own CHECK once another port changes the bridge's MAC.
	if err := n.cni.CheckNetworkList(context.Background(), l, a.rt()); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	rb := n.mustAdd(l, b)
	if ra.IPs[0].Address.IP.Equal(rb.IPs[0].Address.IP) {
		t.Fatalf("same address twice: %s", ra.IPs[0].Address.IP)
	}
	n.mustDel(l, a)
	if _, is := n.state(); is.Find(a.id, "eth0") != nil || is.Find(b.id, "eth0") == nil {
		t.Errorf("after DEL of a: allocations %+v", is.Allocations)
	}

	// IPAM-only list at 1.1.0: STATUS and GC of b.
	only := n.list("1.1.0", map[string]interface{}{"type": "azure-vnet-ipam", "stateDir": n.dir, "ipam": ipamConf})
	if err := n.cni.GetStatusNetworkList(context.Background(), only); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	if err := n.cni.GCNetworkList(context.Background(), only, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}}); err != nil {
		t.Errorf("GC: %v", err)
	}
	if _, is := n.state(); len(is.Allocations) != 0 {
		t.Errorf("GC left allocations: %+v", is.Allocations)
	}
	n.mustDel(l, b)
}
