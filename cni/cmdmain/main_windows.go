package cmdmain

import "github.com/open-acn/acn/cni/hns"

// Main runs a plugin binary on a Windows node, over the real HNS.
func Main(name, defaultLogFile string) { RunHNS(name, defaultLogFile, hns.HCN{}) }
