//go:build !windows

package localsock

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkOwner refuses a directory another user owns: that user could swap
// the socket for one of its own.
func checkOwner(dir string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("local socket directory %s belongs to uid %d, not to this process (uid %d)", dir, st.Uid, os.Geteuid())
	}
	return nil
}

// restrict makes dir reachable by its owner only.
func restrict(dir string) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("local socket directory %s: %w", dir, err)
	}
	return nil
}
