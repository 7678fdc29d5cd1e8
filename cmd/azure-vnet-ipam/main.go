// Command azure-vnet-ipam is the CNI IPAM plugin: it hands out the node's
// VNet addresses (from the Azure host or a file) to containers.
package main

import (
	"github.com/open-acn/acn/cni/cmdmain"
	"github.com/open-acn/acn/cni/config"
	"github.com/open-acn/acn/logs"
)

func main() {
	cmdmain.Main(config.IPAMPlugin, logs.DefaultIpamFile)
}
