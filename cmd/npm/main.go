// Command azure-npm is the NetworkPolicy node agent.
//
//	azure-npm start [--kubeconfig FILE] [--node-name NAME] [--config FILE]
//	                [--dataplane iptables|nftables] [--log-file PATH]
//	                [--log-level info|debug] [--metrics-addr HOST:PORT] [--socket PATH]
//	azure-npm explain --from NS/POD|IP --to NS/POD|IP --port PORT[/PROTO] [--socket PATH]
//	azure-npm status [--object KIND/NAMESPACE/NAME] [--socket PATH]
//	azure-npm cleanup [--config FILE] [--dataplane ...]
//	azure-npm version | --version
//
// Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/open-acn/acn/internal/version"
	"github.com/open-acn/acn/logs"
	"github.com/open-acn/acn/npm/config"
	"github.com/open-acn/acn/npm/daemon"
	"github.com/open-acn/acn/npm/explain"
	"github.com/open-acn/acn/npm/flowlog"
	"github.com/open-acn/acn/npm/localsock"
)

const binary = "azure-npm"

// usageError exits with code 2.
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", binary, err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

const usage = `usage: azure-npm <command> [flags]
commands:
  start     run the node agent (see: azure-npm start --help)
  explain   ask the running agent whether traffic is allowed, and why
  status    print what the running agent enforces (one object with --object)
  flows     print the flow log: connections allowed or denied, by policy and rule
  cleanup   remove every kernel object azure-npm created
  version   print the version`

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("no command\n" + usage)}
	}
	switch args[0] {
	case "--version", "-version", "version":
		fmt.Fprintln(out, version.String(binary))
		return nil
	case "-h", "--help", "help":
		fmt.Fprintln(out, usage)
		return nil
	case "start", "cleanup":
		cfg, err := parseStart(args[1:], out)
		if err != nil || cfg == nil {
			return err
		}
		logger, err := logs.New(cfg.Log.Logs())
		if err != nil {
			return usageError{err}
		}
		defer func() { _ = logger.Sync() }()
		if args[0] == "cleanup" {
			return daemon.Cleanup(ctx, *cfg, logger)
		}
		return daemon.Run(ctx, *cfg, logger)
	case "explain":
		req, socket, err := parseExplain(args[1:], out)
		if err != nil || req == nil {
			return err
		}
		return explain.Query(ctx, socket, *req, out)
	case "status":
		return status(ctx, args[1:], out)
	case "flows":
		return flows(ctx, args[1:], out)
	}
	return usageError{fmt.Errorf("unknown command %q\n%s", args[0], usage)}
}

// parseFlags parses args with fs, which must discard its own output. On
// --help it prints the flags to out and reports help; any other parse
// error is a usage error.
func parseFlags(fs *flag.FlagSet, args []string, out io.Writer) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			fs.PrintDefaults()
			return true, nil
		}
		return false, usageError{err}
	}
	return false, nil
}

// parseStart reads --config first, then applies flags over it. A nil
// config with nil error means --help was printed.
func parseStart(args []string, out io.Writer) (*config.Config, error) {
	fs := flag.NewFlagSet("azure-npm start", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	configFile := fs.String("config", "", "config file (JSON or YAML), merged onto the defaults")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file; in-cluster configuration when empty")
	nodeName := fs.String("node-name", "", "this node's name (default $NODE_NAME, else $HOSTNAME)")
	dataplane := fs.String("dataplane", "", "iptables or nftables (Linux), hns (Windows)")
	logFile := fs.String("log-file", "", "log file (default /var/log/azure-npm.log; 'stderr' for none)")
	logLevel := fs.String("log-level", "", "info or debug")
	metricsAddr := fs.String("metrics-addr", "", "network address of /healthz, /readyz and /metrics (default :10091)")
	socket := fs.String("socket", "", "local socket of /status, /explain and /debug/pprof (default "+config.DefaultSocketPath()+")")
	if help, err := parseFlags(fs, args, out); help || err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	cfg, err := config.Load(*configFile)
	if err != nil {
		return nil, usageError{err}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "kubeconfig":
			cfg.Kubeconfig = *kubeconfig
		case "node-name":
			cfg.NodeName = *nodeName
		case "dataplane":
			cfg.Dataplane = *dataplane
		case "log-file":
			cfg.Log.File = *logFile
		case "log-level":
			cfg.Log.Level = *logLevel
		case "metrics-addr":
			cfg.MetricsAddr = *metricsAddr
		case "socket":
			cfg.SocketPath = *socket
		}
	})
	cfg.ResolveNodeName()
	if err := cfg.Validate(); err != nil {
		return nil, usageError{err}
	}
	return &cfg, nil
}

// socketFlag is the --socket flag of the subcommands that ask the agent.
func socketFlag(fs *flag.FlagSet) *string {
	return fs.String("socket", config.DefaultSocketPath(), "the running agent's local socket (its socketPath)")
}

func parseExplain(args []string, out io.Writer) (*explain.Request, string, error) {
	fs := flag.NewFlagSet("azure-npm explain", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	from := fs.String("from", "", "source: NAMESPACE/POD or an IP")
	to := fs.String("to", "", "destination: NAMESPACE/POD or an IP")
	port := fs.String("port", "", "destination port, PORT or PORT/PROTO (tcp, udp, sctp)")
	socket := socketFlag(fs)
	if help, err := parseFlags(fs, args, out); help || err != nil {
		return nil, "", err
	}
	if fs.NArg() > 0 {
		return nil, "", usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	req, err := explain.ParseRequest(*from, *to, *port)
	if err != nil {
		return nil, "", usageError{err}
	}
	return &req, *socket, nil
}

// flows prints the flow log human-readably.
func flows(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("azure-npm flows", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	follow := fs.Bool("follow", false, "wait for new lines, like tail -f")
	fs.BoolVar(follow, "f", false, "shorthand for --follow")
	ns := fs.String("namespace", "", "only connections of this namespace (policy, source or destination pod)")
	verdict := fs.String("verdict", "", "only allow or deny")
	file := fs.String("file", "", "the flow log (default: flowLog.file of --config, else "+config.DefaultFlowLogFile+")")
	cfgPath := fs.String("config", "", "the agent's config file, for flowLog.file")
	if help, err := parseFlags(fs, args, out); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *verdict != "" && *verdict != "allow" && *verdict != "deny" {
		return usageError{fmt.Errorf("--verdict %q: want allow or deny", *verdict)}
	}
	path := *file
	if path == "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return usageError{err}
		}
		path = cfg.FlowLog.File
	}
	return flowlog.Print(ctx, path, flowlog.Filter{Namespace: *ns, Verdict: *verdict}, *follow, out)
}

// status prints the agent's /status (or one object's) as JSON.
func status(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("azure-npm status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	object := fs.String("object", "", "one object: pod/NAMESPACE/NAME, policy/NAMESPACE/NAME, namespace//NAME, clusternetworkpolicy//NAME or node//NAME")
	socket := socketFlag(fs)
	if help, err := parseFlags(fs, args, out); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	target := daemon.StatusPath
	if *object != "" {
		target += "?" + url.Values{"object": {*object}}.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body, err := localsock.Get(ctx, localsock.Client(*socket, 10*time.Second), *socket, target)
	if err != nil {
		return err
	}
	_, err = out.Write(body)
	return err
}
