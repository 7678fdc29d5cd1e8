// Package withnetns runs a function on an OS thread switched into another
// network namespace, for what must start there (a child process that
// inherits it, a socket bound there) without changing the namespace of
// the rest of the process.
package withnetns

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs f on a locked OS thread switched into the namespace at path
// (such as /run/netns/NAME) and switches back afterwards. Goroutines f
// starts do not inherit the namespace; a child process f starts does.
func Do(path string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return err
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// The thread is in the wrong namespace: never hand it back
			// to the runtime.
			panic(fmt.Sprintf("withnetns: cannot return to the original netns: %v", err))
		}
	}()
	return f()
}
