//go:build linux

// Command bash stands in for /bin/bash in the agnhost image the
// network-policy-api conformance suite runs (its manifests start servers
// with `/bin/bash -c "/agnhost ..."`; our agnhost image holds no shell). It
// understands only `bash -c "PROGRAM ARG..."` without shell syntax: the
// words are split on white space and PROGRAM is exec'd in its place.
//
// On a kernel without SCTP sockets, `/agnhost porter` serving only
// SERVE_SCTP_PORT_* variables would exit at once (its listen fails) and
// keep the whole pod unready; it runs `/agnhost pause` instead and says so
// on stderr, so the pod serves its TCP and UDP ports and only SCTP probes
// to it fail (the conformance run skips the SCTP tests on such a kernel).
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) != 3 || os.Args[1] != "-c" {
		fmt.Fprintln(os.Stderr, "bash (open-acn shim): only `bash -c \"PROGRAM ARG...\"` is supported")
		os.Exit(2)
	}
	words := strings.Fields(os.Args[2])
	if len(words) == 0 {
		os.Exit(0)
	}
	if len(words) == 2 && words[0] == "/agnhost" && words[1] == "porter" && onlySCTP() && !sctpSockets() {
		fmt.Fprintln(os.Stderr, "bash (open-acn shim): this kernel has no SCTP sockets; running /agnhost pause instead of an SCTP-only porter")
		words = []string{"/agnhost", "pause"}
	}
	err := syscall.Exec(words[0], words, os.Environ())
	fmt.Fprintf(os.Stderr, "bash (open-acn shim): exec %s: %v\n", words[0], err)
	os.Exit(127)
}

// onlySCTP reports whether porter would serve SCTP ports only.
func onlySCTP() bool {
	sctp := false
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "SERVE_SCTP_PORT_"):
			sctp = true
		case strings.HasPrefix(kv, "SERVE_PORT_"), strings.HasPrefix(kv, "SERVE_TLS_PORT_"):
			return false
		}
	}
	return sctp
}

func sctpSockets() bool {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, syscall.IPPROTO_SCTP)
	if err == nil {
		syscall.Close(fd)
		return true
	}
	return !errors.Is(err, syscall.EPROTONOSUPPORT) && !errors.Is(err, syscall.ESOCKTNOSUPPORT)
}
