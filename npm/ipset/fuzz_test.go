package ipset

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// saveText prints sets the way `ipset save` does (the subset ParseSave reads).
func saveText(sets map[string]*Set) string {
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(sets)) {
		s := sets[n]
		fmt.Fprintf(&b, "create %s %s family %s hashsize 1024 maxelem %d\n", n, s.Type, s.Family, MaxElem)
		for _, m := range slices.Sorted(maps.Keys(s.Members)) {
			fmt.Fprintf(&b, "add %s %s\n", n, m)
		}
	}
	return b.String()
}

// FuzzParseSave: any `ipset save` output parses without panicking, and
// what it yields prints and parses back to the same sets.
func FuzzParseSave(f *testing.F) {
	f.Add([]byte("create acn-npm4-iabc hash:ip family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x1\nadd acn-npm4-iabc 10.0.0.1\nadd acn-npm4-iabc 10.0.0.2\n"))
	f.Add([]byte("create acn-npm6-pabc hash:ip,port family inet6 hashsize 1024 maxelem 1048576\nadd acn-npm6-pabc fd00::1,tcp:80\ncreate other hash:net family inet\nadd other 10.0.0.0/8\n"))
	f.Add([]byte("add acn-npm4-x 1.2.3.4\ncreate acn-npm4-x hash:net\nadd acn-npm4-x 10.0.0.0/24\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		sets, err := ParseSave(out, "acn-npm")
		if err != nil {
			return // a line longer than the scanner's buffer: reported, not parsed
		}
		for n, s := range sets {
			if !strings.HasPrefix(n, "acn-npm") || s.Name != n || s.Members == nil {
				t.Fatalf("set %q parsed as %+v", n, s)
			}
		}
		again, err := ParseSave([]byte(saveText(sets)), "acn-npm")
		if err != nil {
			t.Fatal(err)
		}
		if a, b := saveText(sets), saveText(again); a != b {
			t.Fatalf("parse -> print -> parse differs:\n%s\n----\n%s", a, b)
		}
	})
}
