//go:build failpoints && linux

package failpoint

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// Enabled reports whether this binary was built with fault injection.
const Enabled = true

// StallFor is how long EnvStallAt pauses.
const StallFor = 2 * time.Second

// FromEnv returns the hook the environment asks for (nil when none of the
// variables is set).
func FromEnv() Hook {
	crash, fail, stall := os.Getenv(EnvCrashAt), os.Getenv(EnvFailAt), os.Getenv(EnvStallAt)
	if crash == "" && fail == "" && stall == "" {
		return nil
	}
	return func(step string) error { return inject(step, crash, fail, stall) }
}

func inject(step, crash, fail, stall string) error {
	if step == stall {
		time.Sleep(StallFor)
	}
	if step == crash {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	if step == fail {
		return fmt.Errorf("injected failure at step %s", step)
	}
	return nil
}
