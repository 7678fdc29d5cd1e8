package flowlog

import "testing"

// FuzzParseID: any NFLOG prefix (another program may log to the group)
// parses without panic, and an accepted ID prints back to itself.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"acn:ain:abcdefghijkl:0", "acn:deg:abcdefghijkl", "acn:abn:x:12", "", "acn:", "acn:::", "IN=eth0 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		again, err := ParseID(id.String())
		if err != nil || again != id {
			t.Fatalf("%q parsed to %+v, printed %q, parsed again to %+v (%v)", s, id, id.String(), again, err)
		}
		if _, err := ParseAnnotation(s); err == nil && s == "" {
			t.Fatal("empty annotation accepted")
		}
	})
}
