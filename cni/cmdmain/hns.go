package cmdmain

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/open-acn/acn/cni/hns"
	"github.com/open-acn/acn/cni/winplugin"
	"github.com/open-acn/acn/internal/version"
)

// RunHNS runs a plugin binary of a Windows node over h: the real HNS
// (Main on Windows) or a fake one (the tests' build on Linux). Flags,
// logging and the DEL path are those of the Linux main.
func RunHNS(name, defaultLogFile string, h hns.HNS) {
	tune()
	if code, exit := Args(name, os.Args[1:], os.Stdout, os.Stderr); exit {
		os.Exit(code)
	}
	p := &winplugin.Plugin{Name: name, HNS: h, NewLogger: NewLogger(defaultLogFile)}
	if os.Getenv("CNI_COMMAND") == "DEL" {
		os.Exit(Del(p.Funcs().Del, os.Getenv, os.Stdin, os.Stdout))
	}
	skel.PluginMainFuncs(p.Funcs(), winplugin.SupportedVersions, winplugin.About(name, version.Version))
}
