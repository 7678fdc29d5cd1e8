package imagespec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

const lock = "iptables 1.8.9-2 amd64 2928d3ca6ca8a3dc3f423f6752822b1f3614a5ba609ff7806bcba4449ffe90e1\n"

func TestLoad(t *testing.T) {
	valid := `{"name":"example.com/x","debian":"bookworm","packages":["iptables"],"entrypoint":["x"],"user":"0"}`
	for _, tc := range []struct {
		name, spec, lock, wantErr string
	}{
		{"valid", valid, lock, ""},
		{"unknown key", `{"name":"example.com/x","debian":"bookworm","entrypoint":["x"],"user":"0","typo":1}`, lock, "unknown field"},
		{"no entrypoint", `{"name":"example.com/x","debian":"bookworm","user":"0"}`, lock, "required"},
		{"bad mode", `{"name":"example.com/x","debian":"bookworm","entrypoint":["x"],"user":"0","files":[{"src":"a","dst":"/a","mode":"0999"}]}`, lock, "want octal"},
		{"relative destination", `{"name":"example.com/x","debian":"bookworm","entrypoint":["x"],"user":"0","files":[{"src":"a","dst":"a","mode":"0755"}]}`, lock, "absolute destination"},
		{"content without newline", `{"name":"example.com/x","debian":"bookworm","entrypoint":["x"],"user":"0","content":[{"dst":"/etc/x","data":"x","mode":"0644"}]}`, lock, "ending in a newline"},
		{"absolute symlink with checksums", `{"name":"example.com/x","debian":"bookworm","entrypoint":["x"],"user":"0","symlinks":[{"path":"/a","target":"/b"}],"checksums":{"file":"/s","base":"/","dirs":["/a"]}}`, lock, "relative target"},
		{"package not locked", valid, "", "is not locked"},
		{"bad lock", valid, "iptables 1\n", "want name version arch sha256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, SpecFile, tc.spec)
			write(t, dir, LockFile, tc.lock)
			_, err := Load(dir)
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestSkip(t *testing.T) {
	s := Spec{Exclude: []string{"usr/share/doc"}, Keep: []string{"/usr/lib/cni/portmap"}}
	for rel, want := range map[string]bool{
		"usr":                       false, // above a kept path
		"usr/lib/cni":               false,
		"usr/lib/cni/portmap":       false,
		"usr/lib/cni/bridge":        true,
		"usr/lib/cni/portmapx":      true,
		"usr/share/doc":             true,
		"usr/share/doc/x/copyright": true,
		"etc":                       true,
	} {
		if got := s.skip(rel); got != want {
			t.Errorf("skip(%q) = %v, want %v", rel, got, want)
		}
	}
	all := Spec{Exclude: []string{"usr/share/doc"}}
	if all.skip("usr/share/docs") || !all.skip("usr/share/doc/x") || all.skip("etc/protocols") {
		t.Error("without keep, only the excluded trees are skipped")
	}
}
