package debpkg

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const sha = "2928d3ca6ca8a3dc3f423f6752822b1f3614a5ba609ff7806bcba4449ffe90e1"

func TestParseLock(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Package
		wantErr  string
	}{
		{"comments and blanks", "# header\n\niptables 1.8.9-2 amd64 " + sha + "\n", []Package{{"iptables", "1.8.9-2", "amd64", sha}}, ""},
		{"epoch", "libfoo 1:2.0+b1 all " + sha + "\n", []Package{{"libfoo", "1:2.0+b1", "all", sha}}, ""},
		{"too few fields", "iptables 1.8.9-2 amd64\n", nil, "want name version arch sha256"},
		{"bad name", "Iptables 1.8.9-2 amd64 " + sha + "\n", nil, "bad package name"},
		{"bad version", "iptables 1.8;rm amd64 " + sha + "\n", nil, "bad version"},
		{"bad sha", "iptables 1.8.9-2 amd64 abc\n", nil, "bad sha256"},
		{"duplicate", "iptables 1 amd64 " + sha + "\niptables 2 amd64 " + sha + "\n", nil, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLock(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseLock: %v %v, want %v", got, err, tc.want)
			}
		})
	}
}

func TestFormatLockRoundTrip(t *testing.T) {
	pkgs := []Package{{"zlib1g", "1:1.2.13", "amd64", sha}, {"iptables", "1.8.9-2", "amd64", sha}}
	out := FormatLock("two\nlines", pkgs)
	if !bytes.HasPrefix(out, []byte("# two\n# lines\niptables ")) {
		t.Errorf("FormatLock: header or order wrong:\n%s", out)
	}
	back, err := ParseLock(bytes.NewReader(out))
	if err != nil || len(back) != 2 || back[0].Name != "iptables" || back[1] != pkgs[0] {
		t.Errorf("round trip: %v %v", back, err)
	}
	if got := pkgs[0].FileName(); got != "zlib1g_1%3a1.2.13_amd64.deb" {
		t.Errorf("FileName %s: apt-get download escapes the epoch's colon as %%3a", got)
	}
}

// TestFetchRefusesWrongChecksum: a cached .deb whose checksum is not the
// lock's is never used; apt-get is asked for the locked version instead,
// which fails for a package that does not exist.
func TestFetchRefusesWrongChecksum(t *testing.T) {
	dir := t.TempDir()
	p := Package{"acn-no-such-package", "1.0", "amd64", sha}
	if err := os.WriteFile(filepath.Join(dir, p.FileName()), []byte("not the deb"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(context.Background(), []Package{p}, dir); err == nil {
		t.Fatal("Fetch used a .deb whose checksum differs from the lock")
	}
}
