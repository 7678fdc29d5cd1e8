// Package version holds the build version shared by every binary.
//
// The Makefile stamps Version from `git describe`; a binary built without
// the Makefile (go build, go test) reports DevVersion.
package version

import (
	"fmt"
	"runtime"
)

// DevVersion is reported when the build was not stamped.
const DevVersion = "v0.0.0-dev"

// Version is set with -ldflags "-X github.com/open-acn/acn/internal/version.Version=...".
var Version = DevVersion

// String is the one-line version banner printed by `--version`.
func String(binary string) string {
	return fmt.Sprintf("%s %s (%s, %s/%s)", binary, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
