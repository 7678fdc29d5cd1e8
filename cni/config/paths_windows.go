package config

// Default paths on Windows nodes: everything of the plugins lives under
// C:\k\azurecni (binaries in bin\, the conflist in netconf\, logs in log\).
const (
	// DefaultStateDir holds the state files and locks. Unlike /var/run it
	// survives a reboot, so the plugin checks the state against HNS.
	DefaultStateDir = `C:\k\azurecni`
	// DefaultInterfacesFile is the file/mas address source.
	DefaultInterfacesFile = `C:\k\azurecni\interfaces.json`
)
