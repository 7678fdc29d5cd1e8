package imagespec

import (
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Dockerfile renders the image's recipe for docker or buildah: the build
// stage downloads and checks the locked .debs, extracts them with dpkg-deb
// and shapes the tree exactly as Tree does (same keep/exclude, directories,
// content, symlinks, files, modes and checksum file); the image is that tree
// on scratch with the same runtime config. The build context is the
// repository root.
func (im *Image) Dockerfile() []byte {
	s := &im.Spec
	dir := filepath.ToSlash(im.Dir)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	cont := func(line string) { w("    %s; \\\n", line) }

	w("# Generated from %s/%s and %s/%s by\n", dir, SpecFile, dir, LockFile)
	w("# `go run ./hack/imagebuild dockerfile %s`: do not edit.\n", dir)
	w("# `make images` builds the same image without a container daemon. With docker\n")
	w("# or buildah, from the repository root once `make images` has built the binaries:\n")
	w("#   docker build -f %s/%s --build-arg VERSION=$(hack/version.sh) \\\n", dir, DockerfileName)
	w("#     -t %s:$(hack/version.sh) .\n", s.Name)
	w("FROM debian:%s-slim AS build\n", s.Debian)
	w("RUN set -eu; \\\n")
	cont("mkdir -p /debs /pkgroot /rootfs")
	if len(im.Lock) > 0 {
		cont("apt-get update -q")
		cont("cd /debs")
		w("    apt-get download -q \\\n")
		for _, p := range im.Lock {
			w("        %s=%s \\\n", p.Name, p.Version)
		}
		w("        ; \\\n")
		w("    printf '%%s  %%s\\n' \\\n")
		for _, p := range im.Lock {
			w("        %s %s \\\n", p.SHA256, p.FileName())
		}
		w("        | sha256sum -c --quiet; \\\n")
		cont(`for deb in *.deb; do dpkg-deb -x "$deb" /pkgroot; done`)
	}
	cont("cd /pkgroot")
	if len(s.Exclude) > 0 {
		var ex []string
		for _, e := range s.Exclude {
			ex = append(ex, strings.Trim(e, "/"))
		}
		cont("rm -rf " + strings.Join(ex, " "))
	}
	if len(s.Keep) > 0 {
		var keep []string
		for _, k := range s.Keep {
			keep = append(keep, strings.Trim(k, "/"))
		}
		cont("cp -a --parents " + strings.Join(keep, " ") + " /rootfs/")
	} else {
		cont("cp -a . /rootfs/")
	}
	for _, d := range s.Dirs {
		cont(fmt.Sprintf("mkdir -p /rootfs%s && chmod %s /rootfs%s", d.Path, d.Mode, d.Path))
	}
	for _, c := range s.Content {
		cont(fmt.Sprintf("mkdir -p /rootfs%s", path.Dir(c.Dst)))
		lines := strings.Split(strings.TrimSuffix(c.Data, "\n"), "\n")
		var quoted []string
		for _, l := range lines {
			quoted = append(quoted, shellQuote(l))
		}
		cont(fmt.Sprintf("printf '%%s\\n' %s > /rootfs%s && chmod %s /rootfs%s", strings.Join(quoted, " "), c.Dst, c.Mode, c.Dst))
	}
	for _, l := range s.Symlinks {
		cont(fmt.Sprintf("mkdir -p /rootfs%s && ln -sfn %s /rootfs%s", path.Dir(l.Path), shellQuote(l.Target), l.Path))
	}
	w("    rm -rf /debs /pkgroot /var/lib/apt/lists/*\n")
	for _, f := range s.Files {
		w("COPY %s /rootfs%s\n", f.Src, f.Dst)
	}
	var final []string
	for _, f := range s.Files {
		final = append(final, fmt.Sprintf("chmod %s /rootfs%s", f.Mode, f.Dst))
	}
	if c := s.Checksums; c != nil {
		var dirs []string
		for _, d := range c.Dirs {
			dirs = append(dirs, strings.TrimPrefix(strings.TrimPrefix(d, c.Base), "/"))
		}
		final = append(final, fmt.Sprintf("cd /rootfs%s", c.Base),
			fmt.Sprintf("find %s ! -type d | LC_ALL=C sort | xargs sha256sum > /rootfs%s", strings.Join(dirs, " "), c.File),
			fmt.Sprintf("chmod 0644 /rootfs%s", c.File))
	}
	if len(final) > 0 {
		w("RUN set -eu; \\\n")
		for i, l := range final {
			if i == len(final)-1 {
				w("    %s\n", l)
			} else {
				cont(l)
			}
		}
	}

	w("\nFROM scratch\n")
	w("COPY --from=build /rootfs/ /\n")
	for _, e := range s.Env {
		k, v, _ := strings.Cut(e, "=")
		w("ENV %s=%s\n", k, jsonString(v))
	}
	w("ARG VERSION=v0.0.0-dev\n")
	w("LABEL %s=$VERSION", VersionLabel)
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w(" \\\n      %s=%s", k, jsonString(s.Labels[k]))
	}
	w("\n")
	w("USER %s\n", s.User)
	if s.WorkingDir != "" {
		w("WORKDIR %s\n", s.WorkingDir)
	}
	w("ENTRYPOINT %s\n", jsonString(s.Entrypoint))
	if len(s.Cmd) > 0 {
		w("CMD %s\n", jsonString(s.Cmd))
	}
	return []byte(b.String())
}

func jsonString(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}
