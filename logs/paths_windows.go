package logs

// Default log files of the CNI plugins on Windows nodes.
const (
	DefaultVnetFile = `C:\k\azurecni\log\azure-vnet.log`
	DefaultIpamFile = `C:\k\azurecni\log\azure-vnet-ipam.log`
)
