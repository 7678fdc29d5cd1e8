//go:build linux

// Package interrupt interrupts the long-running targets (make e2e, make
// demo, make bench, and a go test of the simulated cluster) in the middle
// of their run — SIGINT to the process group as Ctrl-C sends it, SIGTERM to
// the group as timeout(1) sends it, or the reader of their output going
// away — and checks that nothing of that run remains: no network
// namespace (nor its mount), process, temp dir or owner marker
// (internal/owned). Slow (minutes per case): `make interrupt-test` runs
// it; `go test ./internal/owned` has the quick version.
package interrupt

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/open-acn/acn/internal/kubetest"
	"github.com/open-acn/acn/internal/netnstest"
	"github.com/open-acn/acn/internal/owned"
)

type target struct {
	name string
	argv []string
	env  []string
}

var targets = []target{
	{"make e2e", []string{"make", "--no-print-directory", "e2e", "E2E_DATAPLANES=iptables"}, nil},
	{"make demo", []string{"make", "--no-print-directory", "demo"}, []string{"KEEP=1"}},
	{"make bench", []string{"make", "--no-print-directory", "bench"}, nil},
	{"go test cluster", []string{"go", "test", "-count=1", "-v", "-run", "TestConformanceSubset", "./test/e2e"}, nil},
}

type interruption struct {
	name string
	do   func(pgid int, out io.Closer)
}

var interruptions = []interruption{
	{"SIGINT", func(pgid int, _ io.Closer) { _ = syscall.Kill(-pgid, syscall.SIGINT) }},
	{"SIGTERM to the group", func(pgid int, _ io.Closer) { _ = syscall.Kill(-pgid, syscall.SIGTERM) }},
	{"output closed", func(_ int, out io.Closer) { _ = out.Close() }},
}

func TestInterruptedTargetsLeaveNothing(t *testing.T) {
	if os.Getenv("ACN_INTERRUPT_TESTS") == "" {
		t.Skip("slow (minutes per case): run with `make interrupt-test` (ACN_INTERRUPT_TESTS=1)")
	}
	netnstest.RequireRoot(t)
	root := kubetest.ModuleRoot()
	for _, tg := range targets {
		for _, in := range interruptions {
			t.Run(tg.name+"/"+in.name, func(t *testing.T) { interrupt(t, root, tg, in) })
		}
	}
}

// interrupt runs one target in its own process group, waits until it is
// mid-run (it owns at least minNetns namespaces, plus a moment), interrupts
// it, waits until every process of the group has exited, and checks that
// everything the run had recorded is gone.
func interrupt(t *testing.T, root string, tg target, in interruption) {
	const minNetns = 6
	cmd := exec.Command(tg.argv[0], tg.argv[1:]...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), tg.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	var tail lastLines
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			tail.add(sc.Text())
		}
	}()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	seen := map[owned.Marker]bool{}
	owners := map[owned.Owner]bool{}
	record := func() (netns int) {
		ms, _ := owned.Markers()
		for _, m := range ms {
			if owned.ProcessGroup(m.Owner.PID) == pgid {
				owners[m.Owner] = true
			}
			if owners[m.Owner] {
				seen[m] = true
			}
		}
		for m := range seen {
			if m.Kind == owned.Netns {
				netns++
			}
		}
		return netns
	}
	deadline := time.Now().Add(10 * time.Minute)
	for record() < minNetns {
		select {
		case <-exited:
			t.Fatalf("%s exited before it was mid-run:\n%s", tg.name, tail.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d namespaces after 10 minutes:\n%s", tg.name, minNetns, tail.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	record()
	t.Logf("interrupting %s (%s) with %d resources recorded by %d owners", tg.name, in.name, len(seen), len(owners))
	in.do(pgid, r)
	for end := time.Now().Add(5 * time.Minute); groupAlive(pgid); time.Sleep(200 * time.Millisecond) {
		record()
		if time.Now().After(end) {
			t.Fatalf("processes of the run still alive 5 minutes after the interruption:\n%s", tail.String())
		}
	}
	<-exited
	var left []string
	for m := range seen {
		if what := stillThere(m); what != "" {
			left = append(left, what)
		}
	}
	ms, _ := owned.Markers()
	for _, m := range ms {
		if owners[m.Owner] {
			left = append(left, fmt.Sprintf("marker %s %s", m.Kind, m.Name))
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind after %s:\n  %s\noutput:\n%s", in.name, strings.Join(left, "\n  "), tail.String())
	}
	t.Logf("%s: exit %v; %d namespaces, dirs and processes of the run, none left", in.name, cmd.ProcessState, len(seen))
}

// stillThere describes what remains of a recorded resource ("" = nothing).
func stillThere(m owned.Marker) string {
	switch m.Kind {
	case owned.Netns:
		if _, err := os.Stat("/run/netns/" + m.Name); err == nil {
			return "namespace " + m.Name
		}
		if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), "/run/netns/"+m.Name+" ") {
			return "mount /run/netns/" + m.Name
		}
	case owned.Path:
		if _, err := os.Stat(m.Name); err == nil {
			return "dir " + m.Name
		}
	case owned.Proc:
		pid, _ := strconv.Atoi(m.Name)
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			s := string(data)
			f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
			if len(f) > 19 && f[0] != "Z" && f[19] == strconv.FormatUint(m.ProcStart, 10) {
				return "process " + m.Name
			}
		}
	}
	return ""
}

// groupAlive reports whether any non-zombie process is in process group pgid.
func groupAlive(pgid int) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) && pid > 0 {
			return true
		}
	}
	return false
}

// lastLines keeps the last 40 lines of output for failure messages.
type lastLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *lastLines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
	if len(l.lines) > 40 {
		l.lines = l.lines[1:]
	}
}

func (l *lastLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
