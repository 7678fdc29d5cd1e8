// Command azure-cni-install is the azure-cni image's entry point. The
// DaemonSet's init container runs `azure-cni-install install`, which copies
// the plugins and the conflist from the image onto the node (see
// cni/install); its main container runs `azure-cni-install sleep`, which
// only keeps the pod alive until it is stopped.
//
// Exit codes: 0 done, 1 the install failed (nothing or, when it says so,
// only part written), 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/open-acn/acn/cni/install"
	"github.com/open-acn/acn/internal/version"
)

const binary = "azure-cni-install"

const usage = `usage:
  azure-cni-install install [flags]   copy the plugins and the conflist onto the host
  azure-cni-install sleep             wait for SIGTERM (the DaemonSet's long-running container)
  azure-cni-install --version

Flags of install (each defaults to its environment variable, then the value shown):`

type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "%s: %v\n", binary, err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", binary, err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 {
		args = []string{"install"}
	}
	switch args[0] {
	case "--version", "-version", "version":
		fmt.Fprintln(out, version.String(binary))
		return nil
	case "sleep":
		if len(args) > 1 {
			return usageError{fmt.Errorf("sleep takes no argument")}
		}
		<-ctx.Done()
		return nil
	case "install":
	case "-h", "--help", "help":
		fs := installFlags(new(install.Options), new(bool))
		fmt.Fprintln(out, usage)
		fs.SetOutput(out)
		fs.PrintDefaults()
		return nil
	default:
		return usageError{fmt.Errorf("unknown command %q (want install, sleep or --version)", args[0])}
	}
	if v, ok := os.LookupEnv("CNI_FORCE_CONFLIST"); ok && v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return usageError{fmt.Errorf("CNI_FORCE_CONFLIST=%q: want true or false", v)}
		}
	}
	var o install.Options
	force := new(bool)
	fs := installFlags(&o, force)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(out, usage)
			fs.SetOutput(out)
			fs.PrintDefaults()
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	o.ForceConflist = *force
	o.Log = out
	if _, err := install.Run(o); err != nil {
		return err
	}
	fmt.Fprintf(out, "done: plugins in %s, %s in %s\n", o.BinDir, o.Conflist, o.ConfDir)
	return nil
}

func installFlags(o *install.Options, force *bool) *flag.FlagSet {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	fs.StringVar(&o.SourceDir, "source", envOr("AZURE_CNI_SOURCE", "/opt/azure-cni"), "the image's payload: bin/, conf/, "+install.SumsFile+" ($AZURE_CNI_SOURCE)")
	fs.StringVar(&o.BinDir, "bin-dir", envOr("CNI_BIN_DIR", "/opt/cni/bin"), "the host's CNI plugin directory ($CNI_BIN_DIR)")
	fs.StringVar(&o.ConfDir, "conf-dir", envOr("CNI_CONF_DIR", "/etc/cni/net.d"), "the host's CNI config directory ($CNI_CONF_DIR)")
	fs.StringVar(&o.Conflist, "conflist", envOr("CNI_CONFLIST", "10-azure.conflist"), "the conflist to install: 10-azure.conflist (transparent), 10-azure-bridge.conflist or 10-azure-overlay.conflist ($CNI_CONFLIST)")
	fs.StringVar(&o.ConflistFile, "conflist-file", envOr("CNI_CONFLIST_FILE", ""), "install this file (e.g. from a ConfigMap) as --conflist instead of the image's ($CNI_CONFLIST_FILE)")
	def, _ := strconv.ParseBool(envOr("CNI_FORCE_CONFLIST", "false"))
	fs.BoolVar(force, "force-conflist", def, "replace an existing, different conflist of the same name; without it that conflist is kept ($CNI_FORCE_CONFLIST)")
	return fs
}
