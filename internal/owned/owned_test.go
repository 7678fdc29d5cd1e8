//go:build linux

package owned_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
)

// The test binary doubles as a harness: with ACN_OWNED_HELPER set it
// creates a namespace with two processes inside (one recorded, one not),
// a recorded process outside it and a directory, prints their names, and
// then runs until interrupted (under owned.Main) or killed.
func TestMain(m *testing.M) {
	switch os.Getenv("ACN_OWNED_HELPER") {
	case "":
		os.Exit(m.Run())
	case "main":
		owned.Main(func(ctx context.Context) error {
			made := helperCreate()
			for ctx.Err() == nil { // a write every 20 ms: a closed stdout is noticed
				fmt.Println(made)
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		})
	case "stubborn": // ignores the interruption: Main's grace period ends it
		owned.Grace = time.Second
		owned.Main(func(ctx context.Context) error {
			fmt.Println(helperCreate())
			select {}
		})
	case "burst": // creates namespaces from 4 goroutines until interrupted
		owned.Main(func(ctx context.Context) error {
			tag := os.Getenv("ACN_OWNED_TAG")
			errs := make(chan error, 4)
			for g := 0; g < 4; g++ {
				go func() {
					for ctx.Err() == nil {
						if _, err := netnstest.Create(tag); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			fmt.Println("{}")
			<-ctx.Done()
			for g := 0; g < 4; g++ {
				<-errs
			}
			return nil
		})
	case "plain":
		fmt.Println(helperCreate())
		select {}
	}
}

// made is what one helper run created.
type made struct {
	Netns string `json:"netns"`
	Dir   string `json:"dir"`
	PIDs  []int  `json:"pids"` // inside the namespace (recorded, unrecorded), outside (recorded)
}

func (m made) String() string { b, _ := json.Marshal(m); return string(b) }

func helperCreate() made {
	fail := func(err error) { fmt.Fprintln(os.Stderr, "helper:", err); os.Exit(3) }
	ns, err := netnstest.Create("owned-test")
	if err != nil {
		fail(err)
	}
	dir, err := owned.MkdirTemp("", "acn-owned-test-")
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(dir+"/file", []byte("x"), 0o644); err != nil {
		fail(err)
	}
	m := made{Netns: ns.Name, Dir: dir}
	for _, c := range []struct {
		cmd      *exec.Cmd
		recorded bool
	}{
		{exec.Command("ip", "netns", "exec", ns.Name, "sleep", "300"), true},
		{exec.Command("ip", "netns", "exec", ns.Name, "sleep", "301"), false},
		{exec.Command("sleep", "302"), true},
	} {
		start := c.cmd.Start
		if c.recorded {
			start = func() error { return owned.Start(c.cmd) }
		}
		if err := start(); err != nil {
			fail(err)
		}
		m.PIDs = append(m.PIDs, c.cmd.Process.Pid)
	}
	return m
}

// helper starts the test binary as a helper in its own process group and
// returns it with what it made (its first line of output).
func helper(t *testing.T, mode, ownersDir string, env ...string) (*exec.Cmd, io.ReadCloser, made) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "ACN_OWNED_HELPER="+mode, "ACN_OWNERS_DIR="+ownersDir), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper printed nothing: %v", err)
	}
	var m made
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("helper: %q: %v", line, err)
	}
	if mode == "burst" {
		return cmd, out, m
	}
	if len(m.PIDs) != 3 {
		t.Fatalf("helper: %+v", m)
	}
	return cmd, out, m
}

// assertPresent / assertGone check the namespace (its file and its bind
// mount), the directory and every process of one helper run.
func assertPresent(t *testing.T, m made) {
	t.Helper()
	if _, err := os.Stat("/run/netns/" + m.Netns); err != nil {
		t.Errorf("namespace %s missing: %v", m.Netns, err)
	}
	if _, err := os.Stat(m.Dir); err != nil {
		t.Errorf("dir %s missing: %v", m.Dir, err)
	}
	for _, pid := range m.PIDs {
		if syscall.Kill(pid, 0) != nil {
			t.Errorf("process %d missing", pid)
		}
	}
}

func assertGone(t *testing.T, m made, ownersDir string) {
	t.Helper()
	if _, err := os.Stat("/run/netns/" + m.Netns); err == nil {
		t.Errorf("namespace %s left behind", m.Netns)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), "/run/netns/"+m.Netns+" ") {
		t.Errorf("mount of %s left behind", m.Netns)
	}
	if _, err := os.Stat(m.Dir); err == nil {
		t.Errorf("dir %s left behind", m.Dir)
	}
	for _, pid := range m.PIDs {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(st), ") Z ") {
			t.Errorf("process %d left behind: %s", pid, st)
		}
	}
	if ents, _ := os.ReadDir(ownersDir); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("markers left: %v", names)
	}
}

// TestSweepRemovesOnlyDeadOwners: a live run's namespace, processes and
// directory survive a sweep; once the run is killed (SIGKILL: no cleanup
// of its own), the next sweep removes them all.
func TestSweepRemovesOnlyDeadOwners(t *testing.T) {
	netnstest.RequireRoot(t)
	dir := t.TempDir()
	cmd, _, m := helper(t, "plain", dir)
	saved := owned.Dir
	owned.Dir = dir
	defer func() { owned.Dir = saved }()
	if removed, err := owned.Sweep(); err != nil || len(removed) != 0 {
		t.Fatalf("sweep with the owner alive removed %v (%v)", removed, err)
	}
	assertPresent(t, m)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	assertPresent(t, m) // killed: nothing cleaned up by itself
	removed, err := owned.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("swept %d resources of the dead run", len(removed))
	assertGone(t, m, dir)
}

// TestInterruptedRunLeavesNothing: a harness under owned.Main interrupted
// by SIGINT (to it), SIGTERM (to its whole process group, as timeout(1)
// sends it) or a closed stdout exits with 128+signal and leaves no
// namespace, mount, process, directory or marker behind — also when it
// does not stop by itself (Main then cleans up after its grace period).
func TestInterruptedRunLeavesNothing(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, c := range []struct {
		name      string
		interrupt func(cmd *exec.Cmd, stdout io.ReadCloser)
		code      int
	}{
		{"SIGINT", func(cmd *exec.Cmd, _ io.ReadCloser) { _ = cmd.Process.Signal(syscall.SIGINT) }, 128 + int(syscall.SIGINT)},
		{"SIGTERM to the group", func(cmd *exec.Cmd, _ io.ReadCloser) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }, 128 + int(syscall.SIGTERM)},
		{"stdout closed", func(_ *exec.Cmd, stdout io.ReadCloser) { _ = stdout.Close() }, 128 + int(syscall.SIGPIPE)},
		{"SIGTERM, run ignores it", func(cmd *exec.Cmd, _ io.ReadCloser) { _ = cmd.Process.Signal(syscall.SIGTERM) }, 128 + int(syscall.SIGTERM)},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			mode := "main"
			if strings.Contains(c.name, "ignores") {
				mode = "stubborn"
			}
			cmd, stdout, m := helper(t, mode, dir)
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			assertPresent(t, m)
			c.interrupt(cmd, stdout)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("helper still running 60 s after the interruption")
			}
			if code := cmd.ProcessState.ExitCode(); code != c.code {
				t.Errorf("exit code %d, want %d (%v)", code, c.code, cmd.ProcessState)
			}
			assertGone(t, m, dir)
		})
	}
}

// TestInterruptedWhileCreatingLeavesNothing: SIGTERM to the process group
// of a run that is creating namespaces from several goroutines (its `ip
// netns add` children are in the middle of their work) leaves none of
// them: each attempt, repeated to hit the race.
func TestInterruptedWhileCreatingLeavesNothing(t *testing.T) {
	netnstest.RequireRoot(t)
	for i := 0; i < 5; i++ {
		dir := t.TempDir()
		tag := fmt.Sprintf("ob%d%d", os.Getpid()%100000, i)
		cmd, stdout, _ := helper(t, "burst", dir, "ACN_OWNED_TAG="+tag)
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		time.Sleep(time.Duration(100+60*i) * time.Millisecond)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 128+int(syscall.SIGTERM) {
			t.Fatalf("attempt %d: exit %v", i, err)
		}
		ents, _ := os.ReadDir("/run/netns")
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), netnstest.Prefix+tag+"-") {
				t.Errorf("attempt %d: namespace %s left behind", i, e.Name())
			}
		}
		if ms, _ := os.ReadDir(dir); len(ms) != 0 {
			t.Errorf("attempt %d: %d markers left", i, len(ms))
		}
	}
}
