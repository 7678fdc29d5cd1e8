//go:build !windows

package logs

// Default log files of the CNI plugins on Linux nodes.
const (
	DefaultVnetFile = "/var/log/azure-vnet.log"
	DefaultIpamFile = "/var/log/azure-vnet-ipam.log"
)
