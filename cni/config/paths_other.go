//go:build !windows

package config

// Default paths on Linux nodes.
const (
	// DefaultStateDir holds the state files and locks (tmpfs: emptied at
	// boot together with every pod).
	DefaultStateDir = "/var/run/azure-vnet"
	// DefaultInterfacesFile is the file/mas address source.
	DefaultInterfacesFile = "/etc/kubernetes/interfaces.json"
)
