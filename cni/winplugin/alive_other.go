//go:build !windows

package winplugin

import (
	"os"
	"strconv"
	"strings"
)

// processAlive says whether the plugin process that marked an endpoint
// pending still runs (tests run the Windows logic on Linux).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return false
	}
	return strings.HasPrefix(strings.TrimSpace(string(comm)), "azure-vnet")
}
