// Package failpoint is fault injection for the CNI plugins' crash tests:
// at a named step the plugin kills itself with SIGKILL, fails the step or
// stalls, as the environment of the run asks.
//
// It is compiled in only with the build tag `failpoints` (as etcd's gofail
// does): the tests build the plugins with it (cni/cnitest.BuildPlugins); a
// release build (`make azure-vnet azure-vnet-ipam`) gets the no-op FromEnv
// of off.go, so a shipped binary neither reads these variables nor contains
// their names.
package failpoint

// Environment variables read by a binary built with the failpoints tag.
// Each names one step (e.g. "add:veth", see plugin.AddSteps).
const (
	// EnvCrashAt kills the process with SIGKILL at the step, as a node
	// crash or an OOM kill would.
	EnvCrashAt = "ACN_CNI_CRASH_AT"
	// EnvFailAt makes the step return an error (the rollback paths).
	EnvFailAt = "ACN_CNI_FAIL_AT"
	// EnvStallAt pauses StallFor at the step (to show what is locked meanwhile).
	EnvStallAt = "ACN_CNI_STALL_AT"
)

// Hook is called at every step; a non-nil error fails the step.
type Hook = func(step string) error
