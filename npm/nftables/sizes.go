//go:build linux

package nftables

// Sizes are the lengths of the dataplane's maps (the shared core's, the
// desired and known kernel objects, the pending changes), for the
// daemon's status and the soak test's growth check.
func (d *Dataplane) Sizes() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	sz := d.model.Sizes()
	for _, o := range []struct {
		name string
		objs *objects
	}{{"want", d.want}, {"have", d.have}} {
		if o.objs != nil {
			sz[o.name+".sets"] = len(o.objs.sets)
			sz[o.name+".chains"] = len(o.objs.chains)
		}
	}
	sz["dirtySets"] = len(d.dirtySets)
	sz["dirtyChains"] = len(d.dirtyChains)
	sz["pendingSets"] = len(d.pending)
	sz["groupChains"] = len(d.grpObjs)
	sz["groupPolicies"] = len(d.grpPols)
	sz["goneGroupPolicies"] = len(d.grpGone)
	return sz
}
