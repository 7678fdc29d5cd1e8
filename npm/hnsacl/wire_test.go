package hnsacl

import (
	"encoding/json"
	"testing"
)

// TestWireJSON: the exact settings JSON sent to HNS (the keys of
// hcn.AclPolicySetting plus Id, and of hcn.SetPolicySetting), for both
// address conventions, and the round trip of what HNS returns.
func TestWireJSON(t *testing.T) {
	in := ACL{Action: Allow, Direction: In, Priority: PriorityAllow, Protocols: "6", RemoteAddresses: "acn-iabc-4", LocalPorts: "80-90"}.withID()
	out := ACL{Action: Allow, Direction: Out, Priority: PriorityAllow, Protocols: "17", RemoteAddresses: "acn-iabc-4", RemotePorts: "53"}.withID()
	block := ACL{Action: Block, Direction: In, Priority: PriorityBlock}.withID()
	cases := []struct {
		w    Wire
		a    ACL
		want string
	}{
		{Wire{}, in, `{"Id":"` + in.ID + `","Protocols":"6","Action":"Allow","Direction":"In","LocalAddresses":"acn-iabc-4","LocalPorts":"80-90","RuleType":"Switch","Priority":200}`},
		{Wire{IngressPeerInRemote: true}, in, `{"Id":"` + in.ID + `","Protocols":"6","Action":"Allow","Direction":"In","RemoteAddresses":"acn-iabc-4","LocalPorts":"80-90","RuleType":"Switch","Priority":200}`},
		{Wire{}, out, `{"Id":"` + out.ID + `","Protocols":"17","Action":"Allow","Direction":"Out","RemoteAddresses":"acn-iabc-4","RemotePorts":"53","RuleType":"Switch","Priority":200}`},
		{Wire{}, block, `{"Id":"` + block.ID + `","Action":"Block","Direction":"In","RuleType":"Switch","Priority":4000}`},
	}
	for _, c := range cases {
		raw, err := json.Marshal(c.w.ACL(c.a))
		if err != nil {
			t.Fatal(err)
		}
		if string(raw) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.a, raw, c.want)
		}
		var back WireACL
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		if got := c.w.FromACL(back); got != c.a {
			t.Errorf("round trip: %+v, want %+v", got, c.a)
		}
	}
	// HNS's "any protocol" reads back as ""
	if a := (Wire{}).FromACL(WireACL{Protocols: "256", Action: "Block", Direction: "Out"}); a.Protocols != "" {
		t.Errorf("protocol 256 read as %q", a.Protocols)
	}
	sp := SetPolicy{ID: "acn-iabc-4", Name: "acn-iabc-4", Type: NestedIPSet, Values: "acn-ia-4,acn-ib-4"}
	raw, _ := json.Marshal(Wire{}.SetPolicy(sp))
	if want := `{"Id":"acn-iabc-4","Name":"acn-iabc-4","PolicyType":"NESTEDIPSET","Values":"acn-ia-4,acn-ib-4"}`; string(raw) != want {
		t.Errorf("set policy:\n got %s\nwant %s", raw, want)
	}
	var back WireSetPolicy
	_ = json.Unmarshal(raw, &back)
	if Wire.FromSetPolicy(Wire{}, back) != sp {
		t.Errorf("set policy round trip: %+v", back)
	}
}
