// Package labelset is a compact, immutable set of Kubernetes labels for
// what an agent keeps per object of the cluster. Every azure-npm keeps the
// labels of every pod (a selector can name any of them): as a Go map, three
// labels cost ~320 bytes plus a copy of every key and value per pod; as a
// Set they cost one slice of their strings (16 bytes a string), and the
// strings are interned, so the "app" and "tier" of 150,000 pods share one
// copy of each key and of each common value.
package labelset

import (
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/labels"
)

// Set is a set of labels: keys and values alternating, sorted by key. The
// zero value is the empty set. It implements labels.Labels, so selectors
// match it directly. A Set is never modified after New.
type Set struct {
	kv []string
}

var _ labels.Labels = Set{}

// New makes a Set of m (which it does not keep).
func New(m map[string]string) Set {
	if len(m) == 0 {
		return Set{}
	}
	kv := make([]string, 0, 2*len(m))
	for k := range m {
		kv = append(kv, k)
	}
	slices.Sort(kv)
	n := len(kv)
	kv = kv[:2*n]
	for i := n - 1; i >= 0; i-- {
		k := kv[i]
		kv[2*i], kv[2*i+1] = Intern(k), Intern(m[k])
	}
	return Set{kv: kv}
}

// Intern returns a shared copy of s: equal strings interned anywhere in
// the process share one copy. The table is bounded: when full it is
// forgotten and starts over, so values seen once (a pod's
// pod-template-hash) do not accumulate, and a common value costs one more
// copy per turn of the table. (Not package unique: its weak references
// cost more CPU than the rest of decoding a pod, at 150,000 pods.)
func Intern(s string) string {
	if s == "" {
		return ""
	}
	interned.Lock()
	defer interned.Unlock()
	if v, ok := interned.m[s]; ok {
		return v
	}
	if len(interned.m) >= internMax {
		interned.m = make(map[string]string, internMax/4)
	}
	s = strings.Clone(s) // not a view into a decoder's buffer
	interned.m[s] = s
	return s
}

// internMax bounds the intern table (~1 MiB at the most).
const internMax = 1 << 14

var interned = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// Len is the number of labels.
func (s Set) Len() int { return len(s.kv) / 2 }

// Lookup returns the value of key and whether the set has it.
func (s Set) Lookup(key string) (string, bool) {
	// Binary search over the keys (even indexes).
	lo, hi := 0, len(s.kv)/2
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.kv[2*m] < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(s.kv)/2 && s.kv[2*lo] == key {
		return s.kv[2*lo+1], true
	}
	return "", false
}

// Has reports whether the set has key (labels.Labels).
func (s Set) Has(key string) bool { _, ok := s.Lookup(key); return ok }

// Get returns the value of key, "" when absent (labels.Labels).
func (s Set) Get(key string) string { v, _ := s.Lookup(key); return v }

// Equal reports whether s and o hold the same labels.
func (s Set) Equal(o Set) bool { return slices.Equal(s.kv, o.kv) }

// Map returns the labels as a new map (nil when empty).
func (s Set) Map() map[string]string {
	if len(s.kv) == 0 {
		return nil
	}
	m := make(map[string]string, len(s.kv)/2)
	for i := 0; i < len(s.kv); i += 2 {
		m[s.kv[i]] = s.kv[i+1]
	}
	return m
}

// String is the labels in selector form, sorted: "app=a,tier=web".
func (s Set) String() string { return labels.Set(s.Map()).String() }
