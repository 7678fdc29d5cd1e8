//go:build linux

// Command podserver is what every pod of the e2e cluster and the demo runs:
// TCP and UDP echo servers on the given ports, and a raw SCTP receiver that
// prints one line per INIT received ("sctp SRC PORT TAG") so the harness,
// which started it, learns which SCTP probes arrived.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/open-acn/acn/internal/probe"
)

func ports(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("port %q", f)
		}
		out = append(out, p)
	}
	return out, nil
}

func main() {
	tcp := flag.String("tcp", "80,81", "TCP ports (comma-separated)")
	udp := flag.String("udp", "80,81", "UDP ports")
	sctp := flag.Bool("sctp", true, "report raw SCTP INITs on stdout")
	flag.Parse()
	tp, err := ports(*tcp)
	if err == nil {
		var up []int
		up, err = ports(*udp)
		if err == nil {
			var s *probe.Servers
			s, err = probe.Serve(tp, up, *sctp)
			if err == nil {
				fmt.Println("ready")
				sig := make(chan os.Signal, 1)
				signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
				for {
					select {
					case in := <-s.SCTP:
						fmt.Printf("sctp %s %d %d\n", in.Src, in.Port, in.Tag)
					case <-sig:
						s.Close()
						return
					}
				}
			}
		}
	}
	fmt.Fprintln(os.Stderr, "podserver:", err)
	os.Exit(2)
}
