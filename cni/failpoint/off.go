//go:build !failpoints || !linux

package failpoint

// Enabled reports whether this binary was built with fault injection.
const Enabled = false

// FromEnv is nil without the failpoints build tag: a release binary ignores
// the fault-injection variables.
func FromEnv() Hook { return nil }
