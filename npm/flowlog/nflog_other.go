//go:build !linux

package flowlog

import "errors"

type nflogConn struct{}

var errOverrun = errors.New("nflog socket buffer overrun")

func listenNFLOG(group uint16, nsPath string) (*nflogConn, error) {
	return nil, errors.New("flow logs need a Linux dataplane")
}

func (n *nflogConn) Close() error               { return nil }
func (n *nflogConn) receive() ([]Packet, error) { return nil, errors.New("not supported") }
