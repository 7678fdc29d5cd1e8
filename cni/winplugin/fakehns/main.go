//go:build !windows

// Command fakehns is azure-vnet or azure-vnet-ipam (after the name it is
// run as) as on a Windows node, over a fake HNS kept in the file named by
// ACN_FAKE_HNS_FILE instead of the Host Networking Service. The tests of
// cni/winplugin build it (with the failpoints tag) to drive the Windows
// plugin logic through libcni as separate processes, as a runtime does.
// It is never shipped.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/open-acn/acn/cni/cmdmain"
	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/cni/hns"
	"github.com/open-acn/acn/logs"
)

// EnvFile names the fake HNS's file.
const EnvFile = "ACN_FAKE_HNS_FILE"

func main() {
	path := os.Getenv(EnvFile)
	if path == "" && len(os.Args) == 1 { // flags (--version) need no HNS
		fmt.Fprintln(os.Stderr, EnvFile+" is not set: this test build needs the fake HNS's file")
		os.Exit(2)
	}
	name, logFile := config.VnetPlugin, logs.DefaultVnetFile
	if filepath.Base(os.Args[0]) == config.IPAMPlugin {
		name, logFile = config.IPAMPlugin, logs.DefaultIpamFile
	}
	cmdmain.RunHNS(name, logFile, hns.FileFake{Path: path})
}
