//go:build linux

package plugin_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestOneLogLinePerCommand: each command writes one line with the
// container, the timing of each step and the result or the error; and
// logLevel is honoured (at "error", successful commands are not logged).
func TestOneLogLinePerCommand(t *testing.T) {
	n := newNode(t, 4)
	logFile := filepath.Join(n.dir, "azure-vnet.log")
	l := n.list("1.1.0", n.netConf("transparent", nil))
	p := n.newPod("log")
	r := n.mustAdd(l, p)
	n.mustDel(l, p)

	// The harness configures logLevel debug: one debug line per step, then
	// the command's line.
	var lines []map[string]interface{}
	debug := 0
	for _, m := range readLog(t, logFile) {
		if m["level"] == "debug" {
			debug++
			continue
		}
		lines = append(lines, m)
	}
	if debug == 0 {
		t.Error("logLevel debug wrote no step lines")
	}
	if len(lines) != 2 {
		t.Fatalf("want 2 command lines (ADD, DEL), got %d: %v", len(lines), lines)
	}
	add := lines[0]
	if add["msg"] != "ADD" || add["containerID"] != p.id || add["ip"] != r.IPs[0].Address.IP.String() {
		t.Errorf("ADD line lacks command, container or address: %v", add)
	}
	steps, _ := add["steps"].(map[string]interface{})
	for _, s := range []string{"allocate", "netlink", "commit"} {
		if _, ok := steps[s]; !ok {
			t.Errorf("ADD line has no timing for step %q: %v", s, steps)
		}
	}
	if lines[1]["msg"] != "DEL" {
		t.Errorf("second line is not DEL: %v", lines[1])
	}

	// At level "error" only failures are written.
	_ = os.Remove(logFile)
	quiet := n.list("1.1.0", n.netConf("transparent", map[string]interface{}{"logLevel": "error"}))
	q := n.newPod("log-quiet")
	n.mustAdd(quiet, q)
	n.mustDel(quiet, q)
	bad := n.list("1.1.0", n.netConf("transparent", map[string]interface{}{"logLevel": "error", "master": "nosuchif0"}))
	if _, err := n.add(bad, n.newPod("log-bad")); err == nil {
		t.Fatal("ADD with a missing master succeeded")
	}
	lines = readLog(t, logFile)
	if len(lines) != 1 || lines[0]["level"] != "error" || lines[0]["error"] == nil {
		t.Errorf("at level error want exactly the failure logged, got %v", lines)
	}
}

func readLog(t *testing.T, path string) []map[string]interface{} {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]interface{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]interface{}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}
