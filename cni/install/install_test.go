//go:build linux

package install

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// source is an image payload: bin/, conf/ and a correct SHA256SUMS.
type source struct {
	dir   string
	files map[string][]byte // relative path -> content
}

func newSource(t *testing.T) *source {
	t.Helper()
	s := &source{dir: t.TempDir(), files: map[string][]byte{
		"bin/azure-vnet":                []byte("azure-vnet v1"),
		"bin/azure-vnet-ipam":           []byte("azure-vnet-ipam v1"),
		"bin/portmap":                   []byte("portmap"),
		"bin/loopback":                  []byte("loopback"),
		"conf/10-azure.conflist":        []byte(`{"name":"azure"}`),
		"conf/10-azure-bridge.conflist": []byte(`{"name":"azure","mode":"bridge"}`),
	}}
	s.write(t)
	return s
}

// write writes the files and the manifest from s.files.
func (s *source) write(t *testing.T) {
	t.Helper()
	var sums []string
	for rel, data := range s.files {
		p := filepath.Join(s.dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(data)
		sums = append(sums, hex.EncodeToString(h[:])+"  "+rel+"\n")
	}
	sort.Strings(sums)
	if err := os.WriteFile(filepath.Join(s.dir, SumsFile), []byte(strings.Join(sums, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

type host struct{ bin, conf string }

func newHost(t *testing.T) host {
	root := t.TempDir()
	return host{filepath.Join(root, "opt/cni/bin"), filepath.Join(root, "etc/cni/net.d")}
}

func opts(s *source, h host) Options {
	return Options{SourceDir: s.dir, BinDir: h.bin, ConfDir: h.conf, Conflist: "10-azure.conflist"}
}

// listDir lists the regular files (names) of dir, temporaries included.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil // missing, or a file where the directory should be
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// checkInstalled checks the exact content and modes of both directories.
func checkInstalled(t *testing.T, s *source, h host, conflist string, extraConf ...string) {
	t.Helper()
	if got, want := strings.Join(listDir(t, h.bin), " "), "azure-vnet azure-vnet-ipam loopback portmap"; got != want {
		t.Errorf("bin dir holds %q, want %q", got, want)
	}
	want := append([]string{conflist}, extraConf...)
	sort.Strings(want)
	if got := strings.Join(listDir(t, h.conf), " "); got != strings.Join(want, " ") {
		t.Errorf("conf dir holds %q, want %q", got, strings.Join(want, " "))
	}
	for _, b := range []string{"azure-vnet", "azure-vnet-ipam", "loopback", "portmap"} {
		checkFile(t, filepath.Join(h.bin, b), 0o755, s.files["bin/"+b])
	}
	checkFile(t, filepath.Join(h.conf, conflist), 0o644, s.files["conf/"+conflist])
}

func checkFile(t *testing.T, p string, mode os.FileMode, want []byte) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Error(err)
		return
	}
	got, _ := os.ReadFile(p)
	if st.Mode().Perm() != mode || !bytes.Equal(got, want) {
		t.Errorf("%s: mode %o content %q, want %o %q", p, st.Mode().Perm(), got, mode, want)
	}
}

type stamp struct {
	ino   uint64
	mtime int64
}

func stamps(t *testing.T, h host) map[string]stamp {
	t.Helper()
	m := map[string]stamp{}
	for _, dir := range []string{h.bin, h.conf} {
		for _, n := range listDir(t, dir) {
			st, err := os.Stat(filepath.Join(dir, n))
			if err != nil {
				t.Fatal(err)
			}
			m[filepath.Join(dir, n)] = stamp{st.Sys().(*syscall.Stat_t).Ino, st.ModTime().UnixNano()}
		}
	}
	return m
}

func TestInstall(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("inode checks are Linux-only")
	}
	for _, tc := range []struct {
		name string
		// prepare changes the source, the host or the options.
		prepare func(t *testing.T, s *source, h host, o *Options)
		wantErr string // "" = success
		// check runs after Run (on success or failure).
		check func(t *testing.T, s *source, h host, res Result)
	}{
		{
			name: "fresh install",
			check: func(t *testing.T, s *source, h host, res Result) {
				checkInstalled(t, s, h, "10-azure.conflist")
				for p, a := range res {
					if a != Installed {
						t.Errorf("%s: %s, want installed", p, a)
					}
				}
			},
		},
		{
			name: "another conflist",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				o.Conflist = "10-azure-bridge.conflist"
			},
			check: func(t *testing.T, s *source, h host, res Result) {
				checkInstalled(t, s, h, "10-azure-bridge.conflist")
			},
		},
		{
			name: "a different conflist is kept",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				mkfile(t, filepath.Join(h.conf, "10-azure.conflist"), `{"custom":true}`, 0o644)
			},
			check: func(t *testing.T, s *source, h host, res Result) {
				checkFile(t, filepath.Join(h.conf, "10-azure.conflist"), 0o644, []byte(`{"custom":true}`))
				checkFile(t, filepath.Join(h.bin, "azure-vnet"), 0o755, s.files["bin/azure-vnet"])
				if a := res[filepath.Join(h.conf, "10-azure.conflist")]; a != Kept {
					t.Errorf("conflist %s, want kept", a)
				}
			},
		},
		{
			name: "a different conflist is replaced when forced",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				mkfile(t, filepath.Join(h.conf, "10-azure.conflist"), `{"custom":true}`, 0o644)
				o.ForceConflist = true
			},
			check: func(t *testing.T, s *source, h host, res Result) {
				checkInstalled(t, s, h, "10-azure.conflist")
			},
		},
		{
			name: "old plugins are replaced by rename (new inode), wrong modes fixed",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				mkfile(t, filepath.Join(h.bin, "azure-vnet"), "azure-vnet v0", 0o755)
				mkfile(t, filepath.Join(h.bin, "portmap"), "portmap", 0o700)
			},
			check: func(t *testing.T, s *source, h host, res Result) {
				checkInstalled(t, s, h, "10-azure.conflist")
				if a := res[filepath.Join(h.bin, "portmap")]; a != ModeFixed {
					t.Errorf("portmap %s, want mode fixed", a)
				}
			},
		},
		{
			name: "stale temporaries of an interrupted run are removed",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				mkfile(t, filepath.Join(h.bin, tempPrefix+"azure-vnet-123"), "half", 0o600)
			},
			check: func(t *testing.T, s *source, h host, res Result) {
				checkInstalled(t, s, h, "10-azure.conflist")
			},
		},
		{
			name: "other conflists of the host stay",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				mkfile(t, filepath.Join(h.conf, "99-other.conflist"), "{}", 0o644)
			},
			check: func(t *testing.T, s *source, h host, res Result) {
				checkInstalled(t, s, h, "10-azure.conflist", "99-other.conflist")
			},
		},
		{
			name: "conflist from a file (a ConfigMap)",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				o.ConflistFile = filepath.Join(t.TempDir(), "custom.conflist")
				mkfile(t, o.ConflistFile, `{"cniVersion":"1.0.0","name":"azure","plugins":[{"type":"azure-vnet","ipam":{"type":"azure-vnet-ipam","environment":"file"}}]}`, 0o600)
				s.files["conf/10-azure.conflist"] = mustReadFile(t, o.ConflistFile)
			},
			check: func(t *testing.T, s *source, h host, res Result) {
				checkInstalled(t, s, h, "10-azure.conflist")
			},
		},
		{
			name: "conflist file that is not a conflist",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				o.ConflistFile = filepath.Join(t.TempDir(), "custom.conflist")
				mkfile(t, o.ConflistFile, `{"cniVersion":"1.0.0","name":"azure","type":"azure-vnet"}`, 0o644)
			},
			wantErr: "want cniVersion, name and plugins",
		},
		{
			name: "conflist file with an untyped plugin",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				o.ConflistFile = filepath.Join(t.TempDir(), "custom.conflist")
				mkfile(t, o.ConflistFile, `{"cniVersion":"1.0.0","name":"azure","plugins":[{"ipam":{}}]}`, 0o644)
			},
			wantErr: "plugin 0 has no type",
		},
		{
			name: "conflist file that is not JSON",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				o.ConflistFile = filepath.Join(t.TempDir(), "custom.conflist")
				mkfile(t, o.ConflistFile, `plugins: []`, 0o644)
			},
			wantErr: "not a JSON network configuration list",
		},
		{
			name: "missing conflist file",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				o.ConflistFile = filepath.Join(t.TempDir(), "nope")
			},
			wantErr: "conflist file",
		},
		{
			name: "conflist file under a name that is not a conflist",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				o.ConflistFile = filepath.Join(t.TempDir(), "custom.conflist")
				mkfile(t, o.ConflistFile, `{"cniVersion":"1.0.0","name":"azure","plugins":[{"type":"azure-vnet"}]}`, 0o644)
				o.Conflist = "../10-azure.conflist"
			},
			wantErr: "want a file name ending in .conflist",
		},
		{
			name: "corrupt plugin in the image",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				mkfile(t, filepath.Join(s.dir, "bin/portmap"), "tampered", 0o644)
			},
			wantErr: "source bin/portmap is corrupt",
		},
		{
			name: "corrupt conflist in the image",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				mkfile(t, filepath.Join(s.dir, "conf/10-azure-bridge.conflist"), "{}", 0o644)
			},
			wantErr: "source conf/10-azure-bridge.conflist is corrupt",
		},
		{
			name: "listed file missing from the image",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				os.Remove(filepath.Join(s.dir, "bin/loopback"))
			},
			wantErr: "source bin/loopback",
		},
		{
			name: "no manifest",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				os.Remove(filepath.Join(s.dir, SumsFile))
			},
			wantErr: "checksum manifest",
		},
		{
			name: "malformed manifest",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				mkfile(t, filepath.Join(s.dir, SumsFile), "abc  bin/azure-vnet\n", 0o644)
			},
			wantErr: "is not \"<sha256>  <relative path>\"",
		},
		{
			name: "manifest path escaping the source",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				mkfile(t, filepath.Join(s.dir, SumsFile), strings.Repeat("a", 64)+"  ../etc/shadow\n", 0o644)
			},
			wantErr: "is not \"<sha256>  <relative path>\"",
		},
		{
			name: "conflist not in the image",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				o.Conflist = "10-calico.conflist"
			},
			wantErr: `conflist "10-calico.conflist" is not in the image (it has 10-azure-bridge.conflist, 10-azure.conflist)`,
		},
		{
			name: "bin dir is a file",
			prepare: func(t *testing.T, s *source, h host, o *Options) {
				mkfile(t, h.bin, "not a dir", 0o644)
			},
			wantErr: "target directory",
			check: func(t *testing.T, s *source, h host, res Result) {
				if n := listDir(t, h.conf); len(n) != 0 {
					t.Errorf("conf dir written although the bin dir is unusable: %v", n)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, h := newSource(t), newHost(t)
			o := opts(s, h)
			if tc.prepare != nil {
				tc.prepare(t, s, h, &o)
			}
			before := stamps(t, h)
			var log bytes.Buffer
			o.Log = &log
			res, err := Run(o)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Run: %v", err)
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "nothing installed") {
					t.Fatalf("Run: %v, want an error with %q and \"nothing installed\"", err, tc.wantErr)
				}
				if after := stamps(t, h); !equalStamps(before, after) {
					t.Errorf("a failed install changed the host: before %v after %v", before, after)
				}
			}
			if tc.check != nil {
				tc.check(t, s, h, res)
			}
			for _, dir := range []string{h.bin, h.conf} {
				for _, n := range listDir(t, dir) {
					if strings.HasPrefix(n, tempPrefix) {
						t.Errorf("temporary %s left in %s", n, dir)
					}
				}
			}
			if tc.wantErr != "" {
				return
			}
			// Idempotent: a second run changes nothing.
			first := stamps(t, h)
			res2, err := Run(o)
			if err != nil {
				t.Fatalf("second Run: %v", err)
			}
			if second := stamps(t, h); !equalStamps(first, second) {
				t.Errorf("second run changed files:\nbefore %v\nafter  %v", first, second)
			}
			for p, a := range res2 {
				if a != Unchanged && a != Kept {
					t.Errorf("second run: %s %s, want unchanged", p, a)
				}
			}
		})
	}
}

func TestReplaceChangesInode(t *testing.T) {
	// An updated plugin is a new file renamed into place, never the old
	// inode rewritten while a runtime may be executing it.
	s, h := newSource(t), newHost(t)
	if _, err := Run(opts(s, h)); err != nil {
		t.Fatal(err)
	}
	old := stamps(t, h)[filepath.Join(h.bin, "azure-vnet")]
	s.files["bin/azure-vnet"] = []byte("azure-vnet v2")
	s.write(t)
	res, err := Run(opts(s, h))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(h.bin, "azure-vnet")
	if res[p] != Installed || stamps(t, h)[p].ino == old.ino {
		t.Errorf("azure-vnet %s with inode %d (was %d): want a new inode", res[p], stamps(t, h)[p].ino, old.ino)
	}
	checkFile(t, p, 0o755, []byte("azure-vnet v2"))
}

func equalStamps(a, b map[string]stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mkfile(t *testing.T, p, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}
