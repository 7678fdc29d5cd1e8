// Package config is azure-npm's configuration: defaults, a JSON or YAML
// file merged onto them, flag overrides, and validation with one clear
// error per mistake.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/open-acn/acn/cni/hns"
	"github.com/open-acn/acn/logs"
)

// Dataplanes azure-npm can program.
const (
	DataplaneIPTables = "iptables"
	DataplaneNFTables = "nftables"
	DataplaneHNS      = "hns"
)

// Config is everything azure-npm start reads. Field names are the keys of
// the config file (deploy/npm's ConfigMap); README.md lists the defaults.
// No key is omitted when a Config is written: a zero value may be valid
// and differ from the default (batchWindow: 0, metricsAddr: ""), and must
// read back as itself.
type Config struct {
	// Kubeconfig file; empty = in-cluster configuration.
	Kubeconfig string `json:"kubeconfig"`
	// NodeName is this node's name; default $NODE_NAME, else $HOSTNAME.
	NodeName string `json:"nodeName"`
	// Dataplane is iptables (Linux default), nftables, or hns (Windows default).
	Dataplane string `json:"dataplane"`
	// IPTablesBackend is auto (detect like kube-proxy), nft or legacy.
	IPTablesBackend string `json:"iptablesBackend"`
	// MetricsAddr is the network listener: /healthz, /readyz and /metrics
	// only, nothing that names a pod, namespace or policy.
	MetricsAddr string `json:"metricsAddr"`
	// SocketPath is the local unix socket (root only) serving /status,
	// /explain and /debug/pprof: what reveals the cluster's contents or
	// costs work is never served on the network.
	SocketPath string `json:"socketPath"`
	// EnablePprof exposes /debug/pprof on SocketPath.
	EnablePprof bool `json:"enablePprof"`
	// ReconcileInterval is how often kernel state is read back and drift repaired.
	ReconcileInterval Duration `json:"reconcileInterval"`
	// BatchWindow bounds how long events are coalesced into one kernel
	// transaction: an event that finds nothing else queued is applied at
	// once, the window grows up to BatchWindow only while events queue up
	// (daemon/batching.go).
	BatchWindow Duration `json:"batchWindow"`
	// ResyncPeriod of the informers; 0 disables periodic resync.
	ResyncPeriod Duration `json:"resyncPeriod"`
	// MaxHNSACLsPerCall bounds one HNS call on Windows.
	MaxHNSACLsPerCall int `json:"maxHNSACLsPerCall"`
	// HNSNetwork is the HNS network whose endpoints are pods (Windows).
	HNSNetwork string `json:"hnsNetwork"`
	// HNSHostIPs are the node addresses whose traffic (health probes)
	// isolated pods still accept; empty = the host's interface addresses.
	HNSHostIPs []string `json:"hnsHostIPs"`
	// HNSSCTP enforces SCTP ports through HNS (protocol 132) where the HNS
	// version supports it; off, SCTP port rules fail closed.
	HNSSCTP bool `json:"hnsSCTP"`
	// Log is where rule changes and events are logged.
	Log LogConfig `json:"log"`
	// FlowLog is the per-connection flow log (Linux dataplanes).
	FlowLog FlowLogConfig `json:"flowLog"`
}

// FlowLogConfig configures flow logs: which namespaces log which verdicts
// by default (the namespace annotation npm.open-acn.io/flow-log
// overrides it), the kernel's NFLOG group and per-node rate limit, and the
// file the daemon writes one JSON line per connection attempt to.
type FlowLogConfig struct {
	// Default is none, deny or all: the mode of a namespace without the
	// annotation.
	Default string `json:"default"`
	// RatePerSecond and Burst bound the log messages the kernel sends per
	// second (per node and address family); what the limit drops is counted
	// (npm_flow_log_dropped_total), and the verdict never depends on it.
	RatePerSecond int `json:"ratePerSecond"`
	Burst         int `json:"burst"`
	// NFLOGGroup is the netlink log group the kernel sends to and the
	// daemon reads; no other program on the node may bind it.
	NFLOGGroup int `json:"nflogGroup"`
	// File is the flow log (rotated by size like the main log).
	File       string `json:"file"`
	MaxSizeMB  int    `json:"maxSizeMB"`
	MaxBackups int    `json:"maxBackups"`
	// DedupWindow: identical attempts (same pods, port, verdict and rule)
	// within it are one line with a count.
	DedupWindow Duration `json:"dedupWindow"`
}

// LogConfig mirrors logs.Config with file-friendly keys.
type LogConfig struct {
	File       string `json:"file"`
	Level      string `json:"level"`
	Format     string `json:"format"`
	MaxSizeMB  int    `json:"maxSizeMB"`
	MaxBackups int    `json:"maxBackups"`
}

// Logs converts to the logs package's configuration.
func (l LogConfig) Logs() logs.Config {
	return logs.Config{File: l.File, Level: l.Level, Format: l.Format, MaxSizeMB: l.MaxSizeMB, MaxBackups: l.MaxBackups}
}

// Default is the configuration with no file and no flags.
func Default() Config {
	dp := DataplaneIPTables
	if runtime.GOOS == "windows" {
		dp = DataplaneHNS
	}
	return Config{
		Dataplane:         dp,
		IPTablesBackend:   "auto",
		MetricsAddr:       ":10091",
		SocketPath:        DefaultSocketPath(),
		ReconcileInterval: Duration(60 * time.Second),
		BatchWindow:       Duration(20 * time.Millisecond),
		ResyncPeriod:      0,
		MaxHNSACLsPerCall: 100,
		HNSNetwork:        hns.NetworkName,
		HNSHostIPs:        []string{},
		Log: LogConfig{
			File:       logs.DefaultNPMFile,
			Level:      logs.LevelInfo,
			Format:     logs.FormatJSON,
			MaxSizeMB:  100,
			MaxBackups: 5,
		},
		FlowLog: FlowLogConfig{
			Default:       "none",
			RatePerSecond: 100,
			Burst:         200,
			NFLOGGroup:    100,
			File:          DefaultFlowLogFile,
			MaxSizeMB:     100,
			MaxBackups:    5,
			DedupWindow:   Duration(5 * time.Second),
		},
	}
}

// DefaultFlowLogFile is the flow log's default path.
const DefaultFlowLogFile = "/var/log/azure-npm-flows.log"

// Load returns Default() with the file at path (JSON or YAML) merged onto
// it: a key missing from the file keeps its default. Unknown keys are an
// error, so a typo is not silently ignored.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config file: %w", err)
	}
	if err := Merge(&cfg, data); err != nil {
		return cfg, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, nil
}

// Merge decodes data (JSON or YAML) onto cfg.
func Merge(cfg *Config, data []byte) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(js)) == "null" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.DisallowUnknownFields()
	return dec.Decode(cfg)
}

// ResolveNodeName fills NodeName from $NODE_NAME, else $HOSTNAME.
func (c *Config) ResolveNodeName() {
	if c.NodeName != "" {
		return
	}
	if n := os.Getenv("NODE_NAME"); n != "" {
		c.NodeName = n
		return
	}
	if n := os.Getenv("HOSTNAME"); n != "" {
		c.NodeName = n
		return
	}
	c.NodeName, _ = os.Hostname()
}

// Validate reports every mistake, one per line.
func (c Config) Validate() error {
	var errs []error
	switch c.Dataplane {
	case DataplaneIPTables, DataplaneNFTables:
		if runtime.GOOS == "windows" {
			errs = append(errs, fmt.Errorf("dataplane %q is Linux only; Windows uses %q", c.Dataplane, DataplaneHNS))
		}
	case DataplaneHNS:
		if runtime.GOOS != "windows" {
			errs = append(errs, fmt.Errorf("dataplane %q is Windows only", c.Dataplane))
		}
	default:
		errs = append(errs, fmt.Errorf("dataplane %q: want %q or %q (Linux) or %q (Windows)", c.Dataplane, DataplaneIPTables, DataplaneNFTables, DataplaneHNS))
	}
	switch c.IPTablesBackend {
	case "auto", "nft", "legacy":
	default:
		errs = append(errs, fmt.Errorf("iptablesBackend %q: want auto, nft or legacy", c.IPTablesBackend))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("metricsAddr %q: want HOST:PORT (e.g. :10091)", c.MetricsAddr))
		}
	}
	if err := validateSocketPath(c.SocketPath); err != nil {
		errs = append(errs, err)
	}
	if c.ReconcileInterval.D() < time.Second {
		errs = append(errs, fmt.Errorf("reconcileInterval %s: must be at least 1s", c.ReconcileInterval.D()))
	}
	if c.BatchWindow.D() < 0 || c.BatchWindow.D() > 10*time.Second {
		errs = append(errs, fmt.Errorf("batchWindow %s: must be between 0 and 10s", c.BatchWindow.D()))
	}
	if c.ResyncPeriod.D() < 0 {
		errs = append(errs, fmt.Errorf("resyncPeriod %s: must not be negative", c.ResyncPeriod.D()))
	}
	if c.MaxHNSACLsPerCall < 1 {
		errs = append(errs, fmt.Errorf("maxHNSACLsPerCall %d: must be at least 1", c.MaxHNSACLsPerCall))
	}
	if c.HNSNetwork == "" {
		errs = append(errs, errors.New("hnsNetwork must not be empty"))
	}
	for _, ip := range c.HNSHostIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, fmt.Errorf("hnsHostIPs: %q is not an IP address", ip))
		}
	}
	if err := c.Log.Logs().Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.FlowLog.validate(c.Dataplane)...)
	return errors.Join(errs...)
}

// maxSocketPath is the longest path a unix socket address holds
// (sun_path is 108 bytes on Linux and Windows, with a terminating NUL).
const maxSocketPath = 107

// DefaultSocketPath is where the agent's local socket lives: a directory
// of its own under /run on Linux (the image has /run, not /var/run), under
// ProgramData on Windows (a HostProcess container sees the host's file
// system).
func DefaultSocketPath() string {
	if runtime.GOOS == "windows" {
		return `C:\ProgramData\azure-npm\npm.sock`
	}
	return "/run/azure-npm/npm.sock"
}

func validateSocketPath(p string) error {
	switch {
	case p == "":
		return errors.New("socketPath must not be empty: /status and /explain are served only there")
	case !filepath.IsAbs(p):
		return fmt.Errorf("socketPath %q: want an absolute path (e.g. %s)", p, DefaultSocketPath())
	case len(p) > maxSocketPath:
		return fmt.Errorf("socketPath %q: %d bytes, a unix socket path holds at most %d", p, len(p), maxSocketPath)
	}
	return nil
}

// Duration is a time.Duration written as "60s" in config files.
type Duration time.Duration

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes "60s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "60s" (or a number of seconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("duration %s: want a string like \"60s\"", string(b))
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v", s, err)
	}
	*d = Duration(v)
	return nil
}

// Bounds of the flow-log settings: the kernel's limit match takes a rate
// up to 10,000/s here (beyond that a log line per connection is not a log
// but a firehose) and NFLOG groups are 16 bits.
const (
	maxFlowLogRate  = 10000
	maxFlowLogBurst = 100000
)

func (f FlowLogConfig) validate(dataplane string) []error {
	var errs []error
	switch f.Default {
	case "none", "deny", "all":
	default:
		errs = append(errs, fmt.Errorf("flowLog.default %q: want none, deny or all", f.Default))
	}
	if f.Default != "none" && dataplane == DataplaneHNS {
		errs = append(errs, fmt.Errorf("flowLog.default %q: flow logs need a Linux dataplane (iptables or nftables), not %q", f.Default, dataplane))
	}
	if f.RatePerSecond < 1 || f.RatePerSecond > maxFlowLogRate {
		errs = append(errs, fmt.Errorf("flowLog.ratePerSecond %d: must be between 1 and %d", f.RatePerSecond, maxFlowLogRate))
	}
	if f.Burst < 1 || f.Burst > maxFlowLogBurst {
		errs = append(errs, fmt.Errorf("flowLog.burst %d: must be between 1 and %d", f.Burst, maxFlowLogBurst))
	}
	if f.NFLOGGroup < 0 || f.NFLOGGroup > 65535 {
		errs = append(errs, fmt.Errorf("flowLog.nflogGroup %d: must be between 0 and 65535", f.NFLOGGroup))
	}
	switch {
	case dataplane == DataplaneHNS:
		// no flow logs on Windows: the file is never opened
	case f.File == "":
		errs = append(errs, errors.New("flowLog.file must not be empty"))
	case f.File != "stderr" && !strings.HasPrefix(f.File, "/"):
		errs = append(errs, fmt.Errorf("flowLog.file %q: want an absolute path (e.g. %s)", f.File, DefaultFlowLogFile))
	}
	if f.MaxSizeMB < 1 {
		errs = append(errs, fmt.Errorf("flowLog.maxSizeMB %d: must be at least 1", f.MaxSizeMB))
	}
	if f.MaxBackups < 0 {
		errs = append(errs, fmt.Errorf("flowLog.maxBackups %d: must not be negative", f.MaxBackups))
	}
	if f.DedupWindow.D() < 0 || f.DedupWindow.D() > time.Minute {
		errs = append(errs, fmt.Errorf("flowLog.dedupWindow %s: must be between 0 and 1m", f.DedupWindow.D()))
	}
	return errs
}
