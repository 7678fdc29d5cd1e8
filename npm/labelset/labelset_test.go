package labelset

import (
	"fmt"
	"testing"
	"unsafe"

	"k8s.io/apimachinery/pkg/labels"
)

func TestSetMatchesLikeAMap(t *testing.T) {
	maps := []map[string]string{
		nil,
		{"app": "web"},
		{"app": "web", "tier": "db", "pod-template-hash": "5f7d9c", "a": "", "z.io/x": "1"},
	}
	sels := []string{"", "app=web", "app!=web", "tier in (db,api)", "tier notin (db)", "a", "!a", "z.io/x=1,app=web", "missing", "!missing"}
	for _, m := range maps {
		s := New(m)
		if s.Len() != len(m) {
			t.Errorf("%v: Len %d", m, s.Len())
		}
		for k, v := range m {
			if got, ok := s.Lookup(k); !ok || got != v {
				t.Errorf("%v: Lookup(%q) = %q, %v", m, k, got, ok)
			}
		}
		if s.Has("absent") || s.Get("absent") != "" {
			t.Errorf("%v: has a label it was not given", m)
		}
		if got := labels.Set(s.Map()); !labels.Equals(got, labels.Set(m)) {
			t.Errorf("Map() = %v, want %v", got, m)
		}
		if s.String() != labels.Set(m).String() {
			t.Errorf("String() = %q, want %q", s.String(), labels.Set(m).String())
		}
		for _, text := range sels {
			sel, err := labels.Parse(text)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sel.Matches(s), sel.Matches(labels.Set(m)); got != want {
				t.Errorf("%q matches %v: %v, a map: %v", text, m, got, want)
			}
		}
	}
}

func TestEqual(t *testing.T) {
	a := New(map[string]string{"app": "web", "tier": "db"})
	if !a.Equal(New(map[string]string{"tier": "db", "app": "web"})) {
		t.Error("same labels, not Equal")
	}
	for _, o := range []map[string]string{{"app": "web"}, {"app": "web", "tier": "api"}, {"app": "web", "tie": "db"}, nil} {
		if a.Equal(New(o)) {
			t.Errorf("%v Equal to %v", a, o)
		}
	}
	if !New(nil).Equal(Set{}) || !New(map[string]string{}).Equal(Set{}) {
		t.Error("empty sets differ")
	}
}

func TestInternSharesOneCopy(t *testing.T) {
	// Two strings built separately (as two decoded objects' would be).
	a, b := string([]byte("app-3")), string([]byte("app-3"))
	if unsafe.StringData(a) == unsafe.StringData(b) {
		t.Fatal("test strings share memory already")
	}
	ia, ib := Intern(a), Intern(b)
	if ia != a || unsafe.StringData(ia) != unsafe.StringData(ib) {
		t.Errorf("Intern gave separate copies of %q", a)
	}
	sa, sb := New(map[string]string{string([]byte("tier")): a}), New(map[string]string{string([]byte("tier")): b})
	if unsafe.StringData(sa.kv[0]) != unsafe.StringData(sb.kv[0]) || unsafe.StringData(sa.kv[1]) != unsafe.StringData(sb.kv[1]) {
		t.Error("two sets of equal labels hold separate copies of their strings")
	}
}

func TestInternTableIsBounded(t *testing.T) {
	for i := 0; i < 3*internMax; i++ {
		Intern(fmt.Sprintf("hash-%d", i)) // values seen once
		if n := len(interned.m); n > internMax {
			t.Fatalf("intern table holds %d strings, bound %d", n, internMax)
		}
	}
	if a, b := Intern(string([]byte("web"))), Intern(string([]byte("web"))); unsafe.StringData(a) != unsafe.StringData(b) {
		t.Error("after the table turned over, equal strings are not shared")
	}
}
