// Package cmdmain is the shared main of azure-vnet and azure-vnet-ipam:
// command-line flags (a CNI plugin normally gets none), the logger from
// the configuration, and the skel dispatch: to the Linux handlers
// (cni/plugin, main_linux.go) or to the Windows ones over HNS
// (cni/winplugin, RunHNS).
package cmdmain

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"go.uber.org/zap"

	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/internal/version"
	"github.com/open-acn/acn/logs"
)

// Args handles command-line arguments. It returns (exit code, true) when
// the process should exit: --version prints the banner (0), --help the
// usage (0), anything else is an error (2). With no arguments it returns
// false and the plugin runs as the runtime invoked it.
func Args(name string, args []string, stdout, stderr io.Writer) (int, bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch strings.TrimLeft(args[0], "-") {
	case "version", "v":
		if strings.HasPrefix(args[0], "-") {
			fmt.Fprintln(stdout, version.String(name))
			return 0, true
		}
	case "help", "h":
		if strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(stdout, "%s is a CNI plugin: the container runtime runs it with CNI_COMMAND and the network config on stdin.\nFlags: --version\n", name)
			return 0, true
		}
	}
	fmt.Fprintf(stderr, "%s: unknown argument %q (the only flag is --version; CNI input comes from the environment and stdin)\n", name, args[0])
	return 2, true
}

// NewLogger returns the plugin's logger factory: logFile (config or
// ACN_CNI_LOG_FILE) or defaultFile, logTarget "stderr" for stderr,
// logLevel honoured.
func NewLogger(defaultFile string) func(cfg *config.NetConf) *zap.Logger {
	return func(cfg *config.NetConf) *zap.Logger {
		lc := logs.Config{File: defaultFile}
		if env := os.Getenv(config.EnvLogFile); env != "" {
			lc.File = env
		}
		if cfg != nil {
			if cfg.LogFile != "" {
				lc.File = cfg.LogFile
			}
			if strings.EqualFold(cfg.LogTarget, config.LogTargetStderr) {
				lc.File = logs.StderrTarget
			}
			lc.Level = cfg.LogLevel
		}
		l, err := logs.New(lc)
		if err != nil {
			return zap.NewNop()
		}
		return l
	}
}

// Del runs DEL without skel's up-front checks of the configuration
// (cniVersion supported, name present, JSON valid): a DEL must clean up
// by container ID whatever the configuration says, so the handler gets
// it raw and decides. Only the container ID and interface name are
// required. It returns the exit code; an error is printed as the spec's
// error JSON.
func Del(del func(*skel.CmdArgs) error, getenv func(string) string, stdin io.Reader, stdout io.Writer) int {
	fail := func(err error) int {
		var te *types.Error
		if !errors.As(err, &te) {
			te = types.NewError(types.ErrInternal, err.Error(), "")
		}
		_ = json.NewEncoder(stdout).Encode(te)
		return 1
	}
	args := &skel.CmdArgs{
		ContainerID:   getenv("CNI_CONTAINERID"),
		Netns:         getenv("CNI_NETNS"),
		IfName:        getenv("CNI_IFNAME"),
		Args:          getenv("CNI_ARGS"),
		Path:          getenv("CNI_PATH"),
		NetnsOverride: getenv("CNI_NETNS_OVERRIDE"),
	}
	for _, v := range []struct{ name, value string }{{"CNI_CONTAINERID", args.ContainerID}, {"CNI_IFNAME", args.IfName}} {
		if v.value == "" {
			return fail(types.NewError(types.ErrInvalidEnvironmentVariables, "required env variables ["+v.name+"] missing", ""))
		}
	}
	data, err := io.ReadAll(stdin)
	if err != nil {
		return fail(types.NewError(types.ErrIOFailure, "read network config from stdin: "+err.Error(), ""))
	}
	args.StdinData = data
	if err := del(args); err != nil {
		return fail(err)
	}
	return 0
}

// tune sets the runtime up for a short-lived plugin process.
func tune() {
	// A plugin lives for milliseconds and allocates a few MB: garbage
	// collection would only burn CPU that parallel ADDs on a small node
	// need. The memory limit keeps a safety net (GC starts near it).
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(256 << 20)
	// The work is sequential (a chain of syscalls); one P avoids spinning
	// up idle scheduler threads in each of many concurrent plugin processes.
	runtime.GOMAXPROCS(1)
}
