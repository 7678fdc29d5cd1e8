package flowlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/open-acn/acn/npm/policy"
)

// Packet is one NFLOG message: the rule ID (prefix) and the first packet
// of the connection it judged.
type Packet struct {
	Time             time.Time
	Prefix           string
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
}

// Record is one line of the flow log (JSON).
type Record struct {
	Time        time.Time `json:"time"`
	Node        string    `json:"node"`
	Verdict     string    `json:"verdict"`   // allow or deny
	Direction   string    `json:"direction"` // ingress or egress, of the pod whose policies decided
	Namespace   string    `json:"namespace,omitempty"`
	Policy      string    `json:"policy"`         // namespace/name; a default deny: the isolating policies, joined by ","
	Rule        *int      `json:"rule,omitempty"` // index of the allow rule; absent for a default deny
	Description string    `json:"description"`    // the rule in words, as `azure-npm explain` says it
	ID          string    `json:"id"`             // the kernel rule ID
	Protocol    string    `json:"protocol"`
	Src         string    `json:"src"`
	SrcPort     uint16    `json:"srcPort,omitempty"`
	SrcPod      string    `json:"srcPod,omitempty"` // namespace/name, when the address is a known pod
	Dst         string    `json:"dst"`
	DstPort     uint16    `json:"dstPort,omitempty"`
	DstPod      string    `json:"dstPod,omitempty"`
	// Count is the attempts this line stands for: 1 for the first
	// attempt; a line with Repeat set counts the identical attempts
	// (same pods, destination port, rule) that followed within the dedup
	// window.
	Count  int  `json:"count"`
	Repeat bool `json:"repeat,omitempty"`
}

// Options configure a Recorder.
type Options struct {
	Node      string
	Group     uint16
	NetNSPath string // the network namespace to read NFLOG in; "" = the current one
	// Out receives the lines; nil opens File with rotation.
	Out                   io.Writer
	File                  string
	MaxSizeMB, MaxBackups int
	Dedup                 time.Duration
	Index                 *Index
	// Pod names the pod holding an address (namespace/name), if known.
	Pod func(netip.Addr) (string, bool)
	// Dropped reads the kernel's count of messages the rate limit
	// suppressed (dataplane.FlowLogCounter); nil: none.
	Dropped    func(context.Context) (uint64, error)
	Logger     *zap.Logger
	Registerer prometheus.Registerer
}

// Recorder reads the NFLOG group and writes the flow log.
type Recorder struct {
	o        Options
	conn     *nflogConn
	out      io.Writer
	closeOut func() error

	verdicts *prometheus.CounterVec
	overruns prometheus.Counter
	unknown  prometheus.Counter

	mu    sync.Mutex
	dedup map[string]*pending

	dropMu   sync.Mutex
	dropLast uint64
	dropSum  uint64

	done    chan struct{}
	closing atomic.Bool
}

type pending struct {
	first  time.Time
	rec    Record
	repeat int
}

// Start binds the NFLOG group (an error names the config key when another
// program holds it), opens the file and starts reading. Bind before the
// dataplane's first transaction, so no message after readiness is lost.
func Start(o Options) (*Recorder, error) {
	c, err := listenNFLOG(o.Group, o.NetNSPath)
	if err != nil {
		return nil, err
	}
	r, err := newRecorder(o)
	if err != nil {
		c.Close()
		return nil, err
	}
	r.conn = c
	go r.loop()
	if r.o.Dedup > 0 {
		go r.flushLoop()
	}
	return r, nil
}

// newRecorder is a Recorder without its socket: output, metrics, dedup.
func newRecorder(o Options) (*Recorder, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Index == nil {
		o.Index = &Index{}
	}
	r := &Recorder{o: o, dedup: map[string]*pending{}, done: make(chan struct{}), closeOut: func() error { return nil }}
	r.out = o.Out
	if r.out == nil {
		if o.File == "stderr" {
			r.out = os.Stderr
		} else {
			lj := &lumberjack.Logger{Filename: o.File, MaxSize: o.MaxSizeMB, MaxBackups: o.MaxBackups}
			r.out, r.closeOut = lj, lj.Close
		}
	}
	r.verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "npm", Name: "flow_verdicts_total",
		Help: "Connection attempts logged by flow logs, per policy (opted-in namespaces only)."}, []string{"namespace", "policy", "direction", "verdict"})
	r.overruns = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "npm", Name: "flow_log_socket_overruns_total",
		Help: "Times the NFLOG socket's buffer overflowed (messages lost between kernel and daemon)."})
	r.unknown = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "npm", Name: "flow_log_unattributed_total",
		Help: "Flow-log messages whose rule ID named no known policy (written with the ID only)."})
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{r.verdicts, r.overruns, r.unknown, droppedCollector{r}} {
			if err := o.Registerer.Register(c); err != nil {
				_ = r.closeOut()
				return nil, err
			}
		}
	}
	return r, nil
}

// Close stops reading, writes the pending repeat counts and closes the file.
func (r *Recorder) Close() error {
	r.closing.Store(true)
	err := r.conn.Close()
	<-r.done
	r.flush(time.Time{})
	return errors.Join(err, r.closeOut())
}

// flushLoop writes repeat counts whose window ended, also while no
// message arrives.
func (r *Recorder) flushLoop() {
	t := time.NewTicker(r.o.Dedup / 2)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case now := <-t.C:
			r.flush(now)
		}
	}
}

func (r *Recorder) loop() {
	defer close(r.done)
	for {
		ps, err := r.conn.receive()
		if errors.Is(err, errOverrun) {
			r.overruns.Inc()
			r.o.Logger.Warn("flow log: NFLOG socket overrun; some connection attempts were not logged")
			continue
		}
		if err != nil {
			if !r.closing.Load() {
				r.o.Logger.Error("flow log: reading the NFLOG group failed; no more flow-log lines until the agent restarts", zap.Error(err))
			}
			return
		}
		for _, p := range ps {
			r.handle(p)
		}
	}
}

func protoName(n uint8) string {
	switch n {
	case 6:
		return string(policy.TCP)
	case 17:
		return string(policy.UDP)
	case 132:
		return string(policy.SCTP)
	}
	return fmt.Sprint(n)
}

// handle turns one message into a line (or a repeat of a recent one).
func (r *Recorder) handle(p Packet) {
	rec := Record{Time: p.Time.UTC(), Node: r.o.Node, ID: p.Prefix, Protocol: protoName(p.Proto),
		Src: p.Src.Unmap().String(), SrcPort: p.SrcPort, Dst: p.Dst.Unmap().String(), DstPort: p.DstPort, Count: 1}
	id, err := ParseID(p.Prefix)
	if err != nil {
		return // not ours (another program's rule logging to our group)
	}
	rec.Verdict, rec.Direction = "deny", id.Direction.String()
	if id.Allow {
		rec.Verdict = "allow"
	}
	if a, ok := r.o.Index.Resolve(p.Prefix); ok {
		rec.Policy, rec.Namespace, rec.Description = a.Policy, a.Namespace, a.Description
		if a.Rule >= 0 {
			rule := a.Rule
			rec.Rule = &rule
		}
	} else {
		r.unknown.Inc()
		rec.Description = "unknown rule (policy changed since)"
	}
	if r.o.Pod != nil {
		rec.SrcPod, _ = r.o.Pod(p.Src.Unmap())
		rec.DstPod, _ = r.o.Pod(p.Dst.Unmap())
	}
	r.verdicts.WithLabelValues(rec.Namespace, rec.Policy, rec.Direction, rec.Verdict).Inc()
	key := fmt.Sprintf("%s|%s|%s|%s|%d", rec.ID, rec.Src, rec.Dst, rec.Protocol, rec.DstPort)
	r.mu.Lock()
	if d := r.dedup[key]; d != nil && r.o.Dedup > 0 && p.Time.Sub(d.first) < r.o.Dedup {
		d.repeat++
		r.mu.Unlock()
		return
	}
	if r.o.Dedup > 0 {
		r.dedup[key] = &pending{first: p.Time, rec: rec}
	}
	r.write(rec)
	r.mu.Unlock()
}

// flush writes the repeat counts of the entries whose window ended
// before now (zero: all).
func (r *Recorder) flush(now time.Time) {
	r.mu.Lock()
	var out []Record
	for k, d := range r.dedup {
		if !now.IsZero() && now.Sub(d.first) < r.o.Dedup {
			continue
		}
		delete(r.dedup, k)
		if d.repeat > 0 {
			rec := d.rec
			rec.Time, rec.Count, rec.Repeat = d.first.Add(r.o.Dedup).UTC(), d.repeat, true
			if !now.IsZero() && now.Before(rec.Time) {
				rec.Time = now.UTC()
			}
			out = append(out, rec)
		}
	}
	for _, rec := range out {
		r.write(rec)
	}
	r.mu.Unlock()
}

func (r *Recorder) write(rec Record) {
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	if _, err := r.out.Write(append(b, '\n')); err != nil {
		r.o.Logger.Warn("flow log: write failed", zap.Error(err))
	}
}

// droppedCollector reads the kernel's suppressed-message counter at scrape
// time: npm_flow_log_dropped_total (a counter across kernel resets).
type droppedCollector struct{ r *Recorder }

var droppedDesc = prometheus.NewDesc("npm_flow_log_dropped_total",
	"Flow-log messages the kernel's rate limit suppressed (the connections were decided as always, not logged).", nil, nil)

func (c droppedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- droppedDesc }

func (c droppedCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(c.r.Dropped()))
}

// Dropped is the total the rate limit suppressed since the daemon
// started reading the kernel's counter (a counter that restarted from
// zero — a replaced table — is added on).
func (r *Recorder) Dropped() uint64 {
	r.dropMu.Lock()
	defer r.dropMu.Unlock()
	if r.o.Dropped == nil {
		return r.dropSum
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := r.o.Dropped(ctx)
	if err != nil {
		r.o.Logger.Warn("flow log: cannot read the rate limit's dropped counter", zap.Error(err))
		return r.dropSum
	}
	if v >= r.dropLast {
		r.dropSum += v - r.dropLast
	} else {
		r.dropSum += v
	}
	r.dropLast = v
	return r.dropSum
}
