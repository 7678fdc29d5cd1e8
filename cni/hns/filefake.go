package hns

import (
	"encoding/json"
	"time"

	"github.com/open-acn/acn/cni/store"
)

// FileFake is a Fake kept in a JSON file: each call locks the file, loads
// the fake, runs the call and saves the result, the way the HNS service
// serializes the requests of separate plugin processes. Tests build the
// plugin with it (cni/winplugin/fakehns) so libcni can run real processes.
type FileFake struct {
	Path string
}

var _ HNS = FileFake{}

func (ff FileFake) do(write bool, f func(*Fake) error) error {
	l, err := store.Acquire(ff.Path+".lock", time.Minute)
	if err != nil {
		return err
	}
	defer l.Release()
	fk := NewFake()
	if _, err := store.Read(ff.Path, &fk.st); err != nil {
		return err
	}
	fk.st.normalize()
	before, _ := json.Marshal(&fk.st)
	if err := f(fk); err != nil {
		return err
	}
	if !write {
		return nil
	}
	after, _ := json.Marshal(&fk.st)
	if string(after) == string(before) {
		return nil
	}
	return store.Save(ff.Path, &fk.st)
}

// Load returns the fake as the file holds it now.
func (ff FileFake) Load() (*Fake, error) {
	var out *Fake
	err := ff.do(false, func(f *Fake) error { out = f; return nil })
	return out, err
}

// Update runs f on the fake and saves it (test setup: namespaces).
func (ff FileFake) Update(f func(*Fake) error) error { return ff.do(true, f) }

// NetworkByName implements HNS.
func (ff FileFake) NetworkByName(name string) (n *Network, err error) {
	err = ff.do(false, func(f *Fake) error { n, err = f.NetworkByName(name); return err })
	return n, err
}

// CreateNetwork implements HNS.
func (ff FileFake) CreateNetwork(in *Network) (n *Network, err error) {
	err = ff.do(true, func(f *Fake) error { n, err = f.CreateNetwork(in); return err })
	return n, err
}

// Endpoints implements HNS.
func (ff FileFake) Endpoints(networkID string) (eps []*Endpoint, err error) {
	err = ff.do(false, func(f *Fake) error { eps, err = f.Endpoints(networkID); return err })
	return eps, err
}

// EndpointByName implements HNS.
func (ff FileFake) EndpointByName(name string) (e *Endpoint, err error) {
	err = ff.do(false, func(f *Fake) error { e, err = f.EndpointByName(name); return err })
	return e, err
}

// CreateEndpoint implements HNS.
func (ff FileFake) CreateEndpoint(in *Endpoint) (e *Endpoint, err error) {
	err = ff.do(true, func(f *Fake) error { e, err = f.CreateEndpoint(in); return err })
	return e, err
}

// DeleteEndpoint implements HNS.
func (ff FileFake) DeleteEndpoint(id string) error {
	return ff.do(true, func(f *Fake) error { return f.DeleteEndpoint(id) })
}

// AttachEndpoint implements HNS.
func (ff FileFake) AttachEndpoint(namespaceID, endpointID string) error {
	return ff.do(true, func(f *Fake) error { return f.AttachEndpoint(namespaceID, endpointID) })
}

// DetachEndpoint implements HNS.
func (ff FileFake) DetachEndpoint(namespaceID, endpointID string) error {
	return ff.do(true, func(f *Fake) error { return f.DetachEndpoint(namespaceID, endpointID) })
}
