package plugin_test

import "testing"

func TestSmoke(t *testing.T) {
	for _, mode := range []string{"transparent", "bridge"} {
		t.Run(mode, func(t *testing.T) {
			n := newNode(t, 10)
			l := n.list("1.1.0", n.netConf(mode, nil))
			a, b := n.newPod("a"), n.newPod("b")
			ra := n.mustAdd(l, a)
			rb := n.mustAdd(l, b)
			t.Logf("%+v %v", ra, rb.IPs[0])
			if err := ping(a.ns, rb.IPs[0].Address.IP.String()); err != nil {
				t.Error(err)
			}
			if err := ping(a.ns, gatewayIP); err != nil {
				t.Error(err)
			}
			out, _ := n.ns.Exec("ip", "-d", "addr")
			t.Log(out)
			n.mustDel(l, a)
			n.assertGone(a, ra.IPs[0].Address.IP)
		})
	}
}
