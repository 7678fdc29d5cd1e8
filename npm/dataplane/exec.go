package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/open-acn/acn/internal/withnetns"
)

// Runner runs a tool (ipset, iptables-restore, ...) with stdin and returns
// its stdout. Dataplanes exec every kernel tool through a Runner so tests
// and benchmarks can run them inside a network namespace.
type Runner interface {
	Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)
}

// Exec is the Runner that executes the tools. With Netns set (a path such
// as /run/netns/NAME) the child process is started from an OS thread
// switched into that network namespace, so it inherits it; the calling
// process's own namespace is never changed.
type Exec struct {
	Netns string
}

// Run implements Runner.
func (e Exec) Run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := StartIn(e.Netns, cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// StartIn starts cmd in the network namespace at netns ("": the caller's):
// from an OS thread switched into it, so the child inherits it while the
// calling process's own namespace is never changed.
func StartIn(netns string, cmd *exec.Cmd) error {
	if netns == "" {
		return cmd.Start()
	}
	return withnetns.Do(netns, cmd.Start)
}
