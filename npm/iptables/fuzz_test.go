package iptables

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// saveText prints parsed chains and built-in chains' rules as iptables-save would.
func saveText(table string, chains map[string][]string, builtins map[string][]string) string {
	var b strings.Builder
	b.WriteString("*" + table + "\n:FORWARD ACCEPT [0:0]\n")
	names := slices.Sorted(maps.Keys(chains))
	for _, c := range names {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, c := range slices.Sorted(maps.Keys(builtins)) {
		for _, l := range builtins[c] {
			b.WriteString(l + "\n")
		}
	}
	for _, c := range names {
		for _, l := range chains[c] {
			b.WriteString(l + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// FuzzParseSave: any iptables-save output parses without panicking, and
// NPM's chains and the built-in chains' rules it yields print and parse
// back the same, in NPM's table and in the one earlier versions used.
func FuzzParseSave(f *testing.F) {
	f.Add([]byte("*nat\n:ACN-NPM-X - [0:0]\n-A ACN-NPM-X -j RETURN\nCOMMIT\n*filter\n:FORWARD ACCEPT [0:0]\n:ACN-NPM - [0:0]\n:ACN-NPM-INGRESS - [0:0]\n" +
		"-A FORWARD -m comment --comment \"acn-npm network policy\" -j ACN-NPM\n-A FORWARD -j KUBE-FORWARD\n" +
		"-A ACN-NPM -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n-A ACN-NPM -j ACN-NPM-INGRESS\n" +
		"-A ACN-NPM-INGRESS -m set --match-set acn-npm4-gixyz dst -m comment --comment \"pods isolated for ingress by a/web\" -g ACN-NPM-GI-xyz\nCOMMIT\n"))
	f.Add([]byte("*filter\n-A ACN-NPM-GI-1 -p tcp -m tcp --dport 80 -j RETURN\n-A\n:ACN-NPM-E\n-A OTHER -j DROP\n"))
	f.Add([]byte("*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:ACN-NPM - [0:0]\n" +
		"-A FORWARD -m comment --comment \"acn-npm network policy\" -j ACN-NPM\n-A INPUT -j ACN-NPM-INPUT\n-A ACN-NPM -j RETURN\nCOMMIT\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		for _, table := range []string{Table, LegacyTable} {
			fuzzParseSave(t, out, table)
		}
	})
}

func fuzzParseSave(t *testing.T, out []byte, table string) {
	{
		chains, builtins := parseSave(out, table)
		for c, lines := range chains {
			if !strings.HasPrefix(c, ChainPrefix) {
				t.Fatalf("chain %q is not NPM's", c)
			}
			for _, l := range lines {
				if f := strings.Fields(l); len(f) < 2 || f[0] != "-A" || f[1] != c {
					t.Fatalf("line %q filed under chain %q", l, c)
				}
			}
		}
		c2, f2 := parseSave([]byte(saveText(table, chains, builtins)), table)
		if a, b := saveText(table, chains, builtins), saveText(table, c2, f2); a != b {
			t.Fatalf("parse -> print -> parse differs:\n%s\n----\n%s", a, b)
		}
		for _, h := range hooks {
			_ = jumpPlaced(h, builtins[h.builtin])
		}
		for _, rules := range builtins {
			for _, l := range deleteJumps(rules) {
				if !strings.HasPrefix(l, "-D ") || !isNPMJump(l) {
					t.Fatalf("deletion %q of a rule that is no NPM jump", l)
				}
			}
		}
	}
}
