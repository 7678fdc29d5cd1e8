package hnsacl

// The JSON HNS receives and returns, kept platform-neutral so the exact
// bytes are tested on Linux; hcn_windows.go only moves them.

// WireACL is the Settings of an ACL endpoint policy: the fields of
// hcn.AclPolicySetting plus the Id HNS accepts and returns (the reference
// azure-npm relies on it too), which marks this package's ACLs.
type WireACL struct {
	ID              string `json:"Id,omitempty"`
	Protocols       string `json:",omitempty"`
	Action          string `json:""`
	Direction       string `json:""`
	LocalAddresses  string `json:",omitempty"`
	RemoteAddresses string `json:",omitempty"`
	LocalPorts      string `json:",omitempty"`
	RemotePorts     string `json:",omitempty"`
	RuleType        string `json:",omitempty"`
	Priority        uint16 `json:",omitempty"`
}

// WireSetPolicy is the Settings of a SetPolicy network policy
// (hcn.SetPolicySetting).
type WireSetPolicy struct {
	ID     string `json:"Id"`
	Name   string
	Type   string `json:"PolicyType"`
	Values string
}

// Wire converts between this package's ACL convention and HNS's fields.
type Wire struct {
	// IngressPeerInRemote: see HCNOptions.
	IngressPeerInRemote bool
}

// ACL returns the wire form of a (RuleType Switch).
func (w Wire) ACL(a ACL) WireACL {
	s := WireACL{ID: a.ID, Protocols: a.Protocols, Action: string(a.Action), Direction: string(a.Direction),
		LocalAddresses: a.LocalAddresses, RemoteAddresses: a.RemoteAddresses, LocalPorts: a.LocalPorts, RemotePorts: a.RemotePorts,
		RuleType: "Switch", Priority: a.Priority}
	if a.Direction == In && !w.IngressPeerInRemote {
		s.LocalAddresses, s.RemoteAddresses = a.RemoteAddresses, a.LocalAddresses
	}
	return s
}

// FromACL is the inverse of ACL ("256", HNS's any protocol, reads as "").
func (w Wire) FromACL(s WireACL) ACL {
	a := ACL{ID: s.ID, Protocols: s.Protocols, Action: Action(s.Action), Direction: Direction(s.Direction),
		LocalAddresses: s.LocalAddresses, RemoteAddresses: s.RemoteAddresses, LocalPorts: s.LocalPorts, RemotePorts: s.RemotePorts,
		Priority: s.Priority}
	if a.Direction == In && !w.IngressPeerInRemote {
		a.LocalAddresses, a.RemoteAddresses = s.RemoteAddresses, s.LocalAddresses
	}
	if a.Protocols == "256" {
		a.Protocols = ""
	}
	return a
}

// SetPolicy returns the wire form of s.
func (Wire) SetPolicy(s SetPolicy) WireSetPolicy {
	return WireSetPolicy{ID: s.ID, Name: s.Name, Type: string(s.Type), Values: s.Values}
}

// FromSetPolicy is the inverse of SetPolicy.
func (Wire) FromSetPolicy(s WireSetPolicy) SetPolicy {
	return SetPolicy{ID: s.ID, Name: s.Name, Type: SetPolicyType(s.Type), Values: s.Values}
}
