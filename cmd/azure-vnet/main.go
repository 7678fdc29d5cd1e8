// Command azure-vnet is the CNI network plugin: it connects a pod to the
// node's VNet in bridge or transparent mode on Linux, through HNS on
// Windows (see cni/README.md).
package main

import (
	"github.com/open-acn/acn/cni/cmdmain"
	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/logs"
)

func main() {
	cmdmain.Main(config.VnetPlugin, logs.DefaultVnetFile)
}
