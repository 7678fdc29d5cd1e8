package flowlog

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Filter selects lines for `azure-npm flows`.
type Filter struct {
	Namespace string // the deciding policy's namespace, or the source's or destination pod's
	Verdict   string // allow or deny; "" = both
}

func (f Filter) match(r Record) bool {
	if f.Verdict != "" && r.Verdict != f.Verdict {
		return false
	}
	if f.Namespace == "" {
		return true
	}
	ns := func(pod string) string { n, _, _ := strings.Cut(pod, "/"); return n }
	return r.Namespace == f.Namespace || ns(r.SrcPod) == f.Namespace || ns(r.DstPod) == f.Namespace
}

// Format is the human-readable form of a line:
//
//	2026-12-06T19:30:01Z DENY  ingress b/cli 10.0.0.3:40000 -> a/web 10.0.0.2:80/TCP  by a/web: no rule of a/web allows it
func Format(r Record) string {
	ep := func(pod, ip string, port uint16) string {
		s := ip
		if port != 0 {
			s = fmt.Sprintf("%s:%d", ip, port)
			if strings.Contains(ip, ":") {
				s = fmt.Sprintf("[%s]:%d", ip, port)
			}
		}
		if pod != "" {
			return pod + " " + s
		}
		return s
	}
	rule := "default deny"
	if r.Rule != nil {
		rule = fmt.Sprintf("rule %d", *r.Rule)
	}
	s := fmt.Sprintf("%s %-5s %-7s %s -> %s/%s  %s %s: %s", r.Time.Format(time.RFC3339), strings.ToUpper(r.Verdict), r.Direction,
		ep(r.SrcPod, r.Src, r.SrcPort), ep(r.DstPod, r.Dst, r.DstPort), r.Protocol, r.Policy, rule, r.Description)
	if r.Repeat {
		s += fmt.Sprintf("  (%d more such attempts)", r.Count)
	}
	return s
}

// Print writes the lines of the flow log at path that pass f, formatted;
// with follow it then waits for new lines (and follows a rotation) until
// ctx ends, like `tail -F`.
func Print(ctx context.Context, path string, f Filter, follow bool, out io.Writer) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("flow log: %w (is flowLog.file set elsewhere? run this where the agent runs)", err)
	}
	defer func() { file.Close() }()
	rd := bufio.NewReader(file)
	var partial string
	for {
		line, err := rd.ReadString('\n')
		if err == nil {
			line, partial = partial+line, ""
			var r Record
			if json.Unmarshal([]byte(line), &r) == nil && f.match(r) {
				fmt.Fprintln(out, Format(r))
			}
			continue
		}
		if err != io.EOF {
			return err
		}
		partial += line
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
		// Rotated (a new file at path) or truncated: start over at its top.
		st, err1 := os.Stat(path)
		cur, err2 := file.Stat()
		pos, _ := file.Seek(0, io.SeekCurrent)
		if err1 == nil && err2 == nil && (!os.SameFile(st, cur) || st.Size() < pos) {
			nf, err := os.Open(path)
			if err == nil {
				file.Close()
				file, rd, partial = nf, bufio.NewReader(nf), ""
			}
		}
	}
}
