package cmdmain

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/open-acn/acn/cni/plugin"
	"github.com/open-acn/acn/internal/version"
)

// Main runs a plugin binary.
func Main(name, defaultLogFile string) {
	tune()
	if code, exit := Args(name, os.Args[1:], os.Stdout, os.Stderr); exit {
		os.Exit(code)
	}
	p := &plugin.Plugin{Name: name, NewLogger: NewLogger(defaultLogFile)}
	if os.Getenv("CNI_COMMAND") == "DEL" {
		os.Exit(Del(p.Funcs().Del, os.Getenv, os.Stdin, os.Stdout))
	}
	skel.PluginMainFuncs(p.Funcs(), plugin.SupportedVersions, plugin.About(name, version.Version))
}
